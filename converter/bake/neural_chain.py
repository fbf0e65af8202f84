"""Neural material for every LOD, and its place in the work folder (`work/neural/`).

LOD0 fits features and the MLP; lower LODs fit only their own features against LOD0's MLP (each
LOD has its own atlas, so features cannot be shared, but one decoder can: it halves the fitting
work of the small LODs and gives every LOD the same view-dependent behaviour).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..capture.model import Frame
from ..config import Config
from ..export.frames import capture_to_gltf_rotation
from ..export.neural import NeuralMaterial, from_json
from .asset import Lod
from .footprint import PixelSamples, concat_pixels, pixel_samples
from .neural import (Decoder, ViewSamples, between_cameras, concat, distill, environment_size, feature_size,
                     field_image, view_samples)
from .texture import texel_fragments

Progress = Callable[[str, int, int], None]
MAX_FEATURE_SIZE = 1024


def distill_lods(tf, lods: list[Lod], frames: list[Frame], up_axis: str, cfg: Config,
                 progress: Progress | None = None) -> tuple[list[NeuralMaterial], list[dict]]:
    say = progress or (lambda *_: None)
    rotation = capture_to_gltf_rotation(up_axis)  # the decoder sees directions in the asset frame
    extra = between_cameras(frames, cfg.neural_field_views, cfg.seed)
    renders = []
    for i, f in enumerate(extra):
        say("field views", i, len(extra))
        renders.append(field_image(tf, lods[0].mesh, f, cfg.downscale))
    out, history, shared = [], [], None
    for k, lod in enumerate(lods):
        samples, pixels = lod_samples(lod.mesh, frames, list(zip(extra, renders)), rotation, cfg)
        n = len(samples.uv) + (0 if pixels is None else pixels.covered())
        coverage = float((texel_fragments(lod.mesh, 256).tri >= 0).mean())
        size = feature_size(n, coverage, min(MAX_FEATURE_SIZE, lod.maps.size[0]))
        steps = cfg.neural_steps if k == 0 else max(1, cfg.neural_steps // 3)
        env = environment_size(n, cfg.neural_environment)  # LOD0's; the rest share it
        result = distill(samples, size, steps, shared=shared, pixels=pixels, seed=cfg.seed,
                         encoding=cfg.neural_encoding, env_width=env,
                         progress=lambda d, t, k=k: say(f"neural LOD{k}", d, t), device=tf.field.log_beta.device)
        shared = shared or result.decoder
        out.append(result.material)
        history.append({"lod": k, "feature_size": size, "samples": n, "steps": steps,
                        "environment": None if result.material.environment is None
                        else list(result.material.environment.shape[1::-1]),
                        "mse": result.history[-1]["mse"] if result.history else None})
    return out, history


def lod_samples(mesh, frames: list[Frame], renders: list, rotation: np.ndarray, cfg: Config
                ) -> tuple[ViewSamples, PixelSamples | None]:
    """One LOD's supervision: the field renders' pixel centres (a render is point-sampled) and the
    photos' pixels, as footprints (`bake.footprint`) or, with `neural_footprint` 1, centres too."""
    enc, foot = cfg.neural_encoding, cfg.neural_footprint
    parts = [view_samples(mesh, f, rotation, cfg.downscale, image=img, encoding=enc) for f, img in renders]
    if foot == 1:
        parts = [view_samples(mesh, f, rotation, cfg.downscale, encoding=enc) for f in frames] + parts
        return concat(parts), None
    pixels = concat_pixels([pixel_samples(mesh, f, rotation, cfg.downscale, enc, foot) for f in frames])
    if not parts:  # no field views: the photos alone
        return ViewSamples(*(np.zeros((0, n), np.float32) for n in (2, pixels.view.shape[-1], 3))), pixels
    return concat(parts), pixels


def save_neural(folder: Path, materials: list[NeuralMaterial], history: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "neural.json").unlink(missing_ok=True)
    for k, mat in enumerate(materials):
        tmp = folder / f".lod{k}.tmp.npz"
        extra = {} if mat.environment is None else {"environment": mat.environment}
        np.savez(tmp, features=mat.features, **extra)
        tmp.replace(folder / f"lod{k}.npz")
    meta = {"materials": [m.to_json((0, 1), None if m.environment is None else 2) for m in materials],
            "history": history}
    tmp = folder / ".neural.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / "neural.json")  # written last: marks the folder complete


def load_neural(folder: Path) -> list[NeuralMaterial]:
    meta = json.loads((folder / "neural.json").read_text())
    out = []
    for k, ext in enumerate(meta["materials"]):
        with np.load(folder / f"lod{k}.npz", allow_pickle=False) as z:
            feats = z["features"]
            env = z["environment"] if "environment" in z.files else None
        out.append(from_json(ext, (feats[..., :4], feats[..., 4:]), env))
    return out


__all__ = ["Decoder", "distill_lods", "load_neural", "save_neural"]
