"""Cut a block's mesh at its own region's borders, so neighbouring blocks meet without gaps.

Each block's field is trained past its borders (the overlap), so near a border both neighbours
hold nearly the same surface. Every block keeps its surface up to the border plus a `skirt` (one
marching-cubes cell), cut exactly on that plane: triangles crossing it are split, their new
vertices lie on the plane, and the two neighbours' pieces overlap by two skirts instead of leaving
a crack where their surfaces differ slightly (docs/design.md, "Blocks: seams").
"""
from __future__ import annotations

import numpy as np

from ..mesh import Mesh


def clip_plane(mesh: Mesh, normal: np.ndarray, offset: float) -> Mesh:
    """The part of `mesh` where dot(normal, x) <= offset, triangles split on the plane (winding kept)."""
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    dist = v @ np.asarray(normal, np.float64) - offset
    inside = dist <= 0
    n_in = inside[f].sum(1)
    cut = f[(n_in > 0) & (n_in < 3)]
    kept = f[n_in == 3]
    if len(cut) == 0:
        return _compact(v, kept)
    ins = inside[cut]
    single_in = ins.sum(1) == 1
    lone = np.where(single_in, ins.argmax(1), (~ins).argmax(1))  # the vertex alone on its side
    a, b, c = (np.take_along_axis(cut, ((lone + k) % 3)[:, None], 1)[:, 0] for k in range(3))
    pts, keys = _edge_points(v, dist, cut, inside)
    ab = len(v) + _edge_index(keys, a, b, len(v))
    ca = len(v) + _edge_index(keys, c, a, len(v))
    one = np.stack([a, ab, ca], 1)[single_in]  # a inside alone: the corner at a
    q = ~single_in  # a outside alone: the quad ab b c ca
    quad = np.concatenate([np.stack([ab, b, c], 1)[q], np.stack([ab, c, ca], 1)[q]])
    return _compact(np.concatenate([v, pts]), np.concatenate([kept, one, quad]))


def _edge_points(v, dist, cut, inside) -> tuple[np.ndarray, np.ndarray]:
    """One new vertex per crossing edge, shared by the two triangles on it, on the plane; and the
    sorted edge keys (lo * V + hi) they are stored under."""
    edges = np.sort(np.concatenate([cut[:, [0, 1]], cut[:, [1, 2]], cut[:, [2, 0]]]), 1)
    edges = np.unique(edges[inside[edges[:, 0]] != inside[edges[:, 1]]], axis=0)
    d0, d1 = dist[edges[:, 0]], dist[edges[:, 1]]
    t = d0 / (d0 - d1)
    pts = v[edges[:, 0]] + t[:, None] * (v[edges[:, 1]] - v[edges[:, 0]])
    return pts, edges[:, 0] * len(v) + edges[:, 1]


def _edge_index(keys: np.ndarray, p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(keys, np.minimum(p, q) * n + np.maximum(p, q))


def _compact(v: np.ndarray, f: np.ndarray) -> Mesh:
    if len(f) == 0:
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
    used, inv = np.unique(f, return_inverse=True)
    return Mesh(v[used].astype(np.float32), inv.reshape(-1, 3).astype(np.int64))


def clip_slab(mesh: Mesh, axis: np.ndarray, own: list[float | None], skirt: float) -> Mesh:
    """The part of `mesh` whose axis coordinate lies in the own region widened by `skirt`."""
    axis = np.asarray(axis, np.float64)
    start, end = own
    if end is not None:
        mesh = clip_plane(mesh, axis, end + skirt)
    if start is not None and mesh.n_triangles:
        mesh = clip_plane(mesh, -axis, -(start - skirt))
    return mesh
