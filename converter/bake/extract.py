"""Field → clean triangle mesh: SDF zero level set → floaters removed → decimated."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import marching_cubes

from ..errors import ExtractionError
from ..mesh import Mesh, vertex_normals
from ..train.trainer import TrainedField


@torch.no_grad()
def sdf_grid(tf: TrainedField, res: int, chunk: int = 1 << 16,
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The field's signed distance at the centres of a res^3 grid over the unit cube."""
    dev = tf.field.log_beta.device
    g = (torch.arange(res, dtype=torch.float32, device=dev) + 0.5) / res
    out = np.empty((res, res, res), np.float32)
    yz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    for i in range(res):
        pts = torch.cat([torch.full((yz.shape[0], 1), float(g[i]), device=dev), yz], 1)
        out[i] = torch.cat([tf.field.sdf_only(p) for p in pts.split(chunk)]).view(res, res).cpu().numpy()
        if progress:
            progress(i + 1, res)
    return out


def marching(tf: TrainedField, res: int, progress: Callable[[int, int], None] | None = None) -> Mesh:
    """Zero level set of the SDF, in the capture frame (vertices interpolated between samples)."""
    grid = sdf_grid(tf, res, progress=progress)
    if not np.isfinite(grid).all():
        raise ExtractionError("the signed-distance grid holds NaN/Inf values", hint="re-train with --set lr=0.003")
    if grid.min() >= 0 or grid.max() <= 0:
        raise ExtractionError("the trained field has no surface inside the object box",
                              hint="check the capture's masks/poses, or train longer (--preset quality)")
    verts, faces, _, _ = marching_cubes(grid, level=0.0)
    verts = tf.box.from_unit((verts + 0.5) / res).astype(np.float32)
    return Mesh(verts, faces.astype(np.int64))  # sdf < 0 inside: skimage winds outward


def components(mesh: Mesh) -> np.ndarray:
    """Connected-component label per face (faces sharing a vertex position are connected).

    Vertices are welded by position first, so UV seams do not split a surface into charts.
    """
    _, weld = np.unique(mesh.vertices, axis=0, return_inverse=True)
    f = weld.reshape(-1)[mesh.faces]
    n = int(weld.max()) + 1
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, vlabel = connected_components(adj, directed=False)
    return vlabel[f[:, 0]]


def remove_small_components(mesh: Mesh, min_ratio: float) -> Mesh:
    """Drop floaters: components whose area is below `min_ratio` of the total."""
    labels = components(mesh)
    area = np.bincount(labels, weights=mesh.face_areas())
    keep_labels = area >= min_ratio * area.sum()
    return compact(Mesh(mesh.vertices, mesh.faces[keep_labels[labels]]))


def compact(mesh: Mesh) -> Mesh:
    """Remove unreferenced vertices."""
    used, inverse = np.unique(mesh.faces, return_inverse=True)
    return Mesh(mesh.vertices[used], inverse.reshape(-1, 3).astype(np.int64))


def decimate(mesh: Mesh, max_triangles: int) -> Mesh:
    if mesh.n_triangles <= max_triangles:
        return mesh
    import fast_simplification

    ratio = 1.0 - max_triangles / mesh.n_triangles
    v, f = fast_simplification.simplify(mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), ratio)
    return compact(Mesh(v.astype(np.float32), f.astype(np.int64)))


def extract_mesh(tf: TrainedField, res: int, max_triangles: int, min_component_ratio: float,
                 progress: Callable[[int, int], None] | None = None) -> Mesh:
    mesh = marching(tf, res, progress)
    mesh = remove_small_components(mesh, min_component_ratio)
    mesh = decimate(mesh, max_triangles)
    if mesh.n_triangles == 0:
        raise ExtractionError("cleanup removed every triangle", hint="lower --set min_component_ratio")
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    return mesh
