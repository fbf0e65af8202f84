"""Base-colour texture: sampled from the field at every texel, padded across seams, then fitted to
the training photos through the rasterizer so the texture is what the cameras actually saw."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..mesh import Mesh
from ..render.volume import render_chunked
from ..render.raster import Fragments, photo_object_pixels, rasterize, rasterize_view
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


@torch.no_grad()
def bake_from_field(tf: TrainedField, mesh: Mesh, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour seen head-on at each texel (float HxWx3) and the coverage mask.

    Each texel's colour is what the field renders along a short ray through its surface point,
    along -n: the composited colour, the quantity training fitted to the photos (querying the
    colour net at the zero level set alone came out darker: 0.033 vs 0.024 mean error).
    """
    frags = texel_fragments(mesh, size)
    hit = frags.tri >= 0
    pos = interpolate(mesh.vertices, mesh.faces, frags)[hit]
    nrm = interpolate(mesh.normals, mesh.faces, frags)[hit]
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-8)
    dev = tf.field.log_beta.device
    o = torch.from_numpy((pos + nrm * (4 * tf.dt)).astype(np.float32)).to(dev)
    d = torch.from_numpy(-nrm.astype(np.float32)).to(dev)
    out = render_chunked(tf.field, tf.occupancy, o, d, tf.box, tf.dt, max_distance=12 * tf.dt)
    rgb = (out.rgb / out.opacity.clamp(min=1e-3)[:, None]).clamp(0, 1)
    tex = np.zeros((size, size, 3), np.float32)
    tex[hit] = rgb.cpu().numpy()
    return tex, hit


def pad_texture(tex: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Fill every empty texel with its nearest covered texel, so filtering never reads black."""
    if covered.all() or not covered.any():
        return tex
    _, (iy, ix) = distance_transform_edt(~covered, return_indices=True)
    return tex[iy, ix]


def fit_to_photos(tex: np.ndarray, covered: np.ndarray, mesh: Mesh, frames: list[Frame], iterations: int = 4,
                  downscale: int = 1, prior_weight: float = 0.1, max_views: int = 60,
                  observations_per_texel: float = 1.0,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Least-squares texture under bilinear lookup from the photos, regularised towards `tex`.

    The fit runs at the resolution the photos can support (about `observations_per_texel` photo
    pixels per texel) and is upsampled to the atlas. One pixel per texel, not 8 as first chosen
    (when there was no prior to the field's texture and a texel seen by one or two pixels copied
    their noise): the prior now holds sparsely seen texels, and a coarser fit only blurs the
    edges the photos do resolve. Held-out, 4x supersampled, the same fields and meshes: masked
    `balanced` 27.91 -> 28.15 dB, masked `fast` 26.64 -> 26.77, opaque `balanced` 26.73 -> 26.87,
    opaque `fast` 24.48 -> 24.46 (2026-11-27, bench/RESULTS.md "fifth session").
    Closed form plus Jacobi sweeps, not Adam: per-texel normalised steps turn sparse gradients into
    speckle. Texels no photo sees keep their field colour.
    """
    size = tex.shape[0]
    views = frames if len(frames) <= max_views else [frames[i] for i in
                                                     np.linspace(0, len(frames) - 1, max_views).astype(int)]
    samples = [_view_samples(f, mesh, downscale) for f in views]
    n_obs = sum(len(c) for _, c in samples) * len(frames) / len(views)
    fit = _fit_size(size, n_obs, float(covered.mean()), observations_per_texel)
    prior = resize(tex, fit)
    uv = np.concatenate([u for u, _ in samples]); c = np.concatenate([c for _, c in samples])
    idx, w = _bilinear(uv, fit)
    out = _solve(prior.reshape(-1, 3).astype(np.float64), idx, w, c, iterations, prior_weight,
                 lambda i: progress(i, iterations) if progress else None)
    fitted = resize(out.reshape(fit, fit, 3).astype(np.float32), size)
    # where no photo looked, keep the field's own detail
    seen = resize(np.bincount(idx.ravel(), w.ravel(), fit * fit).reshape(fit, fit, 1).astype(np.float32), size)
    alpha = np.clip(seen / (seen + prior_weight), 0, 1)
    return np.clip(alpha * fitted + (1 - alpha) * tex, 0, 1).astype(np.float32)


def _fit_size(size: int, n_obs: float, coverage: float, per_texel: float) -> int:
    texels = n_obs / per_texel / max(coverage, 1e-3)
    fit = 2 ** int(np.round(np.log2(max(np.sqrt(texels), 64))))
    return int(min(size, fit))


def resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    mode = "area" if size < img.shape[0] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kwargs)[0].permute(1, 2, 0).numpy()


def _bilinear(uv: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat texel indices (P, 4) and weights (P, 4) of bilinear lookups at uv (P, 2)."""
    p = uv * size - 0.5
    x0 = np.floor(p[:, 0]); y0 = np.floor(p[:, 1])
    fx = p[:, 0] - x0; fy = p[:, 1] - y0
    xs = np.clip(np.stack([x0, x0 + 1, x0, x0 + 1], 1), 0, size - 1).astype(np.int64)
    ys = np.clip(np.stack([y0, y0, y0 + 1, y0 + 1], 1), 0, size - 1).astype(np.int64)
    w = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    return ys * size + xs, w


def _solve(prior: np.ndarray, idx: np.ndarray, w: np.ndarray, c: np.ndarray, iterations: int,
           prior_weight: float, progress) -> np.ndarray:
    """Jacobi sweeps on  min sum (sum_k w_k T[idx_k] - c)^2 + prior_weight |T - prior|^2."""
    n = len(prior)
    den = np.bincount(idx.ravel(), w.ravel(), n) + prior_weight
    out = prior.copy()
    for it in range(iterations):
        resid = c - (out[idx] * w[..., None]).sum(1)
        upd = np.stack([np.bincount(idx.ravel(), (w * resid[:, ch:ch + 1]).ravel(), n) for ch in range(3)], 1)
        out += (upd + prior_weight * (prior - out)) / den[:, None]
        progress(it + 1)
    return np.clip(out, 0, 1)


def _view_samples(frame: Frame, mesh: Mesh, downscale: int) -> tuple[np.ndarray, np.ndarray]:
    """UVs (P, 2) and colours (P, 3) of a photo's object pixels that the mesh covers."""
    frags = rasterize_view(frame, mesh.vertices, mesh.faces, downscale, cull_backfaces=True)
    rgb, alpha = load_frame_image(frame, downscale)
    hit = photo_object_pixels(frags.tri, alpha)
    return interpolate(mesh.uvs, mesh.faces, frags)[hit], rgb[hit].astype(np.float64)


def to_uint8_srgb(tex: np.ndarray) -> np.ndarray:
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)
