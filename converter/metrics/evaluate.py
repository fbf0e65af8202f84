"""Held-out quality of the exported asset, rendered with our own rasterizer (texture, unlit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..mesh import Mesh
from ..render.raster import rasterize_view
from .image import psnr, ssim


def render_textured(mesh: Mesh, texture: np.ndarray, frame: Frame, downscale: int = 1):
    """RGB (H, W, 3) in [0, 1] and coverage (H, W) of the textured mesh from a capture camera."""
    from ..bake.texture import interpolate

    frags = rasterize_view(frame, mesh.vertices, mesh.faces, downscale)
    hit = frags.tri >= 0
    uv = interpolate(mesh.uvs, mesh.faces, frags)[hit]
    tex = torch.from_numpy(texture.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    grid = torch.from_numpy(uv * 2 - 1)[None, :, None, :]
    rgb = F.grid_sample(tex, grid, mode="bilinear", align_corners=False)[0, :, :, 0].t().numpy()
    img = np.zeros(hit.shape + (3,), np.float32)
    img[hit] = rgb
    return img, hit


def evaluate_views(mesh: Mesh, texture: np.ndarray, frames: list[Frame], downscale: int = 1,
                   eval_masks: dict[str, Path] | None = None) -> dict:
    """PSNR/SSIM on object pixels (photo alpha ≥ 0.5) and full frame over black, averaged over views.

    Opaque photos have no alpha; `eval_masks` (image path → mask file, e.g. from a synth capture)
    then says which pixels are the object. Without either, only the file name is reported.
    """
    per_view = []
    for f in frames:
        img, _ = render_textured(mesh, texture, f, downscale)
        rgb, alpha = load_frame_image(f, downscale)
        mask_file = (eval_masks or {}).get(str(f.image_path))
        if alpha is None and mask_file is not None:
            alpha = np.asarray(Image.open(mask_file).convert("L"), dtype=np.float32) / 255.0
        if alpha is None:
            per_view.append({"file": f.image_path.name})  # no mask: object pixels unknown
            continue
        gt = rgb * alpha[..., None]
        obj = alpha >= 0.5
        per_view.append({
            "file": f.image_path.name,
            "psnr_object": psnr(img[obj], gt[obj]),
            "ssim_object": ssim(img, gt, obj),
            "psnr_full": psnr(img, gt),
            "ssim_full": ssim(img, gt),
        })
    keys = [k for k in ("psnr_object", "ssim_object", "psnr_full", "ssim_full") if per_view and k in per_view[0]]
    summary = {k: float(np.mean([v[k] for v in per_view])) for k in keys} if per_view else {}
    return {"views": len(per_view), **summary, "per_view": per_view}
