"""Triangle rasterization in numpy: screen space (z-buffered) and UV space.

Returns, per pixel, the covering triangle id (-1 for none) and barycentrics; attributes are
interpolated by the caller. Vectorised over triangles by expanding each triangle's bounding box
to candidate pixels in bounded chunks, then resolving depth with one sort.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture.model import Frame


@dataclass
class Fragments:
    tri: np.ndarray  # (H, W) int64, -1 where empty
    bary: np.ndarray  # (H, W, 3) float32
    depth: np.ndarray  # (H, W) float32, inf where empty


def _candidates(p: np.ndarray, faces: np.ndarray, h: int, w: int, tri_ids: np.ndarray):
    """Pixel centres inside the bounding boxes of the given triangles."""
    v = p[faces[tri_ids]]  # (T, 3, 2)
    x0 = np.clip(np.floor(v[..., 0].min(1) - 0.5), 0, w).astype(np.int64)
    x1 = np.clip(np.ceil(v[..., 0].max(1) - 0.5), -1, w - 1).astype(np.int64)
    y0 = np.clip(np.floor(v[..., 1].min(1) - 0.5), 0, h).astype(np.int64)
    y1 = np.clip(np.ceil(v[..., 1].max(1) - 0.5), -1, h - 1).astype(np.int64)
    bw = np.maximum(x1 - x0 + 1, 0)
    bh = np.maximum(y1 - y0 + 1, 0)
    counts = bw * bh
    owner = np.repeat(np.arange(len(tri_ids)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x0[owner] + local % np.maximum(bw[owner], 1)
    py = y0[owner] + local // np.maximum(bw[owner], 1)
    return owner, px, py


def _barycentric(v: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Barycentrics of pixel centres (px+.5, py+.5) in 2D triangles v (N, 3, 2)."""
    x, y = px + 0.5, py + 0.5
    (ax, ay), (bx, by), (cx, cy) = v[:, 0].T, v[:, 1].T, v[:, 2].T
    den = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    l0 = ((by - cy) * (x - cx) + (cx - bx) * (y - cy)) / den
    l1 = ((cy - ay) * (x - cx) + (ax - cx) * (y - cy)) / den
    return np.stack([l0, l1, 1 - l0 - l1], -1)


def rasterize(p: np.ndarray, faces: np.ndarray, h: int, w: int, z: np.ndarray | None = None,
              chunk_pixels: int = 4_000_000) -> Fragments:
    """Rasterize 2D vertex positions `p` (V, 2) in pixel units; `z` (V,) enables the z-buffer."""
    tri = np.full(h * w, -1, np.int64)
    bary = np.zeros((h * w, 3), np.float32)
    depth = np.full(h * w, np.inf, np.float32)
    v2 = p[faces]
    v2 = v2.reshape(-1, 3, 2)
    area = np.abs(np.cross(v2[:, 1] - v2[:, 0], v2[:, 2] - v2[:, 0]))
    ext = np.ptp(v2[..., 0], 1).clip(1) * np.ptp(v2[..., 1], 1).clip(1) + 2
    order = np.arange(len(faces))[area > 0]
    bounds = np.cumsum(ext[order])
    start = 0
    while start < len(order):
        stop = max(start + 1, int(np.searchsorted(bounds, bounds[start] - ext[order[start]] + chunk_pixels)))
        ids = order[start:stop]
        start = stop
        owner, px, py = _candidates(p, faces, h, w, ids)
        if len(owner) == 0:
            continue
        b = _barycentric(v2[ids][owner], px, py)
        inside = (b >= -1e-7).all(1)
        owner, px, py, b = owner[inside], px[inside], py[inside], b[inside]
        pix = py * w + px
        zz = (b * z[faces[ids][owner]]).sum(1) if z is not None else np.zeros(len(pix))
        _resolve(pix, zz, ids[owner], b, tri, bary, depth, z is not None)
    return Fragments(tri.reshape(h, w), bary.reshape(h, w, 3), depth.reshape(h, w))


def _resolve(pix, zz, tri_ids, b, tri, bary, depth, use_z: bool) -> None:
    """Keep, per pixel, the nearest fragment (or the last one written without a z-buffer)."""
    order = np.lexsort((zz, pix))
    pix, zz, tri_ids, b = pix[order], zz[order], tri_ids[order], b[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, zz, tri_ids, b = pix[first], zz[first], tri_ids[first], b[first]
    win = zz < depth[pix] if use_z else np.ones(len(pix), bool)
    pix = pix[win]
    tri[pix] = tri_ids[win]
    bary[pix] = b[win]
    depth[pix] = zz[win] if use_z else 0.0


def project(frame: Frame, vertices: np.ndarray, downscale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (V, 2) and view depth (V,) of capture-frame vertices in a camera."""
    w2c = np.linalg.inv(frame.c2w)
    pc = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    z = -pc[:, 2]
    zs = np.where(z > 1e-6, z, 1e-6)
    u = (pc[:, 0] / zs * frame.fx + frame.cx) / downscale
    v = (-pc[:, 1] / zs * frame.fy + frame.cy) / downscale
    return np.stack([u, v], -1), z


def rasterize_view(frame: Frame, vertices: np.ndarray, faces: np.ndarray, downscale: int = 1,
                   cull_backfaces: bool = False) -> Fragments:
    """Screen-space fragments of a mesh seen by a capture camera (triangles behind it dropped).

    `cull_backfaces` (closed, outward-wound meshes only) halves the work of texture fitting.
    """
    p, z = project(frame, vertices, downscale)
    visible = (z[faces] > 1e-4).all(1)
    if cull_backfaces:
        v = vertices[faces]
        normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        visible &= (normal * (v[:, 0] - frame.c2w[:3, 3])).sum(1) < 0
    frags = rasterize(p, faces[visible], frame.height // downscale, frame.width // downscale, z)
    ids = np.flatnonzero(visible)
    frags.tri = np.where(frags.tri >= 0, ids[np.maximum(frags.tri, 0)], -1)
    return frags
