"""The LOD chain: one mesh and one node per LOD, tied together with `MSFT_lod`.

Per the MSFT_lod spec the extension sits on the highest-detail node (LOD0) and lists the lower
LOD nodes in `ids`, coarsest last; `extras.MSFT_screencoverage` holds one value per LOD, LOD0's
first: LOD k is shown while the object covers between coverage[k-1] (1.0 for LOD0) and coverage[k]
of the screen, and nothing below the last value (0 keeps the coarsest LOD always on). Only LOD0
is a scene root: a loader without MSFT_lod (three.js, Blender) shows LOD0 alone instead of every
LOD on top of each other, while the lower LOD nodes stay in the file for loaders that switch.
Node names end in `_LOD0`, `_LOD1`, ... so tools can find the chain by name; a single-LOD asset
keeps its plain name (there is no chain to find).
"""
from __future__ import annotations

import math

import numpy as np
import pygltflib as gl

from ..mesh import Mesh, vertex_normals
from .container import Blob
from .frames import points_to_gltf

MSFT_LOD = "MSFT_lod"
COVERAGE_KEY = "MSFT_screencoverage"


def lod_suffix(n_lods: int, k: int) -> str:
    """Name suffix of LOD k in a chain of n_lods ('' for a lone LOD)."""
    return "" if n_lods == 1 else f"_LOD{k}"


def check_coverage(coverage: list[float]) -> None:
    """Screen coverage must be finite, within [0, 1] and strictly decreasing from LOD0 (else some
    LOD would never be shown); raises ValueError saying which value breaks it."""
    for k, c in enumerate(coverage):
        if not (isinstance(c, (int, float, np.floating, np.integer)) and math.isfinite(c)
                and 0.0 <= c <= 1.0):
            raise ValueError(f"lods[{k}].screen_coverage must be a number in [0, 1], got {c!r}")
        if k and c >= coverage[k - 1]:
            raise ValueError(f"lods[{k}].screen_coverage ({c}) must be below lods[{k - 1}]'s "
                             f"({coverage[k - 1]}): coverage falls from LOD0 to the coarsest LOD")


def unit_normals(mesh: Mesh, up_axis: str) -> np.ndarray:
    """glTF-frame unit normals; recomputed when missing, zero ones replaced by +Y (validator
    rejects non-unit NORMAL)."""
    n = mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, mesh.faces)
    n = points_to_gltf(n, up_axis).astype(np.float64)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])
    return n.astype(np.float32)


def gltf_tangents(tangents: np.ndarray, normals: np.ndarray, up_axis: str) -> np.ndarray:
    """Capture-frame (V, 4) tangents to glTF: xyz rotated like normals (the frame swap is a pure
    rotation, so the handedness w is unchanged) and made unit; w snapped to exactly +-1, as the
    validator requires. A zero xyz (degenerate UVs) gets any unit vector perpendicular to the
    (glTF-frame) normal."""
    t = points_to_gltf(np.asarray(tangents)[:, :3], up_axis).astype(np.float64)
    length = np.linalg.norm(t, axis=1, keepdims=True)
    axis = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    perp = np.cross(normals, axis)
    perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-12)
    t = np.where(length > 1e-12, t / np.maximum(length, 1e-12), perp)
    w = np.where(np.asarray(tangents)[:, 3:4] < 0.0, -1.0, 1.0)
    return np.concatenate([t, w], 1).astype(np.float32)


def add_lod_mesh(gltf: gl.GLTF2, blob: Blob, mesh: Mesh, up_axis: str, name: str,
                 material: int, tangents: np.ndarray | None, extensions: dict | None) -> int:
    """One glTF mesh (one primitive) for an LOD; returns its index. `tangents` are capture-frame
    (V, 4) or None; `extensions` go on the primitive (material variants)."""
    pos = points_to_gltf(mesh.vertices, up_axis)
    normals = unit_normals(mesh, up_axis)
    uv = np.asarray(mesh.uvs, dtype=np.float32)
    small = len(pos) < 65536  # 65535 itself is the primitive-restart value, never an index
    idx = np.asarray(mesh.faces).reshape(-1).astype(np.uint16 if small else np.uint32)
    attrs = gl.Attributes(
        POSITION=blob.accessor(pos, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, with_bounds=True),
        NORMAL=blob.accessor(normals, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER))
    if tangents is not None:
        attrs.TANGENT = blob.accessor(gltf_tangents(tangents, normals, up_axis), gl.FLOAT,
                                      gl.VEC4, gl.ARRAY_BUFFER)
    attrs.TEXCOORD_0 = blob.accessor(uv, gl.FLOAT, gl.VEC2, gl.ARRAY_BUFFER)
    indices = blob.accessor(idx, gl.UNSIGNED_SHORT if small else gl.UNSIGNED_INT, gl.SCALAR,
                            gl.ELEMENT_ARRAY_BUFFER)
    prim = gl.Primitive(attributes=attrs, indices=indices, material=material, mode=gl.TRIANGLES)
    if extensions:
        prim.extensions = extensions
    gltf.meshes.append(gl.Mesh(name=name, primitives=[prim]))
    return len(gltf.meshes) - 1


def add_lod_nodes(gltf: gl.GLTF2, names: list[str], meshes: list[int],
                  coverage: list[float]) -> int:
    """One node per LOD (LOD0 first, consecutive indices); MSFT_lod and the coverage list on
    LOD0 when there is a chain. Returns LOD0's node index, the only one to list as a root."""
    first = len(gltf.nodes)
    for name, mesh in zip(names, meshes):
        gltf.nodes.append(gl.Node(name=name, mesh=mesh))
    if len(names) > 1:
        root = gltf.nodes[first]
        root.extensions = {MSFT_LOD: {"ids": list(range(first + 1, first + len(names)))}}
        root.extras = {COVERAGE_KEY: [float(c) for c in coverage]}
    return first
