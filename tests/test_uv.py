"""UV unwrap: the slab-split path (large meshes) must give one valid, overlap-free atlas."""
from __future__ import annotations

import numpy as np
import pytest

from nrconvert.bake import uv as uv_mod
from nrconvert.bake.uv import unwrap
from nrconvert.mesh import vertex_normals
from nrconvert.render.raster import rasterize
from tests.test_lod import bumpy_mesh


@pytest.mark.parametrize("faces_per_piece", [10**9, 2_000])
def test_unwrap_keeps_geometry_and_packs_without_overlap(monkeypatch, faces_per_piece):
    monkeypatch.setattr(uv_mod, "FACES_PER_PIECE", faces_per_piece)
    mesh = bumpy_mesh(40)
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    out = unwrap(mesh, 512)
    assert len(out.faces) == len(mesh.faces)
    # same triangles in space (xatlas keeps face order within a piece; compare as sets of centroids)
    a = np.sort(np.round(mesh.vertices[mesh.faces].mean(1), 5).view("f4,f4,f4").ravel())
    b = np.sort(np.round(out.vertices[out.faces].mean(1), 5).view("f4,f4,f4").ravel())
    assert np.array_equal(a, b)
    assert out.uvs.min() >= 0.0 and out.uvs.max() <= 1.0
    # no two charts overlap: the rasterized texel count matches the summed UV triangle area
    size = 512
    frags = rasterize(out.uvs * size, out.faces, size, size)
    t = out.uvs[out.faces] * size
    area = 0.5 * np.abs((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1])
                        - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1])).sum()
    covered = (frags.tri >= 0).sum()
    assert abs(covered - area) / area < 0.03, (covered, area)
    assert covered / size**2 > 0.4  # packed, not scattered
