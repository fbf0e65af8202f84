"""One function per stage: compute it, or load it from the work folder when resuming."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch

from . import __version__
from .bake.asset import BakedAsset, Lod
from .bake.chain import bake_lods
from .bake.extract import extract_mesh
from .bake.silhouette import fit_silhouette, offset_mesh
from .bake.store import load_lods, save_lods
from .bake.surface import from_field
from .capture.model import Capture
from .errors import CaptureError
from .checkpoint import load_field_state, load_mesh, restore_field, save_field, save_mesh
from .kernels import backend
from .memory import release
from .pipeline import STAGES, Run
from .render.rays import Box
from .train.data import TrainingStart, load_rays, restore_sure, sure_state
from .train.matting import starting_shape
from .train.trainer import TrainedField, build_field, train, under_trained

MIN_TRAIN_PHOTOS = 3


Prepare = Callable[[Run, Capture], TrainingStart]


def cfg_threads(cfg) -> int:
    """`threads` = 0: OMP_NUM_THREADS where a scheduler (Ray, a farm) set it, else every core."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return cfg.threads or (int(env) if env.isdigit() and int(env) > 0 else max(1, os.cpu_count() or 1))


def train_stage(run: Run, capture: Capture, prepare: Prepare | None = None) -> TrainedField:
    """`prepare(run, capture)` gives the training rays, the box and its hull (default: every
    training pixel and the object box); blocks.work passes a block's rays and cube."""
    cfg = run.cfg
    path = run.workdir / "field.pt"
    partial = run.workdir / "field.partial.pt"
    # several threads sum floats in a varying order (MKL, OpenMP reductions): runs differ in the
    # last bits, which training amplifies to ~0.2 dB; threads=1 trades speed for (near-)exact repeats
    torch.set_num_threads(cfg_threads(cfg))
    torch.manual_seed(cfg.seed)
    if run.cached("train", path):  # box, occupancy and mask mode all come from the checkpoint
        state = load_field_state(path)
        box = state["box"].numpy()
        tf = build_field(cfg, Box(box[0], box[1]), bool(state["masked"]), None)
        restore_field(tf, state)
        return tf
    if len(capture.train) < MIN_TRAIN_PHOTOS:
        raise CaptureError(f"only {len(capture.train)} training photo(s); at least {MIN_TRAIN_PHOTOS} are needed "
                           "to place the object", path=str(capture.root),
                           hint="add photos from more sides (30-200 photos circling the object work best)")
    start = (prepare or _prepare)(run, capture)
    data, spent_s = start.data, start.spent_s
    release()  # the photos decoded and labelled on the way (street block 2: 509 -> 458 MiB RSS)
    masked = data.alpha is not None
    tf = build_field(cfg, start.box, masked, start.hull)
    del start  # its prior grid, now in the field
    release()  # the hull prior's distance transform: training starts from the live heap only
    resume = None
    if run.resume and partial.exists():
        state = load_field_state(partial)
        restore_field(tf, state)
        resume = state.get("resume")
        data = restore_sure(data, resume)
    eval_data = load_rays(capture.test[:1], cfg.downscale * 2) if capture.test else None
    run.reporter.start("train", cfg.steps)

    def progress(step, total, record):
        run.reporter.update("train", step, total, **record)

    def checkpoint(t, loop, optimizer):
        resume = {"loop": dataclasses.asdict(loop), "optimizer": optimizer, "rng": torch.get_rng_state(),
                  **sure_state(data.sure)}
        save_field(partial, t, loop.step, resume)

    train(tf, data, cfg, eval_data=eval_data, progress=progress, resume=resume, checkpoint=checkpoint,
          spent_s=spent_s)
    save_field(path, tf, cfg.steps)
    partial.unlink(missing_ok=True)
    last = tf.history[-1] if tf.history else {}
    note = under_trained(last, cfg.steps)
    run.reporter.end("train", steps=last.get("step", 0), train_psnr=last.get("train_psnr"),
                     test_psnr=last.get("test_psnr"), kernels=backend(tf.field.log_beta.device),
                     **({"lines": [note], "warning": note} if note else {}))
    return tf


def _prepare(run: Run, capture: Capture) -> TrainingStart:
    data = load_rays(capture.train, run.cfg.downscale)
    cfg = run.cfg
    if run.resume and (run.workdir / "field.partial.pt").exists():
        cfg = cfg.replace(matting_share=0.0)  # restore_field brings the cube and the starting shape
    return starting_shape(cfg, capture.train, data)


