"""`--progress openjd`: the progress lines render farms read from a task's output.

Open Job Description (AWS Deadline Cloud's job format; other farms parse the same lines) reads
`openjd_progress: N` (N from 0 to 100, the whole task) and `openjd_status: TEXT` from a running
action's stdout. A command knows which stages it will run (`plan`), each weighted by its usual
share of the time on a CPU, so a task's bar moves evenly through training, baking and export
instead of jumping; a stage that runs again (one per block) takes its next slot in the plan.
"""
from __future__ import annotations

import sys

from ..progress import LABELS

WEIGHTS = {"capture": 1.0, "split": 2.0, "train": 60.0, "extract": 3.0, "bake": 15.0, "neural": 12.0,
           "metrics": 3.0, "export": 2.0, "merge": 2.0}
SINGLE_RUN = ["capture", "train", "extract", "bake", "neural", "metrics", "export"]


class OpenJdReporter:
    """Reporter protocol (start/update/end) printing OpenJD lines, at most one per whole percent."""

    def __init__(self, stream=None, stages: list[str] | None = None):
        self.stream = stream or sys.stdout
        self.plan(stages or SINGLE_RUN)

    def plan(self, stages: list[str]) -> None:
        """The stages this command runs, in order; repeats allowed (`train` once per block)."""
        self.stages = list(stages)
        self.total = sum(WEIGHTS.get(s, 1.0) for s in self.stages) or 1.0
        self.pos = 0  # stages before this slot are done
        self.current: int | None = None
        self.printed = -1

    def status(self, text: str) -> None:
        self._line(f"openjd_status: {text}")

    def start(self, stage, total=None):
        slot = self._slot(stage)
        self.current = slot
        if slot is not None:
            self.pos = slot
        self.status(LABELS.get(stage, stage.capitalize()))
        self._progress(0.0)

    def update(self, stage, done, total=None, **info):
        if self.current is None or self.stages[self.current] != stage:
            self.start(stage, total)
        if total:
            self._progress(min(max(done / total, 0.0), 1.0))

    def end(self, stage, **summary):
        if self.current is not None and self.stages[self.current] == stage:
            self._progress(1.0)
            self.pos = self.current + 1
        self.current = None
        if summary.get("warning"):  # e.g. a field the time budget starved: the farm's log keeps it
            self._line(f"openjd_status: Warning: {summary['warning']}")

    def close(self):
        pass

    def _slot(self, stage: str) -> int | None:
        for i in range(self.pos, len(self.stages)):
            if self.stages[i] == stage:
                return i
        return None

    def _progress(self, frac: float) -> None:
        if self.current is None:
            return
        before = sum(WEIGHTS.get(s, 1.0) for s in self.stages[:self.current])
        pct = int(100.0 * (before + frac * WEIGHTS.get(self.stages[self.current], 1.0)) / self.total)
        if pct > self.printed:
            self.printed = pct
            self._line(f"openjd_progress: {pct}")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def plan(reporter, stages: list[str]) -> None:
    """Tell a reporter that can use it which stages follow (the others ignore it)."""
    fn = getattr(reporter, "plan", None)
    if callable(fn):
        fn(stages)


def status(reporter, text: str) -> None:
    fn = getattr(reporter, "status", None)
    if callable(fn):
        fn(text)
