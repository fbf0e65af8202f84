"""Tangent-space normal maps: the high-detail surface's normal, seen from an LOD's tangent frame.

Each texel of the LOD's atlas is a point on the LOD; that point is moved onto the high-detail
surface (`bake.surface.project`), and the surface normal there is written in the texel's tangent
frame (`bake.tangents`), the frame viewers rebuild from the exported TANGENT. So a decimated LOD
shades like LOD0 (or the field itself), and every LOD shades alike.
"""
from __future__ import annotations

import numpy as np

from ..mesh import Mesh, vertex_normals
from .surface import Surface, project
from .tangents import compute_tangents, tangent_frames
from .texture import interpolate, pad_texture, texel_fragments

FLAT = np.array([0.0, 0.0, 1.0], np.float32)


def bake_normal_map(mesh: Mesh, size: int, surface: Surface, max_distance: float = 0.03,
                    min_cosine: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 tangent-space normal map and the (size, size) bool mask of texels
    that lie on the mesh; empty texels hold their nearest covered texel, so bilinear filtering
    and mip levels never blend in a foreign value at chart borders.

    `mesh` needs UVs. Its normals and tangents are filled in place when missing: the map is only
    right in the frame it was baked in, so the exporter must write that same frame.
    Guard: where projection moved a point more than `max_distance` x the bbox diagonal (it
    jumped to another sheet of a thin part, or Newton diverged), or the surface normal leans
    away from the mesh normal (cosine < `min_cosine`: the wrong side of a thin part), the texel
    keeps the mesh normal, (0, 0, 1) in tangent space.
    """
    ensure_frame(mesh)
    frags = texel_fragments(mesh, size)
    hit = frags.tri >= 0
    pos, nrm, tan = (interpolate(a, mesh.faces, frags)[hit] for a in (mesh.vertices, mesh.normals, mesh.tangents))
    t, b, n = tangent_frames(nrm, tan)
    local = np.tile(FLAT, (len(pos), 1))
    if len(pos):
        local, _ = surface_normals_local(surface, pos, t, b, n, max_distance * mesh.bbox_diagonal(), min_cosine)
    out = np.zeros((size, size, 3), np.uint8)
    out[..., :] = encode(FLAT)
    out[hit] = encode(local)
    return pad_texture(out, hit), hit


def ensure_frame(mesh: Mesh) -> None:
    """Give `mesh` smooth normals (welded across UV seams, so seams do not crease the shading) and
    tangents, unless it has them."""
    if mesh.uvs is None:
        raise ValueError("a normal map needs a UV-mapped mesh (bake.uv.unwrap)")
    if mesh.normals is None:
        mesh.normals = welded_normals(mesh)
    if mesh.tangents is None:
        mesh.tangents = compute_tangents(mesh)


def welded_normals(mesh: Mesh) -> np.ndarray:
    """Area-weighted normals computed with seam copies of a vertex merged, then split again."""
    unique, weld = np.unique(mesh.vertices, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    return vertex_normals(unique, weld[mesh.faces])[weld]


def surface_normals_local(surface: Surface, pos: np.ndarray, t: np.ndarray, b: np.ndarray, n: np.ndarray,
                          max_move: float, min_cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangent-space normals (P, 3) of the surface near `pos`, and where they were trusted."""
    _, normal, ok = project_guarded(surface, pos, n, max_move, min_cosine)
    local = np.stack([(normal * t).sum(1), (normal * b).sum(1), (normal * n).sum(1)], 1)
    local /= np.maximum(np.linalg.norm(local, axis=1, keepdims=True), 1e-12)
    return local.astype(np.float32), ok


def project_guarded(surface: Surface, pos: np.ndarray, nrm: np.ndarray, max_move: float,
                    min_cosine: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on the surface and its normals there, with the input point and (unit) normal kept
    where the projection moved farther than `max_move` or the normal leans away (cosine to `nrm`
    below `min_cosine`): there the lookup likely landed on another part of the object. Also
    returns where the surface was used. Shared by the normal and AO bakers, so both agree."""
    on, normal = project(surface, pos)
    ok = np.isfinite(on).all(1) & np.isfinite(normal).all(1)
    ok &= (np.linalg.norm(on - pos, axis=1) <= max_move) & ((normal * nrm).sum(1) >= min_cosine)
    return np.where(ok[:, None], on, pos), np.where(ok[:, None], normal, nrm), ok


def encode(v: np.ndarray) -> np.ndarray:
    """glTF normal-texture encoding of unit vectors: (x, y, z) -> round(255 * (0.5 v + 0.5))."""
    return np.clip(np.round((0.5 * np.asarray(v, np.float32) + 0.5) * 255.0), 0, 255).astype(np.uint8)


def decode(rgb: np.ndarray) -> np.ndarray:
    """Inverse of `encode` as a shader does it: 2 * (rgb / 255) - 1, renormalised."""
    v = rgb.astype(np.float32) / 255.0 * 2.0 - 1.0
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
