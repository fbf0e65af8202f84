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


def _pieces():
    mesh = bumpy_mesh(12)
    return [(mesh.vertices, mesh.faces, None)], len(mesh.faces)


def test_atlas_child_that_stalls_is_killed_and_retried(monkeypatch):
    """xatlas's thread pool can lose its shutdown wake-up and hang; the child is timed out and retried."""
    from nrconvert.bake.atlas_proc import generate

    monkeypatch.setenv("NRCONVERT_FAULTS", "xatlas_hang@1")  # the first attempt stalls, the second not
    pieces, n_faces = _pieces()
    (vmap, faces, uvs), = generate(pieces, 256, 2, timeout_s=8)
    assert faces.shape == (n_faces, 3) and len(uvs) == len(vmap) and vmap.max() < len(pieces[0][0])
    assert 0.0 <= uvs.min() and uvs.max() <= 1.0


def test_atlas_that_always_stalls_fails_retryably(monkeypatch):
    from nrconvert.bake.atlas_proc import AtlasError, generate

    monkeypatch.setenv("NRCONVERT_FAULTS", "xatlas_hang@1+")
    with pytest.raises(AtlasError, match="stalled for 3 s, 2 times") as err:
        generate(_pieces()[0], 256, 2, timeout_s=3)
    assert err.value.exit_code == 77 and err.value.retryable


def test_a_mesh_xatlas_refuses_is_reported_at_once_and_not_retryable(monkeypatch):
    """xatlas raising on a mesh is deterministic: one attempt, exit 5 with its message, no retry."""
    from nrconvert.bake import atlas_proc
    from nrconvert.errors import ExtractionError

    mesh = bumpy_mesh(6)
    bad = mesh.faces.copy()
    bad[0, 0] = 10**6  # an index past the vertex list: xatlas refuses the mesh
    runs = []
    real_run = atlas_proc.subprocess.run
    monkeypatch.setattr(atlas_proc.subprocess, "run", lambda *a, **k: runs.append(1) or real_run(*a, **k))
    with pytest.raises(ExtractionError, match="refused the mesh") as err:
        atlas_proc.generate([(mesh.vertices, bad, None)], 128, 2, timeout_s=60, attempts=2)
    assert len(runs) == 1 and err.value.exit_code == 5 and not err.value.retryable
