"""Fit the mesh's silhouettes to the photos' masks: one offset along the normals.

Why: the silhouette is where a few hundredths of a pixel cost the most. Every asset pixel along
it blends the object with the background, so a surface that sits a fraction of a pixel inside
the real one darkens the whole outline in every view. The trained field carries such a bias (on
the specular Suzanne its opacity covers 0.5 % less than the photos' alpha, the mesh follows the
field), and nothing downstream can take it back: the bake and the neural material fit colours
*on* the mesh. Fitted (+0.0005 of the diagonal on both benchmark captures), the glossy torus knot's
neural material gained +0.28 dB held-out on object pixels and +0.64 over the frame, the specular
Suzanne's −0.05 / +0.19 (bench/RESULTS.md, eighteenth session).

When the photos carry masks, the mesh coverage (anti-aliased, `samples` x `samples` per pixel,
the way the photos' alpha is) is compared with the alpha over a spread of training views, and
the offset that minimises the squared difference is kept. One scalar, not per-vertex motion: it
cannot fold the surface or fit the masks' noise, and it measures a bias rather than a shape. No
masks (or alpha opaque everywhere), no fit: an opaque photo's outline mixes in a background we
cannot separate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..mesh import Mesh, vertex_normals
from ..render.raster import rasterize_view, supersampled

MAX_OFFSET = 2e-3  # of the bounding-box diagonal: a bias, never a reshaping
MAX_PIXELS = 640 * 480  # per view: larger photos are compared downscaled (coverage stays sub-pixel)


@dataclass
class SilhouetteFit:
    offset: float  # world units along the outward vertex normals (> 0: outward)
    relative: float  # the same, as a fraction of the bounding-box diagonal
    error_before: float  # mean squared coverage - alpha over the compared pixels
    error_after: float
    views: int


def fit_silhouette(mesh: Mesh, frames: list[Frame], downscale: int = 1, *, views: int = 24,
                   samples: int = 4) -> SilhouetteFit | None:
    """The normal offset whose anti-aliased coverage best matches the masks, or None without masks."""
    targets = _targets(frames, downscale, views)
    if not targets:
        return None
    normals = _normals(mesh).astype(np.float64)
    diag = mesh.bbox_diagonal()

    def error(rel: float) -> float:
        v = mesh.vertices.astype(np.float64) + normals * (rel * diag)
        return float(np.mean([_coverage_error(v, mesh.faces, f, a, ds, samples) for f, a, ds in targets]))

    grid = np.linspace(-MAX_OFFSET, MAX_OFFSET, 9)  # odd: the middle sample is the mesh as extracted
    errs = np.array([error(r) for r in grid])
    best = _parabola_min(grid, errs)
    after = error(best)
    if after > errs.min():  # the parabola overshot on a lopsided curve: keep the best sample
        best, after = float(grid[errs.argmin()]), float(errs.min())
    return SilhouetteFit(best * diag, best, float(errs[len(grid) // 2]), after, len(targets))


def offset_mesh(mesh: Mesh, offset: float) -> Mesh:
    """`mesh` with every vertex moved `offset` along its normal (normals recomputed)."""
    out = Mesh((mesh.vertices + _normals(mesh) * offset).astype(np.float32), mesh.faces)
    out.normals = vertex_normals(out.vertices, out.faces)
    return out


def _normals(mesh: Mesh) -> np.ndarray:
    """The mesh's vertex normals (extract_mesh stores them), computed only when absent."""
    return mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, mesh.faces)


def _targets(frames: list[Frame], downscale: int, views: int) -> list[tuple[Frame, np.ndarray, int]]:
    """(frame, alpha, downscale) of up to `views` training views spread over the capture."""
    picked = [frames[i] for i in np.unique(np.linspace(0, len(frames) - 1, min(views, len(frames))).astype(int))]
    out = []
    for f in picked:
        ds = downscale
        while (f.width // ds) * (f.height // ds) > MAX_PIXELS:
            ds *= 2
        _, alpha = load_frame_image(f, ds)
        if alpha is None:
            return []
        if alpha.min() < 0.5:  # an alpha channel with no background in it outlines nothing
            out.append((f, alpha, ds))
    return out


def _coverage_error(vertices: np.ndarray, faces: np.ndarray, frame: Frame, alpha: np.ndarray, downscale: int,
                    samples: int) -> float:
    h, w = alpha.shape
    tri = rasterize_view(supersampled(frame, samples, downscale), vertices, faces, 1).tri
    cover = (tri >= 0).reshape(h, samples, w, samples).mean((1, 3))
    edge = (cover > 0) | (alpha > 0)
    return float(((cover - alpha)[edge] ** 2).mean()) if edge.any() else 0.0


def _parabola_min(x: np.ndarray, y: np.ndarray) -> float:
    """Vertex of the parabola through the lowest sample and its neighbours (clamped to the grid)."""
    i = int(np.clip(y.argmin(), 1, len(x) - 2))
    a, b, c = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
    if a <= 0:
        return float(x[y.argmin()])
    return float(np.clip(-b / (2 * a), x[0], x[-1]))
