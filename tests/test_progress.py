"""Terminal progress (rich) and JSON progress lines: what a user and a script see of a stage."""
from __future__ import annotations

import io
import json

from rich.console import Console

from nrconvert.progress import JsonReporter, RichReporter


def test_rich_shows_labels_steps_and_the_summary_lines():
    buf = io.StringIO()
    rep = RichReporter(Console(file=buf, width=120, force_terminal=False))
    rep.start("sfm", 10)
    rep.update("sfm", 10, 10, step="mapping")
    assert rep.progress.tasks[rep.tasks["sfm"]].fields["info"] == "mapping"  # the bar's text column
    rep.end("sfm", registered=9, lines=["SfM posed 9 of 10 photos", "rejected: 1 (too few matches)"])
    rep.close()
    text = buf.getvalue()
    assert "Posing photos (SfM)" in text
    assert "SfM posed 9 of 10 photos" in text and "rejected: 1 (too few matches)" in text


def test_json_lines_carry_the_step():
    buf = io.StringIO()
    rep = JsonReporter(buf)
    rep.start("sfm", 4)
    rep.update("sfm", 4, 4, step="matching")
    rep.end("sfm", registered=4)
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert events[0] == {"stage": "sfm", "event": "start", "total": 4}
    assert events[-1]["event"] == "end" and events[-1]["registered"] == 4
    assert any(e.get("step") == "matching" for e in events)
