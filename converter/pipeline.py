"""The conversion, stage by stage, with every stage output kept in a work folder.

A stage whose output is already in the work folder is loaded instead of re-run when `resume` is
set, so a killed run continues where it stopped and one stage can be redone alone (`redo`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol



from .capture.model import Capture
from .checkpoint import write_json
from .config import Config
from .errors import OutputError, os_error

STAGES = ("train", "extract", "bake", "neural", "export")


class Reporter(Protocol):
    def start(self, stage: str, total: int | None = None) -> None: ...
    def update(self, stage: str, done: int, total: int | None = None, **info) -> None: ...
    def end(self, stage: str, **summary) -> None: ...


class SilentReporter:
    def start(self, stage, total=None): pass
    def update(self, stage, done, total=None, **info): pass
    def end(self, stage, **summary): pass


@dataclass
class RunResult:
    glb: Path
    report_dir: Path
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


@dataclass
class Run:
    capture_path: Path
    output: Path
    cfg: Config
    workdir: Path | None = None
    resume: bool = False
    redo: str | None = None  # re-run this stage and everything after it
    validate: bool = True
    reporter: Reporter = field(default_factory=SilentReporter)
    sfm: object | None = None  # capture.sfm.SfmOptions for photos without poses (posed in workdir/sfm/)

    def __post_init__(self) -> None:
        self.output = Path(self.output).resolve()
        if self.workdir is None:
            self.workdir = self.output.with_suffix(".work")
        self.report_dir = self.output.with_suffix(".report")

    def cached(self, stage: str, path: Path) -> bool:
        """Use the stored output of `stage`?"""
        if self.redo and STAGES.index(stage) >= STAGES.index(self.redo):
            return False
        return self.resume and path.exists()


def check_output(run: Run) -> None:
    """Fail before hours of training if the output cannot be written or checked."""
    parent = run.output.parent
    if not parent.is_dir():
        raise OutputError("the output folder does not exist", path=str(parent),
                          hint="create it first, or pick another -o path")
    if run.output.suffix.lower() != ".glb":
        raise OutputError("the output must be a .glb file", path=str(run.output))
    if not os.access(parent, os.W_OK):
        raise OutputError("the output folder is not writable", path=str(parent))
    if run.validate:
        from .export.validate import check_validator_ready

        check_validator_ready()


def prepare_workdir(run: Run) -> None:
    try:
        run.workdir.mkdir(parents=True, exist_ok=True)  # the report folder only appears with the GLB
    except OSError as exc:
        raise os_error(exc, str(run.workdir), "the work folder") from exc


def convert(run: Run) -> RunResult:
    """Capture folder → GLB + report, the whole chain."""
    from .capture.load import load_capture
    from .report import write_report
    from .settings_record import reconcile_settings
    from .stages import bake_stage, export_stage, extract_stage, metrics_stage, neural_stage, train_stage

    check_output(run)
    timings: dict[str, float] = {}
    t = time.time()
    capture = load_capture(Path(run.capture_path), workdir=run.workdir, sfm=run.sfm, resume=run.resume,
                           reporter=run.reporter)
    timings["capture"] = time.time() - t
    prepare_workdir(run)
    reconcile_settings(run)
    write_json(run.workdir / "capture.json", capture_summary(capture))
    tf, timings["train"] = _timed(train_stage, run, capture)
    mesh, timings["extract"] = _timed(extract_stage, run, capture, tf)
    asset, timings["bake"] = _timed(bake_stage, run, capture, tf, mesh)
    asset, timings["neural"] = _timed(neural_stage, run, capture, tf, asset)
    metrics, timings["metrics"] = _timed(metrics_stage, run, capture, tf, asset)
    asset.metadata["metrics"] = _headline(metrics)
    summary, timings["export"] = _timed(export_stage, run, asset)
    write_report(run.report_dir, capture, asset.mesh, asset.captured, metrics, timings, tf.history,
                 run.output)
    return RunResult(run.output, run.report_dir, run.workdir, timings, metrics, summary)


def _headline(metrics: dict) -> dict:
    """The few numbers worth carrying inside the GLB itself."""
    held = metrics.get("heldout", {})
    geo = metrics.get("geometry", {})
    out = {k: held[k] for k in ("psnr_object", "ssim_object", "psnr_full") if k in held}
    out.update({k: geo[k] for k in ("chamfer_ratio_of_bbox_diagonal", "fscore") if k in geo})
    return out


def _timed(fn, *args):
    t = time.time()
    out = fn(*args)
    return out, time.time() - t


def capture_summary(capture: Capture) -> dict:
    return {
        "source": capture.source, "root": str(capture.root), "up_axis": capture.up_axis,
        "train": len(capture.train), "test": len(capture.test),
        "resolution": [capture.frames[0].width, capture.frames[0].height] if capture.frames else None,
        "gt_mesh": str(capture.gt_mesh_path) if capture.gt_mesh_path else None,
        "sfm": capture.extras.get("sfm"),
        "colmap_to_capture": capture.extras.get("colmap_to_capture"),
    }
