"""Per-vertex tangents for normal maps, in the convention glTF viewers and Blender share.

A tangent-space normal map only means something together with the tangent frame it was baked in,
so the baker and the exporter must use the same one: this module. Tangents follow +u; the sign w
makes bitangent = cross(normal, tangent) * w point to image-up, which in glTF's UVs (v down) is
-v. That is MikkTSpace's frame on Blender's flipped UVs (Blender and three.js recompute or read
that frame), built here the same way MikkTSpace does for smooth, non-degenerate meshes: per-face
UV derivatives, angle-weighted per vertex, orthogonalised against the vertex normal.
"""
from __future__ import annotations

import numpy as np

from ..mesh import Mesh, vertex_normals


def _corner_angles(v: np.ndarray) -> np.ndarray:
    """(F, 3) interior angles of each triangle at each corner."""
    out = np.empty(v.shape[:2])
    for k in range(3):
        a = v[:, (k + 1) % 3] - v[:, k]
        b = v[:, (k + 2) % 3] - v[:, k]
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-20)
        out[:, k] = np.arccos(np.clip(cos, -1.0, 1.0))
    return out


def compute_tangents(mesh: Mesh) -> np.ndarray:
    """(V, 4) float32 glTF TANGENT for a mesh with per-vertex uvs (vertices split at seams)."""
    if mesh.uvs is None:
        raise ValueError("tangents need UVs")
    verts = mesh.vertices.astype(np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    normals = (mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, faces)).astype(np.float64)
    uv = mesh.uvs.astype(np.float64) * [1.0, -1.0]  # image-up is +v' (Blender's v)
    p, t = verts[faces], uv[faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-20
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    sdir = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r  # d position / d u
    tdir = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r  # d position / d v'
    # MikkTSpace normalises the per-face vectors before the angle-weighted sum
    sdir /= np.maximum(np.linalg.norm(sdir, axis=1, keepdims=True), 1e-20)
    tdir /= np.maximum(np.linalg.norm(tdir, axis=1, keepdims=True), 1e-20)
    w = _corner_angles(p) * ok[:, None]
    tan = np.zeros_like(verts)
    bit = np.zeros_like(verts)
    for k in range(3):
        np.add.at(tan, faces[:, k], sdir * w[:, k:k + 1])
        np.add.at(bit, faces[:, k], tdir * w[:, k:k + 1])
    tan -= normals * (tan * normals).sum(1, keepdims=True)
    length = np.linalg.norm(tan, axis=1, keepdims=True)
    fallback = _any_perpendicular(normals)
    tan = np.where(length > 1e-12, tan / np.maximum(length, 1e-12), fallback)
    sign = np.where((np.cross(normals, tan) * bit).sum(1) < 0.0, -1.0, 1.0)
    return np.concatenate([tan, sign[:, None]], 1).astype(np.float32)


def _any_perpendicular(n: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to each row of n (for vertices whose UVs are degenerate)."""
    axis = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t = np.cross(n, axis)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def tangent_frames(normals: np.ndarray, tangents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample (T, B, N), each (N, 3), from interpolated normals and tangents, the way a shader
    builds them: N and T renormalised, B = cross(N, T) * w (not renormalised, as MikkTSpace
    expects)."""
    n = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    t = tangents[..., :3]
    t = t - n * (t * n).sum(-1, keepdims=True)
    t = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
    w = np.where(tangents[..., 3:4] < 0, -1.0, 1.0)
    b = np.cross(n, t) * w
    return t, b, n
