"""An LOD atlas's texels as points on the high-detail surface: computed once, read by every map.

Why one place: the AO, normal-map and material bakes all start from the same texel points moved
onto the field's surface (Newton steps plus a central-difference normal, ~13 field evaluations a
texel). At 2048² that projection took ~18 s on 2 cores, and each of the three bakes paid it
again for the same answer (a fifth of the balanced bake stage).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mesh import Mesh, vertex_normals
from ..render.raster import Fragments
from .surface import Surface, project
from .texture import interpolate, texel_fragments


@dataclass
class Texels:
    frags: Fragments  # the atlas's rasterization (triangle id and barycentrics per texel)
    hit: np.ndarray  # (size, size) bool: texels on the mesh
    mesh_normal: np.ndarray  # (P, 3) unit: the LOD's interpolated normal at each covered texel
    point: np.ndarray  # (P, 3): on the surface where trusted, else on the LOD
    normal: np.ndarray  # (P, 3) unit: the surface's normal where trusted, else mesh_normal
    on_surface: np.ndarray  # (P,) bool: where the surface was trusted


def texels_on_surface(mesh: Mesh, size: int, surface: Surface | None, max_distance: float = 0.03,
                      min_cosine: float = 0.1) -> Texels:
    """The covered texels of `mesh`'s atlas at `size`², moved onto `surface` (none: left on the
    mesh). The guard (`project_guarded`) keeps a texel on the mesh where projection moved it more
    than `max_distance` x the bbox diagonal or the normal leans away (cosine < `min_cosine`)."""
    frags = texel_fragments(mesh, size)
    hit = frags.tri >= 0
    normals = mesh.normals if mesh.normals is not None else welded_normals(mesh)
    pos = interpolate(mesh.vertices, mesh.faces, frags)[hit]
    nrm = interpolate(normals, mesh.faces, frags)[hit]
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    if surface is None or not len(pos):
        return Texels(frags, hit, nrm, pos, nrm, np.zeros(len(pos), bool))
    on, normal, ok = project_guarded(surface, pos, nrm, max_distance * mesh.bbox_diagonal(), min_cosine)
    return Texels(frags, hit, nrm, on, normal, ok)


def welded_normals(mesh: Mesh) -> np.ndarray:
    """Area-weighted normals computed with seam copies of a vertex merged, then split again."""
    unique, weld = np.unique(mesh.vertices, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    return vertex_normals(unique, weld[mesh.faces])[weld]


def project_guarded(surface: Surface, pos: np.ndarray, nrm: np.ndarray, max_move: float,
                    min_cosine: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on the surface and its normals there, with the input point and (unit) normal kept
    where the projection moved farther than `max_move` or the normal leans away (cosine to `nrm`
    below `min_cosine`): there the lookup likely landed on another part of the object. Also
    returns where the surface was used."""
    on, normal = project(surface, pos)
    ok = np.isfinite(on).all(1) & np.isfinite(normal).all(1)
    ok &= (np.linalg.norm(on - pos, axis=1) <= max_move) & ((normal * nrm).sum(1) >= min_cosine)
    return np.where(ok[:, None], on, pos), np.where(ok[:, None], normal, nrm), ok
