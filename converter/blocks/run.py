"""A scene in blocks end to end (`convert --blocks`), and the unit commands a farm runs instead.

Units (docs/farm.md): `split` (optional; the layout, made by whichever unit runs first otherwise),
`train --block N`, `bake --block N` (extract + bake + neural), `merge` (GLB or tiles, metrics,
report). Each unit reads what earlier units left in the shared work folder and is idempotent: a
finished unit run again only reloads its results, a stopped one continues from its checkpoint.
"""
from __future__ import annotations

import functools

import time
from pathlib import Path

from ..capture.model import Capture
from ..checkpoint import write_json
from ..pipeline import Run, RunResult, _headline, capture_summary, check_output, prepare_workdir
from .merge import combined, joined_history, load_parts, scene_asset, write_stitched, write_tiles
from .openjd import plan, status
from .split import Layout
from .work import bake_block, finish_block, prepare_layout, train_block

BLOCK_STAGES = ["extract", "bake", "neural"]
MERGE_STAGES = ["metrics", "export"]


def load(run: Run) -> Capture:
    """The capture, with WORK/ made and WORK/capture.json written (every unit may be first).
    Photos without poses are posed once, into WORK/sfm/, by the first unit (split, on a farm)."""
    from ..capture.load import load_capture

    capture = load_capture(Path(run.capture_path), workdir=run.workdir, sfm=run.sfm, resume=run.resume,
                           reporter=run.reporter)
    prepare_workdir(run)
    write_json(run.workdir / "capture.json", capture_summary(capture))
    return capture


def split_unit(run: Run, requested: str | None) -> Layout:
    plan(run.reporter, ["capture", "split"])
    capture = load(run)
    return prepare_layout(run, capture, requested)[0]


def train_unit(run: Run, requested: str | None, block: int) -> None:
    _block_unit(run, requested, block, ["train"], functools.partial(train_block, upto="train"))


def bake_unit(run: Run, requested: str | None, block: int) -> None:
    _block_unit(run, requested, block, list(BLOCK_STAGES), bake_block)


def _block_unit(run: Run, requested: str | None, block: int, stages: list[str], work) -> None:
    """A per-block unit: the shared capture and layout (made once, reused), then `work` on the block."""
    plan(run.reporter, ["capture", "split", *stages])
    capture = load(run)
    layout, hull = prepare_layout(run, capture, requested)
    layout.block(block)
    status(run.reporter, f"block {block} of {len(layout.blocks)}")
    work(run, capture, layout, hull, block)


def merge_unit(run: Run, requested: str | None, tiles: bool) -> RunResult:
    check_output(run)
    plan(run.reporter, ["capture", "split", *MERGE_STAGES])
    capture = load(run)
    layout, _ = prepare_layout(run, capture, requested)
    return merge_blocks(run, capture, layout, tiles, {})


def convert_blocks(run: Run, requested: str | None, tiles: bool = False) -> RunResult:
    """Split, then every block's train/extract/bake/neural in turn, then merge: one process."""
    check_output(run)
    timings: dict[str, float] = {}
    t = time.time()
    capture = load(run)
    timings["capture"] = time.time() - t
    t = time.time()
    layout, hull = prepare_layout(run, capture, requested)
    timings["split"] = time.time() - t
    n = len(layout.blocks)
    plan(run.reporter, ["train", *BLOCK_STAGES] * n + MERGE_STAGES)
    for b in layout.blocks:
        status(run.reporter, f"block {b.id} of {n}")
        t = time.time()
        brun, bcap, tf = train_block(run, capture, layout, hull, b.id)
        timings["train"] = timings.get("train", 0.0) + time.time() - t
        t = time.time()
        finish_block(brun, bcap, tf, layout, b.id)
        timings["bake"] = timings.get("bake", 0.0) + time.time() - t
    return merge_blocks(run, capture, layout, tiles, timings)


def merge_blocks(run: Run, capture: Capture, layout: Layout, tiles: bool, timings: dict) -> RunResult:
    """The finished blocks stitched (or tiled), measured as one scene, with its report."""
    from ..metrics.report import compute_metrics
    from ..report import write_report

    parts, lights, histories = load_parts(run, layout)
    scene = scene_asset(capture, layout, parts, lights)
    mesh, atlas = combined(parts)
    history = joined_history(histories)
    t = time.time()
    run.reporter.start("metrics", None)
    metrics = compute_metrics(capture, mesh, atlas, history)
    metrics["blocks"] = {"count": len(layout.blocks), "tiles": tiles,
                         "triangles": [p.lods[0].mesh.n_triangles for p in parts]}
    run.reporter.end("metrics")
    timings["metrics"] = time.time() - t
    scene.metadata["metrics"] = _headline(metrics)
    t = time.time()
    run.reporter.start("export", None)
    if tiles:
        summary, paths = write_tiles(run, capture, layout, parts, lights, scene)
        glb = paths[0]
    else:
        summary, glb = write_stitched(run, parts, scene), run.output
    run.reporter.end("export", bytes=sum(p.stat().st_size for p in ([glb] if not tiles else paths)))
    timings["export"] = time.time() - t
    write_report(run.report_dir, capture, mesh, atlas, metrics, timings, history, glb)
    return RunResult(glb, run.report_dir, run.workdir, timings, metrics, summary)
