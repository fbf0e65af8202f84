"""UV atlas with xatlas: vertices are split along seams so each carries one UV."""
from __future__ import annotations

import numpy as np
import xatlas

from ..mesh import Mesh


def unwrap(mesh: Mesh, texture_size: int, padding: int = 4) -> Mesh:
    """A copy of `mesh` with per-vertex UVs in glTF convention (origin top-left, v down)."""
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32),
                   None if mesh.normals is None else mesh.normals.astype(np.float32))
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = padding
    pack.bilinear = True
    pack.blockAlign = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vmap, faces, uvs = atlas[0] if hasattr(atlas, "__getitem__") else atlas.get_mesh(0)
    # xatlas UVs have v up from the bottom (OpenGL); glTF puts the origin at the top-left
    uvs = np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], -1).astype(np.float32)
    normals = None if mesh.normals is None else mesh.normals[vmap]
    return Mesh(mesh.vertices[vmap], faces.astype(np.int64), normals, uvs)
