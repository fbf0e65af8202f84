"""LOD chain: LOD0 plus quadric-decimated copies, their texture sizes and switch thresholds.

Each lower LOD is decimated from LOD0 itself, not from the previous LOD, so errors do not
accumulate down the chain. The LODs carry no UVs: each is unwrapped on its own afterwards
(`bake.uv.unwrap`), and its maps are baked against the same high-detail surface
(`bake.surface`). Because the UV seams of an LOD are cut after its decimation, no collapse can
ever move or merge a seam: seams are preserved by construction, with no seam constraint needed in
the decimator. Open boundaries (where the object touched the capture box, or a cut ground
plane) are kept exactly: fast-simplification's `preserve_border` forbids any collapse touching a
boundary vertex. Without it the quadric decimator has no boundary quadrics and, at 1.5 %, shrank
an open hemisphere into a closed blob in our trials.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..mesh import Mesh, vertex_normals
from .extract import compact

DEFAULT_RATIOS = (1.0, 0.25, 0.06, 0.015)
MIN_TRIANGLES = 12  # below this a "mesh" is no longer a useful stand-in for the object
MIN_SAVING = 0.75  # an LOD must have at most this share of the previous LOD's triangles


def lod_chain(mesh: Mesh, n_lods: int = 4, ratios=DEFAULT_RATIOS) -> list[Mesh]:
    """LOD0 (the input, with normals) followed by decimations to `ratios[i]` of its triangles.

    The chain stops early when a level would not be worth a switch: fewer than MIN_TRIANGLES
    triangles, or not at least 25 % fewer triangles than the level before (tiny meshes, or open
    meshes whose frozen boundary caps the reduction). So it may hold fewer than `n_lods` meshes,
    never fewer than one. Lower levels get area-weighted vertex normals and no UVs.
    """
    if n_lods < 1:
        raise ValueError(f"n_lods must be >= 1, got {n_lods}")
    if len(ratios) < n_lods or abs(ratios[0] - 1.0) > 1e-9:
        raise ValueError(f"need {n_lods} ratios starting at 1.0, got {tuple(ratios)}")
    if any(b >= a for a, b in zip(ratios[:n_lods], ratios[1:n_lods])):
        raise ValueError(f"ratios must decrease, got {tuple(ratios)}")
    lod0 = mesh if mesh.normals is not None else dataclasses.replace(
        mesh, normals=vertex_normals(mesh.vertices, mesh.faces))
    chain = [lod0]
    welded = _weld(lod0)
    for ratio in ratios[1:n_lods]:
        target = int(round(ratio * lod0.n_triangles))
        if target < MIN_TRIANGLES:
            break
        lod = decimate_to(welded, target)
        if lod.n_triangles > MIN_SAVING * chain[-1].n_triangles or lod.n_triangles < MIN_TRIANGLES:
            break
        chain.append(lod)
    return chain


def decimate_to(mesh: Mesh, target: int, aggressiveness: float = 7.0) -> Mesh:
    """Quadric decimation to about `target` triangles, open boundaries frozen, normals recomputed.

    `aggressiveness` is fast-simplification's `agg` (its default): lower values (3) kept the shape
    marginally better in our trials but missed the 1.5 % target on open meshes and ran no faster.
    """
    import fast_simplification

    if target >= mesh.n_triangles:
        return dataclasses.replace(mesh, normals=vertex_normals(mesh.vertices, mesh.faces))
    v, f = fast_simplification.simplify(mesh.vertices.astype(np.float64), mesh.faces.astype(np.int32),
                                        target_count=int(target), agg=aggressiveness, preserve_border=True)
    f = np.asarray(f, np.int64)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    out = compact(Mesh(np.asarray(v, np.float32), f))
    out.normals = vertex_normals(out.vertices, out.faces)
    return out


def _weld(mesh: Mesh) -> Mesh:
    """Merge vertices at identical positions: a mesh split along old UV seams would otherwise show
    those seams to the decimator as open boundaries, and `preserve_border` would freeze them."""
    verts, inverse = np.unique(mesh.vertices, axis=0, return_inverse=True)
    if len(verts) == len(mesh.vertices):
        return Mesh(mesh.vertices, mesh.faces)
    return Mesh(verts.astype(np.float32), inverse.reshape(-1)[mesh.faces].astype(np.int64))


def lod_texture_sizes(base: int, n: int, floor: int = 256) -> list[int]:
    """Texture side per LOD: halved per level, never below `floor` (or `base` if that is smaller).

    Why halving: the default ratios step the triangle count down ~4x per level and
    `screen_coverages` switches levels at ~4x smaller screen area, so each level is seen at about
    half the on-screen width of the previous one and needs half the texels per side for the same
    texel-per-pixel density; a power of two keeps mip chains complete. Why a floor: xatlas pads
    every chart with a few texels, so below ~256² padding eats a large share of the atlas, while
    a 256² RGBA map set costs only ~1 MB.
    """
    if n < 1 or base < 1:
        raise ValueError(f"need base >= 1 and n >= 1, got {base}, {n}")
    low = min(floor, base)
    return [max(base >> i, low) for i in range(n)]


def screen_coverages(meshes: list[Mesh], pixels_per_triangle: float = 8.0,
                     screen_pixels: float = 1920 * 1080) -> list[float]:
    """MSFT_screencoverage thresholds, one per LOD: LOD i is shown while the object covers more
    than `c_i` of the screen area; the last is 0 (the coarsest level is never culled).

    Rule: leave a level when its triangles get too dense to pay off. At coverage c an object
    covers c * screen_pixels pixels, and about half of its n triangles face the camera, so each
    visible triangle spans ~2 c S / n pixels. Below `pixels_per_triangle` (8: GPUs shade in 2x2
    quads, so smaller triangles waste most of their shading work and the extra detail is
    sub-pixel anyway), switch to the next level:  c_i = pixels_per_triangle * n_i / (2 S).
    The thresholds thus scale with the triangle counts: at every switch the outgoing level has
    the same on-screen density, and the incoming one is ~4x coarser per triangle.
    Clamped to 1 (an object filling the screen always gets LOD0) and made strictly decreasing.
    """
    out = []
    for i, m in enumerate(meshes):
        if i == len(meshes) - 1:
            out.append(0.0)
            break
        c = min(1.0, pixels_per_triangle * m.n_triangles / (2.0 * screen_pixels))
        out.append(float(c if not out else min(c, out[-1] * 0.999)))
    return out
