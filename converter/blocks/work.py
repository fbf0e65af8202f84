"""One block's stages, in its own work folder, with the normal stage files.

WORK/ holds the shared pieces (capture.json, scene_hull.npz, blocks.json) and one folder per block,
WORK/block_NN/, that looks like a single run's work folder (field.pt, field.partial.pt, mesh.npz,
bake/, neural/) plus masks/ (blocks.labels) and block.json, written last, which marks the block
finished. Each block runs through the ordinary stage functions (converter.stages) with a Run of
its own, so caching, --resume, --redo and training checkpoints work per block exactly as for a
whole capture, and a block can be re-run alone, on another machine sharing the folder.

Equal budgets: a block trains steps / N and time_budget_s / N of the run's settings and bakes
1/N of its triangles and texels, so N blocks together cost and weigh what one field over the whole
scene does (block_config).
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np

from ..bake.asset import BakedAsset
from ..bake.extract import marching, remove_small_components
from ..bake.lod import decimate_to
from ..capture.model import Capture
from ..checkpoint import load_mesh, save_mesh, write_json
from ..config import Config
from ..errors import BlockError, ExtractionError, UsageError
from ..mesh import Mesh
from ..pipeline import Run
from ..render.rays import Box
from .clip import clip_slab
from .labels import block_frames
from .scene import SceneHull, build_scene_hull
from .split import Layout, split_scene
from .train import block_training_data

MIN_TRIANGLES = 2000  # a block's share of the triangles never goes below this ...
MIN_TEXTURE = 64  # ... nor its texture side below this ...
MIN_LOG2_TABLE = 14  # ... nor its hash table below 2^14 entries per level


def block_dir(workdir: Path, block_id: int) -> Path:
    return Path(workdir) / f"block_{block_id:02d}"


def prepare_layout(run: Run, capture: Capture, requested: str | None) -> tuple[Layout, SceneHull]:
    """The split, made once and then read back (WORK/blocks.json + WORK/scene_hull.npz).

    A fresh `convert` (no --resume) splits again; unit commands always reuse what is there, and
    refuse a work folder split for another --blocks value (a farm job must not mix two splits).
    `requested` None takes the layout that is there, else splits `auto`."""
    layout_path, hull_path = run.workdir / "blocks.json", run.workdir / "scene_hull.npz"
    if run.resume and layout_path.exists() and hull_path.exists():
        layout = Layout.load(layout_path)
        requested = layout.requested if requested is None else requested
        if requested not in (layout.requested, str(len(layout.blocks))) or layout.n_train != len(capture.train):
            raise UsageError(f"the work folder was split for --blocks {layout.requested} "
                             f"({len(layout.blocks)} blocks, {layout.n_train} training photos); asked: "
                             f"--blocks {requested}, {len(capture.train)} photos", path=str(layout_path),
                             hint="use the same --blocks for every unit of a job, or a new --workdir")
        return layout, SceneHull.load(hull_path)
    run.reporter.start("split", None)
    hull = build_scene_hull(capture.train, capture.bounds)
    layout = split_scene(capture, hull, requested or "auto")
    run.workdir.mkdir(parents=True, exist_ok=True)
    for old in run.workdir.glob("block_*/masks"):  # masks of an older split would be stale
        shutil.rmtree(old, ignore_errors=True)
    hull.save(hull_path)
    layout.save(layout_path)
    run.reporter.end("split", blocks=len(layout.blocks))
    return layout, hull


def block_config(cfg: Config, n: int) -> Config:
    """A block's share of the run's budgets, so N blocks together cost and weigh what one field
    over the scene does: 1/N of the training steps and time budget, of the hash table (at least
    1/N of its entries: a power of two), of the triangles, and of the texels (texture side /
    sqrt(N), to the nearest power of two). A block covers about 1/N of the scene, so each keeps
    the single field's capacity per unit of scene."""
    if n == 1:
        return cfg
    side = 2 ** math.ceil(math.log2(cfg.texture_size / math.sqrt(n)) - 0.5)  # nearest; a tie rounds down
    return cfg.replace(steps=max(1, math.ceil(cfg.steps / n)), time_budget_s=cfg.time_budget_s / n,
                       hash_log2_table=max(MIN_LOG2_TABLE, cfg.hash_log2_table - int(math.log2(n))),
                       max_triangles=max(MIN_TRIANGLES, cfg.max_triangles // n), texture_size=max(MIN_TEXTURE, side))


def block_run(run: Run, layout: Layout, k: int) -> Run:
    """The block's own Run: its folder and its share of the budgets (block_config)."""
    folder = block_dir(run.workdir, k)
    return Run(run.capture_path, folder / "block.glb", block_config(run.cfg, len(layout.blocks)), workdir=folder,
               resume=run.resume, redo=run.redo, validate=run.validate, reporter=run.reporter)


def block_box(layout: Layout, k: int) -> Box:
    b = layout.block(k)
    return Box(np.asarray(b.lo), np.asarray(b.hi))


def block_capture(capture: Capture, layout: Layout, hull: SceneHull, k: int, workdir: Path) -> Capture:
    """The capture as block k sees it: its cameras, each with its KEEP mask (blocks.labels)."""
    b, box, masks = layout.block(k), block_box(layout, k), block_dir(workdir, k) / "masks"
    frames = block_frames(capture.train, b.cameras, hull, box, masks) + \
        block_frames(capture.test, b.test_cameras, hull, box, masks)
    return dataclasses.replace(capture, frames=frames)


def train_block(run: Run, capture: Capture, layout: Layout, hull: SceneHull, k: int, retrain: bool = True,
                upto: str | None = None):
    """Train block k (or load its field): the stage function with the block's rays and cube.
    Returns the block's Run, its Capture and the field. `retrain=False`: a field trained with
    other settings is an error, not retrained; `upto="train"`: only the training settings are
    checked and recorded (the train unit has no bake options; settings_record)."""
    from ..settings_record import reconcile_settings
    from ..stages import train_stage
    from ..train.data import TrainingStart

    layout.block(k)  # a UsageError for an id that does not exist
    brun = block_run(run, layout, k)
    brun.workdir.mkdir(parents=True, exist_ok=True)
    reconcile_settings(brun, retrain=retrain, upto=upto)
    bcap = block_capture(capture, layout, hull, k, run.workdir)
    originals = [capture.train[i] for i in layout.block(k).cameras]
    tf = train_stage(brun, bcap, prepare=lambda r, c: TrainingStart(
        *block_training_data(originals, hull, block_box(layout, k), r.cfg)))
    return brun, bcap, tf


def bake_block(run: Run, capture: Capture, layout: Layout, hull: SceneHull, k: int) -> BakedAsset:
    """Extract, bake and distil block k from its finished field (the `bake --block` unit)."""
    layout.block(k)  # a UsageError for an id that does not exist
    if run.redo == "train":
        raise UsageError("bake does not train: use `nrconvert train --block N --redo train`")
    field = block_dir(run.workdir, k) / "field.pt"
    if not field.exists():
        raise BlockError(f"block {k} is not trained yet", path=str(field),
                         hint=f"run `nrconvert train CAPTURE --block {k}` with the same -o/--workdir and --blocks first")
    loading = dataclasses.replace(run, resume=True, redo=None)  # the field is read, never retrained
    brun, bcap, tf = train_block(loading, capture, layout, hull, k, retrain=False)
    return finish_block(block_run(run, layout, k), bcap, tf, layout, k)


def finish_block(brun: Run, bcap: Capture, tf, layout: Layout, k: int) -> BakedAsset:
    """Extract, bake, distil; block.json, written last, marks the block finished."""
    from ..stages import bake_stage, neural_stage

    (brun.workdir / "block.json").unlink(missing_ok=True)
    mesh = extract_block(brun, tf, layout, k)
    asset = bake_stage(brun, bcap, tf, mesh)
    asset = neural_stage(brun, bcap, tf, asset)
    write_json(brun.workdir / "block.json", {"id": k, "triangles": [lod.mesh.n_triangles for lod in asset.lods],
                                             "neural": brun.cfg.neural, "training": tf.history[-1:]})
    return asset


def extract_block(run: Run, tf, layout: Layout, k: int) -> Mesh:
    """The block's surface inside its own region plus one marching-cubes cell (blocks.clip)."""
    path = run.workdir / "mesh.npz"
    if run.cached("extract", path):
        return load_mesh(path)
    cfg = run.cfg
    run.reporter.start("extract", cfg.mc_resolution)
    mesh = marching(tf, cfg.mc_resolution, progress=lambda d, t: run.reporter.update("extract", d, t))
    skirt = float(tf.box.size.max()) / cfg.mc_resolution
    mesh = clip_slab(mesh, np.asarray(layout.axis), layout.block(k).own, skirt)
    if mesh.n_triangles == 0:
        raise ExtractionError(f"block {k} has no surface inside its own region",
                              hint="ask for fewer blocks (--blocks), or check the capture's masks")
    # borders frozen (as the LOD chain does): the cut edge stays on its plane, so the seam stays shut
    mesh = decimate_to(remove_small_components(mesh, cfg.min_component_ratio), cfg.max_triangles)
    save_mesh(path, mesh)
    run.reporter.end("extract", triangles=mesh.n_triangles)
    return mesh


def missing_blocks(workdir: Path, layout: Layout) -> list[int]:
    """Blocks without block.json: not trained, not baked, or stopped half-way."""
    return [b.id for b in layout.blocks if not (block_dir(workdir, b.id) / "block.json").exists()]
