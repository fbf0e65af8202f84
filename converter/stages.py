"""One function per stage: compute it, or load it from the work folder when resuming."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import __version__
from .bake.asset import BakedAsset, Lod, MaterialMaps
from .bake.extract import extract_mesh
from .bake.texture import bake_from_field, fit_to_photos, pad_texture, to_uint8_srgb
from .bake.uv import unwrap
from .capture.model import Capture
from .checkpoint import load_field_state, load_mesh, restore_field, save_field, save_mesh
from .kernels import backend
from .pipeline import Run, save_texture
from .render.rays import Box
from .train.data import load_rays, object_box
from .train.trainer import TrainedField, build_field, train


def train_stage(run: Run, capture: Capture) -> TrainedField:
    cfg = run.cfg
    path = run.workdir / "field.pt"
    partial = run.workdir / "field.partial.pt"
    torch.manual_seed(cfg.seed)
    if run.cached("train", path):  # box, occupancy and mask mode all come from the checkpoint
        state = load_field_state(path)
        box = state["box"].numpy()
        tf = build_field(cfg, Box(box[0], box[1]), bool(state["masked"]), None)
        restore_field(tf, state)
        return tf
    data = load_rays(capture.train, cfg.downscale)
    masked = data.alpha is not None
    box, hull = object_box(capture.train, data, cfg.occupancy_res, cfg.downscale)
    tf = build_field(cfg, box, masked, hull)
    start = 0
    if run.resume and partial.exists():
        start = restore_field(tf, load_field_state(partial))
    eval_data = load_rays(capture.test[:1], cfg.downscale * 2) if capture.test else None
    run.reporter.start("train", cfg.steps)

    def progress(step, total, record):
        run.reporter.update("train", step, total, **record)

    train(tf, data, cfg, eval_data=eval_data, progress=progress, start_step=start,
          checkpoint=lambda t, s: save_field(partial, t, s))
    save_field(path, tf, cfg.steps)
    partial.unlink(missing_ok=True)
    last = tf.history[-1] if tf.history else {}
    run.reporter.end("train", steps=last.get("step", 0), train_psnr=last.get("train_psnr"),
                     test_psnr=last.get("test_psnr"), kernels=backend(tf.field.log_beta.device))
    return tf


def extract_stage(run: Run, capture: Capture, tf: TrainedField):
    path = run.workdir / "mesh.npz"
    if run.cached("extract", path):
        return load_mesh(path)
    run.reporter.start("extract", run.cfg.mc_resolution)
    mesh = extract_mesh(tf, run.cfg.mc_resolution, run.cfg.max_triangles, run.cfg.min_component_ratio,
                        progress=lambda d, t: run.reporter.update("extract", d, t))
    save_mesh(path, mesh)
    run.reporter.end("extract", triangles=mesh.n_triangles)
    return mesh


def bake_stage(run: Run, capture: Capture, tf: TrainedField, mesh) -> BakedAsset:
    cfg = run.cfg
    mesh_path, tex_path = run.workdir / "baked_mesh.npz", run.workdir / "base_color.png"
    if run.cached("bake", mesh_path) and tex_path.exists():
        texture = np.asarray(Image.open(tex_path).convert("RGB"))
        return _asset(capture, load_mesh(mesh_path), texture)
    run.reporter.start("bake", None)
    uv_mesh = unwrap(mesh, cfg.texture_size)
    tex, covered = bake_from_field(tf, uv_mesh, cfg.texture_size)
    tex = pad_texture(tex, covered)
    if cfg.texture_fit_iterations > 0:
        tex = fit_to_photos(tex, covered, uv_mesh, capture.train, cfg.texture_fit_iterations, cfg.downscale,
                            progress=lambda d, t: run.reporter.update("bake", d, t))
    texture = to_uint8_srgb(tex)
    save_mesh(mesh_path, uv_mesh)
    save_texture(tex_path, texture)
    run.reporter.end("bake", texture=f"{cfg.texture_size}x{cfg.texture_size}",
                     coverage=float(covered.mean()))
    return _asset(capture, uv_mesh, texture)


def _asset(capture: Capture, mesh, texture: np.ndarray) -> BakedAsset:
    return BakedAsset(lods=[Lod(mesh, MaterialMaps(captured=texture))], up_axis=capture.up_axis, cameras=capture.frames,
                      metadata={"name": Path(capture.root).name or "nrconvert_asset",
                                "source": capture.source})


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


__all__ = ["bake_stage", "export_stage", "extract_stage", "metrics_stage", "train_stage"]
