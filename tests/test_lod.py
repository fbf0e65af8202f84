"""LOD chain: triangle ratios, kept boundaries, distance to LOD0, tiny meshes, sizes and coverages."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from nrconvert.bake.lod import lod_chain, lod_texture_sizes, screen_coverages
from nrconvert.mesh import Mesh


def bumpy_sdf(p: np.ndarray) -> np.ndarray:
    """A sphere of radius 0.8 with bumps of +-0.05: enough curvature that decimation has to choose."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    return np.linalg.norm(p, axis=-1) - 0.8 - 0.05 * np.sin(7 * x) * np.sin(7 * y) * np.sin(7 * z)


def bumpy_mesh(res: int = 72) -> Mesh:
    g = (np.arange(res) + 0.5) / res * 2.2 - 1.1
    grid = bumpy_sdf(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1))
    v, f, _, _ = marching_cubes(grid, 0.0)
    return Mesh(((v + 0.5) / res * 2.2 - 1.1).astype(np.float32), f.astype(np.int64))


def icosphere(subdivisions: int, radius: float = 1.0) -> Mesh:
    """Unit icosahedron, each triangle split in four `subdivisions` times, pushed onto the sphere."""
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                  [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                  [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = len(v) + inv.reshape(3, -1).T  # midpoints of edges (01, 12, 20) per face
        v = np.concatenate([v, 0.5 * (v[uniq[:, 0]] + v[uniq[:, 1]])])
        a, b, c = f.T
        ab, bc, ca = mid.T
        f = np.concatenate([np.stack(x, 1) for x in ([a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca])])
    v = v / np.linalg.norm(v, axis=1, keepdims=True) * radius
    return Mesh(v.astype(np.float32), f.astype(np.int64))


def open_cap(n_theta: int = 120, n_phi: int = 240) -> Mesh:
    """A bumpy spherical cap down to 60 deg from the pole: an open mesh with a wavy boundary loop."""
    th = np.linspace(0, np.pi / 3, n_theta)[1:]
    ph = np.linspace(0, 2 * np.pi, n_phi, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    r = 1 + 0.05 * np.sin(6 * P) * np.sin(3 * T)
    v = np.concatenate([[[0, 0, 1]], np.stack([r * np.sin(T) * np.cos(P), r * np.sin(T) * np.sin(P), r * np.cos(T)],
                                              -1).reshape(-1, 3)])
    idx = 1 + np.arange(len(th) * n_phi).reshape(len(th), n_phi)
    fan = np.stack([np.zeros(n_phi, int), idx[0], np.roll(idx[0], -1)], 1)
    a, b, c, d = idx[:-1], np.roll(idx[:-1], -1, 1), idx[1:], np.roll(idx[1:], -1, 1)
    f = np.concatenate([fan, np.stack([a.ravel(), c.ravel(), d.ravel()], 1), np.stack([a.ravel(), d.ravel(), b.ravel()], 1)])
    return Mesh(v.astype(np.float32), f.astype(np.int64))


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    return uniq[count == 1]


def point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest of the segments a-b."""
    ab = b - a
    t = np.clip(((p[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-20)[None], 0, 1)
    return np.linalg.norm(p[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1).min(1)


def surface_samples(mesh: Mesh, n: int = 200_000, seed: int = 0) -> np.ndarray:
    """Area-uniform random points on the mesh: a dense stand-in for its surface."""
    rng = np.random.default_rng(seed)
    area = mesh.face_areas()
    tri = rng.choice(len(area), n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    return (mesh.vertices[mesh.faces[tri]] * w[..., None]).sum(1)


@pytest.fixture(scope="module")
def closed_chain() -> tuple[Mesh, list[Mesh]]:
    mesh = bumpy_mesh()
    return mesh, lod_chain(mesh)


def test_triangle_ratios(closed_chain):
    mesh, chain = closed_chain
    assert len(chain) == 4
    assert chain[0].vertices is mesh.vertices and chain[0].faces is mesh.faces  # LOD0 is the input
    assert chain[0].normals is not None
    got = [m.n_triangles / mesh.n_triangles for m in chain]
    assert got == pytest.approx([1.0, 0.25, 0.06, 0.015], rel=0.1), got


def test_lods_stay_on_the_surface(closed_chain):
    """Hausdorff-ish both ways. LOD -> surface: the true SDF at dense samples of each LOD (exact).
    Surface -> LOD: LOD0's vertices to the LOD's samples, less the same distance to LOD0's own
    samples (the sampling spacing), so missing features (a bump cut flat) show up."""
    mesh, chain = closed_chain
    diag = mesh.bbox_diagonal()
    baseline = np.percentile(cKDTree(surface_samples(mesh)).query(mesh.vertices)[0], 99)
    for lod, limit in zip(chain[1:], [0.003, 0.006, 0.012]):  # share of the bbox diagonal
        samples = surface_samples(lod)
        assert np.abs(bumpy_sdf(samples)).max() < limit * diag, lod.n_triangles
        missing = np.percentile(cKDTree(samples).query(mesh.vertices)[0], 99) - baseline
        assert missing < limit * diag, (lod.n_triangles, missing / diag)


def test_lods_have_unit_normals_and_no_uvs(closed_chain):
    _, chain = closed_chain
    for lod in chain[1:]:
        assert lod.uvs is None and lod.tangents is None
        assert lod.normals.shape == lod.vertices.shape
        np.testing.assert_allclose(np.linalg.norm(lod.normals, axis=1), 1.0, atol=1e-5)
        # outward: normals agree with the radial direction of this star-shaped surface
        assert ((lod.normals * lod.vertices).sum(1) > 0).mean() > 0.98
        assert len(np.unique(lod.faces)) == len(lod.vertices)  # no unreferenced vertices


def test_open_boundary_is_kept():
    mesh = open_cap()
    loop0 = boundary_edges(mesh.faces)
    chain = lod_chain(mesh)
    assert len(chain) >= 3
    for lod in chain[1:]:
        loop = boundary_edges(lod.faces)
        assert len(loop) > 0
        a, b = lod.vertices[loop[:, 0]], lod.vertices[loop[:, 1]]
        # every LOD0 boundary vertex lies on the LOD's boundary and vice versa
        assert point_segment_distance(mesh.vertices[np.unique(loop0)], a, b).max() < 1e-4
        a0, b0 = mesh.vertices[loop0[:, 0]], mesh.vertices[loop0[:, 1]]
        assert point_segment_distance(lod.vertices[np.unique(loop)], a0, b0).max() < 1e-4
    assert chain[1].n_triangles / mesh.n_triangles == pytest.approx(0.25, rel=0.1)


def test_seam_split_input_is_welded_before_decimation():
    """A mesh whose vertices were split (old UV seams) must not keep those seams frozen."""
    mesh = icosphere(4)
    f = mesh.faces
    split = Mesh(mesh.vertices[f.reshape(-1)], np.arange(3 * len(f)).reshape(-1, 3))  # every edge a "seam"
    chain = lod_chain(split, n_lods=2)
    assert len(chain) == 2
    assert len(boundary_edges(chain[1].faces)) == 0
    assert chain[1].n_triangles == pytest.approx(0.25 * len(f), rel=0.1)


def test_tiny_meshes_give_shorter_chains():
    tetra = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
                 np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    assert len(lod_chain(tetra)) == 1
    ico = icosphere(0)
    assert [m.n_triangles for m in lod_chain(ico)] == [20]
    small = icosphere(2)  # 320 triangles: 80 and 19 reachable, 5 is not
    chain = lod_chain(small)
    assert [m.n_triangles for m in chain][:2] == [320, pytest.approx(80, abs=4)]
    assert len(chain) == 3 and chain[2].n_triangles < 0.75 * chain[1].n_triangles
    assert len(lod_chain(bumpy_mesh(24), n_lods=1)) == 1


def test_bad_arguments():
    mesh = icosphere(1)
    with pytest.raises(ValueError):
        lod_chain(mesh, n_lods=0)
    with pytest.raises(ValueError):
        lod_chain(mesh, n_lods=5)  # only 4 default ratios
    with pytest.raises(ValueError):
        lod_chain(mesh, n_lods=2, ratios=(1.0, 1.5))


def test_texture_sizes_halve_down_to_a_floor():
    assert lod_texture_sizes(2048, 4) == [2048, 1024, 512, 256]
    assert lod_texture_sizes(1024, 4) == [1024, 512, 256, 256]
    assert lod_texture_sizes(128, 3) == [128, 128, 128]
    assert lod_texture_sizes(4096, 1) == [4096]


def test_screen_coverages_follow_triangle_density(closed_chain):
    _, chain = closed_chain
    cov = screen_coverages(chain)
    assert len(cov) == len(chain) and cov[-1] == 0.0
    assert all(a > b for a, b in zip(cov, cov[1:]))
    # the switch happens at the same on-screen triangle size for every level: c_i proportional to n_i
    per_triangle = [c / m.n_triangles for c, m in zip(cov[:-1], chain[:-1])]
    assert per_triangle == pytest.approx([per_triangle[0]] * len(per_triangle), rel=1e-6)
    pixels = 1920 * 1080 * 2 * cov[0] / chain[0].n_triangles
    assert pixels == pytest.approx(8.0)
    huge = [Mesh(np.zeros((3, 3), np.float32), np.zeros((n, 3), np.int64)) for n in (10**7, 10**6, 10**5)]
    cov = screen_coverages(huge)
    assert cov[0] == 1.0 and 0 < cov[1] < 1.0 and cov[2] == 0.0
    assert screen_coverages(chain[:1]) == [0.0]
