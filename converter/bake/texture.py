"""Base-colour texture: sampled from the field at every texel, padded across seams, then fitted to
the training photos through the rasterizer so the texture is what the cameras actually saw."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..mesh import Mesh
from ..render.raster import Fragments, rasterize, rasterize_view
from ..render.volume import render_chunked
from ..train.trainer import TrainedField


def texel_fragments(mesh: Mesh, size: int) -> Fragments:
    """Which triangle (and where in it) each texel centre lies on."""
    return rasterize(mesh.uvs * size, mesh.faces, size, size)


def interpolate(attr: np.ndarray, faces: np.ndarray, frags: Fragments) -> np.ndarray:
    """Per-pixel attribute from per-vertex `attr` (V, C); zeros where empty."""
    hit = frags.tri >= 0
    out = np.zeros(frags.tri.shape + attr.shape[1:], np.float32)
    tri = faces[frags.tri[hit]]
    out[hit] = (attr[tri] * frags.bary[hit][..., None]).sum(1)
    return out


def bake_from_field(tf: TrainedField, mesh: Mesh, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour seen head-on at each texel (float HxWx3) and the coverage mask."""
    frags = texel_fragments(mesh, size)
    hit = frags.tri >= 0
    pos = interpolate(mesh.vertices, mesh.faces, frags)[hit]
    nrm = interpolate(mesh.normals, mesh.faces, frags)[hit]
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-8)
    # a short ray through the surface along -n, starting a few steps outside it
    start = pos + nrm * (4 * tf.dt)
    o = torch.from_numpy(start.astype(np.float32))
    d = torch.from_numpy(-nrm.astype(np.float32))
    out = render_chunked(tf.field, tf.occupancy, o, d, tf.box, tf.dt, max_distance=8 * tf.dt)
    rgb = (out.rgb / out.opacity.clamp(min=1e-3)[:, None]).clamp(0, 1).numpy()
    tex = np.zeros((size, size, 3), np.float32)
    tex[hit] = rgb
    return tex, hit


def pad_texture(tex: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Fill every empty texel with its nearest covered texel, so filtering never reads black."""
    if covered.all() or not covered.any():
        return tex
    _, (iy, ix) = distance_transform_edt(~covered, return_indices=True)
    return tex[iy, ix]


def fit_to_photos(tex: np.ndarray, mesh: Mesh, frames: list[Frame], iterations: int = 4,
                  downscale: int = 1, prior_weight: float = 0.5, max_views: int = 60,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Least-squares texture under bilinear lookup from the photos, regularised towards `tex`.

    Closed form plus a few Jacobi sweeps instead of Adam: per-texel normalised updates turn sparse,
    noisy gradients into speckle, while the weighted average cannot overshoot. Texels no photo sees
    keep their field colour; padding texels touched at chart borders are fitted too (no seams).
    """
    size = tex.shape[0]
    views = frames if len(frames) <= max_views else [frames[i] for i in
                                                     np.linspace(0, len(frames) - 1, max_views).astype(int)]
    idx_l, w_l, c_l = [], [], []
    for i, f in enumerate(views):
        idx, w, c = _view_samples(f, mesh, size, downscale)
        idx_l.append(idx); w_l.append(w); c_l.append(c)
        if progress:
            progress(i + 1, len(views) + iterations)
    idx, w, c = np.concatenate(idx_l), np.concatenate(w_l), np.concatenate(c_l)
    n = size * size
    flat_prior = tex.reshape(n, 3).astype(np.float64)
    den = np.bincount(idx.ravel(), w.ravel(), n) + prior_weight
    out = flat_prior.copy()
    for it in range(iterations):
        pred = (out[idx] * w[..., None]).sum(1)
        resid = c - pred
        upd = np.stack([np.bincount(idx.ravel(), (w * resid[:, ch:ch + 1]).ravel(), n) for ch in range(3)], 1)
        out += (upd + prior_weight * (flat_prior - out)) / den[:, None]
        if progress:
            progress(len(views) + it + 1, len(views) + iterations)
    return np.clip(out, 0, 1).reshape(tex.shape).astype(np.float32)


def _view_samples(frame: Frame, mesh: Mesh, size: int, downscale: int):
    """Texel corners (P, 4), bilinear weights (P, 4) and colours (P, 3) of a photo's object pixels."""
    frags = rasterize_view(frame, mesh.vertices, mesh.faces, downscale, cull_backfaces=True)
    rgb, alpha = load_frame_image(frame, downscale)
    hit = frags.tri >= 0
    if alpha is not None:
        hit &= alpha > 0.5
    uv = interpolate(mesh.uvs, mesh.faces, frags)[hit] * size - 0.5
    x0 = np.floor(uv[:, 0]); y0 = np.floor(uv[:, 1])
    fx = uv[:, 0] - x0; fy = uv[:, 1] - y0
    xs = np.clip(np.stack([x0, x0 + 1, x0, x0 + 1], 1), 0, size - 1).astype(np.int64)
    ys = np.clip(np.stack([y0, y0, y0 + 1, y0 + 1], 1), 0, size - 1).astype(np.int64)
    w = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    return ys * size + xs, w, rgb[hit].astype(np.float64)


def to_uint8_srgb(tex: np.ndarray) -> np.ndarray:
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)
