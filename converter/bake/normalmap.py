"""Tangent-space normal maps: the high-detail surface's normal, seen from an LOD's tangent frame.

Each texel of the LOD's atlas is a point on the LOD; that point is moved onto the high-detail
surface (`bake.surface.project`), and the surface normal there is written in the texel's tangent
frame (`bake.tangents`), the frame viewers rebuild from the exported TANGENT. So a decimated LOD
shades like LOD0 (or the field itself), and every LOD shades alike.
"""
from __future__ import annotations

import numpy as np

from ..mesh import Mesh
from .surface import Surface
from .tangents import compute_tangents, tangent_frames
from .texels import Texels, texels_on_surface, welded_normals
from .texture import interpolate, pad_texture

FLAT = np.array([0.0, 0.0, 1.0], np.float32)


def bake_normal_map(mesh: Mesh, size: int, surface: Surface, max_distance: float = 0.03,
                    min_cosine: float = 0.1, texels: Texels | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 tangent-space normal map and the (size, size) bool mask of texels
    that lie on the mesh; empty texels hold their nearest covered texel, so bilinear filtering
    and mip levels never blend in a foreign value at chart borders.

    `mesh` needs UVs. Its normals and tangents are filled in place when missing: the map is only
    right in the frame it was baked in, so the exporter must write that same frame.
    Guard: where projection moved a point more than `max_distance` x the bbox diagonal (it
    jumped to another sheet of a thin part, or Newton diverged), or the surface normal leans
    away from the mesh normal (cosine < `min_cosine`: the wrong side of a thin part), the texel
    keeps the mesh normal, (0, 0, 1) in tangent space. `texels`: the same texels already
    projected (bake.texels, shared with the AO and material bakes; made with these settings).
    """
    ensure_frame(mesh)
    texels = texels or texels_on_surface(mesh, size, surface, max_distance, min_cosine)
    hit = texels.hit
    tan = interpolate(mesh.tangents, mesh.faces, texels.frags)[hit]
    t, b, n = tangent_frames(texels.mesh_normal, tan)
    g = texels.normal
    local = np.stack([(g * t).sum(1), (g * b).sum(1), (g * n).sum(1)], 1)
    local /= np.maximum(np.linalg.norm(local, axis=1, keepdims=True), 1e-12)
    local[~texels.on_surface] = FLAT
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


def encode(v: np.ndarray) -> np.ndarray:
    """glTF normal-texture encoding of unit vectors: (x, y, z) -> round(255 * (0.5 v + 0.5))."""
    return np.clip(np.round((0.5 * np.asarray(v, np.float32) + 0.5) * 255.0), 0, 255).astype(np.uint8)


def decode(rgb: np.ndarray) -> np.ndarray:
    """Inverse of `encode` as a shader does it: 2 * (rgb / 255) - 1, renormalised."""
    v = rgb.astype(np.float32) / 255.0 * 2.0 - 1.0
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
