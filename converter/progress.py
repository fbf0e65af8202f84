"""Reporters: rich progress bars for people, JSON lines for the Blender add-on and farm wrappers."""
from __future__ import annotations

import json
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

LABELS = {"train": "Training field", "extract": "Extracting mesh", "bake": "Baking textures",
          "metrics": "Measuring", "export": "Writing GLB", "synth": "Rendering capture",
          "sfm": "Posing photos (SfM)", "neural": "Neural material", "capture": "Reading capture"}


class RichReporter:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console, transient=False)
        self.tasks: dict[str, int] = {}
        self.progress.start()

    def start(self, stage, total=None):
        self.tasks[stage] = self.progress.add_task(LABELS.get(stage, stage), total=total, info="")

    def update(self, stage, done, total=None, **info):
        if stage not in self.tasks:
            self.start(stage, total)
        text = ""
        if "train_psnr" in info:
            text = f"loss {info['loss']:.4f}  train PSNR {info['train_psnr']:.1f} dB"
            if "test_psnr" in info:
                text += f"  held-out {info['test_psnr']:.1f} dB"
        elif "step" in info:
            text = str(info["step"])
        self.progress.update(self.tasks[stage], completed=done, total=total, info=text)

    def end(self, stage, **summary):
        if stage in self.tasks:
            task = self.progress.tasks[self.tasks[stage]]
            total = task.total if task.total is not None else 1
            self.progress.update(self.tasks[stage], total=total, completed=total, info="")
        for line in summary.get("lines", ()):  # e.g. the SfM summary: who was posed, who was not and why
            self.console.print(line)

    def close(self):
        self.progress.stop()


class JsonReporter:
    """One JSON object per line on stdout: {"stage", "event", "done", "total", ...}."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.last = 0.0

    def _emit(self, **obj):
        self.stream.write(json.dumps(obj, default=float) + "\n")
        self.stream.flush()

    def start(self, stage, total=None):
        self._emit(stage=stage, event="start", total=total)

    def update(self, stage, done, total=None, **info):
        now = time.time()
        if now - self.last < 0.5 and done != total:
            return  # at most two lines a second
        self.last = now
        self._emit(stage=stage, event="progress", done=done, total=total, **info)

    def end(self, stage, **summary):
        self._emit(stage=stage, event="end", **summary)

    def close(self):
        pass