def extract_stage(run: Run, capture: Capture, tf: TrainedField):
    path = run.workdir / "mesh.npz"
    if run.cached("extract", path):
        return load_mesh(path)
    run.reporter.start("extract", run.cfg.mc_resolution)
    mesh = extract_mesh(tf, run.cfg.mc_resolution, run.cfg.max_triangles, run.cfg.min_component_ratio,
                        progress=lambda d, t: run.reporter.update("extract", d, t))
    fit = fit_silhouette(mesh, capture.train, run.cfg.downscale) if run.cfg.silhouette_fit else None
    if fit is not None:
        mesh = offset_mesh(mesh, fit.offset)
    save_mesh(path, mesh)
    run.reporter.end("extract", triangles=mesh.n_triangles, **({} if fit is None else {
        "silhouette_offset": round(fit.relative, 6), "silhouette_error": [fit.error_before, fit.error_after]}))
    return mesh


def bake_stage(run: Run, capture: Capture, tf: TrainedField, mesh) -> BakedAsset:
    folder = run.workdir / "bake"
    if run.cached("bake", folder / "bake.json"):
        lods, light, _ = load_lods(folder)
        return _asset(capture, lods, light)
    _seed(run, "bake")
    run.reporter.start("bake", None)
    result = bake_lods(tf, mesh, capture.train, from_field(tf), run.cfg,
                       progress=lambda what, d, t: run.reporter.update("bake", d, t, step=what))
    save_lods(folder, result.lods, result.light, result.pbr_history)
    last = result.pbr_history[-1] if result.pbr_history else {}
    run.reporter.end("bake", lods=len(result.lods), triangles=[lod.mesh.n_triangles for lod in result.lods],
                     texture=f"{run.cfg.texture_size}x{run.cfg.texture_size}", material_fit_psnr=last.get("psnr"))
    return _asset(capture, result.lods, result.light)


def neural_stage(run: Run, capture: Capture, tf: TrainedField, asset: BakedAsset) -> BakedAsset:
    """Distil the captured look into each LOD's neural material (work/neural/)."""
    from .bake.neural_chain import distill_lods, load_neural, save_neural

    if not run.cfg.neural:
        return asset
    folder = run.workdir / "neural"
    if run.cached("neural", folder / "neural.json"):
        materials = load_neural(folder)
    else:
        _seed(run, "neural")
        run.reporter.start("neural", None)
        materials, history = distill_lods(tf, asset.lods, capture.train, capture.up_axis, run.cfg,
                                          progress=lambda what, d, t: run.reporter.update("neural", d, t, step=what))
        save_neural(folder, materials, history)
        run.reporter.end("neural", feature_sizes=[h["feature_size"] for h in history])
    for lod, mat in zip(asset.lods, materials):
        lod.maps.neural = mat
    return asset


def _seed(run: Run, stage: str) -> None:
    """Each stage starts from its own seed, so a stage re-run after a kill (or --redo) draws the
    same random numbers as in one uninterrupted run, whatever ran before it in this process."""

    torch.manual_seed(run.cfg.seed * 1000 + STAGES.index(stage))


def _asset(capture: Capture, lods: list[Lod], light) -> BakedAsset:
    meta = {"name": Path(capture.root).name or "nrconvert_asset", "source": capture.source}
    if "colmap_to_capture" in capture.extras:  # takes the asset back to the SfM/COLMAP frame (docs/format.md)
        meta["colmap_to_capture"] = capture.extras["colmap_to_capture"]
    return BakedAsset(lods=lods, up_axis=capture.up_axis, cameras=capture.frames, light=light, metadata=meta)


def export_stage(run: Run, asset: BakedAsset) -> dict:
    from .export.glb import write_glb
    from .export.validate import assert_valid

    run.reporter.start("export", None)
    summary = write_glb(asset, run.output, version=__version__)
    if run.validate:
        try:
            assert_valid(run.output)
        except Exception:
            run.output.unlink(missing_ok=True)  # never leave an invalid asset behind
            run.output.with_suffix(".hdr").unlink(missing_ok=True)
            raise
    run.reporter.end("export", bytes=summary.get("bytes"))
    return summary


def metrics_stage(run: Run, capture: Capture, tf: TrainedField, asset: BakedAsset) -> dict:
    """Measure the asset before export so its own file carries its numbers."""
    from .metrics.report import compute_metrics

    run.reporter.start("metrics", None)
    metrics = compute_metrics(capture, asset.mesh, asset.captured, tf.history)
    run.reporter.end("metrics")
    return metrics


__all__ = ["bake_stage", "export_stage", "extract_stage", "metrics_stage", "neural_stage", "train_stage"]
