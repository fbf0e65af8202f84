"""AO from shadow maps: open planes, a wall's contact shadow (ray-cast and analytic references),
and coarse LODs read off the high surface."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import marching_cubes

from nrconvert.bake.ao import bake_ao, bake_ao_chain, sphere_directions
from nrconvert.bake.surface import sphere
from nrconvert.bake.texture import interpolate, texel_fragments
from nrconvert.bake.uv import unwrap
from nrconvert.mesh import Mesh, vertex_normals

from .test_lod import icosphere

HALF = 2.0  # the ground plane spans [-2, 2]^2
WALL = dict(lo=(0.5, -6.0, 0.0), hi=(0.7, 6.0, 1.0))  # long enough to pass for infinite near x < 0.5


def plane(n: int = 16) -> Mesh:
    """Ground plane at z = 0 with planar UVs: texel (i, j) sits at x = 4 (j + .5) / size - 2,
    y = 2 - 4 (i + .5) / size."""
    g = np.linspace(-HALF, HALF, n + 1)
    x, y = np.meshgrid(g, g)
    v = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1).astype(np.float32)
    idx = np.arange(len(v)).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)
    uvs = np.stack([(v[:, 0] + HALF) / (2 * HALF), (HALF - v[:, 1]) / (2 * HALF)], 1).astype(np.float32)
    return Mesh(v, f, np.tile(np.float32([0, 0, 1]), (len(v), 1)), uvs)


def box(lo, hi) -> Mesh:
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    corners = np.array([[(hi if (k >> a) & 1 else lo)[a] for a in range(3)] for k in range(8)], np.float32)
    f = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
                  [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])
    return Mesh(corners, f)


def merge(*meshes: Mesh) -> Mesh:
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(np.concatenate([m.vertices for m in meshes]), np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]))


def ray_cast_ao(points: np.ndarray, normal: np.ndarray, occluder: Mesh, dirs: np.ndarray) -> np.ndarray:
    """Reference: exact ray-triangle tests (Moller-Trumbore), same directions and cosine weights."""
    tri = occluder.vertices[occluder.faces].astype(np.float64)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    out = []
    for p in points.astype(np.float64):
        lit = total = 0.0
        for d in dirs:
            cos = float(d @ normal)
            if cos <= 1e-3:
                continue
            h = np.cross(d, e2)
            a = (e1 * h).sum(1)
            s = p + 1e-6 * normal - tri[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                u = (s * h).sum(1) / a
                q = np.cross(s, e1)
                v = (q @ d) / a
                t = (e2 * q).sum(1) / a
            hit = (np.abs(a) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
            lit += cos * (not hit.any())
            total += cos
        out.append(lit / total)
    return np.array(out)


def texel_x(j: np.ndarray, size: int) -> np.ndarray:
    return 2 * HALF * (j + 0.5) / size - HALF


def test_directions_cover_the_sphere_evenly():
    d = sphere_directions(256)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    assert np.abs(d.mean(0)).max() < 0.01
    up = d[:, 2] > 0
    assert up.sum() == 128  # each hemisphere gets half


def test_open_plane_is_unoccluded():
    ground = plane()
    ao = bake_ao(ground, 64, ground, directions=64)
    assert ao.shape == (64, 64) and ao.dtype == np.float32
    assert ao.min() > 0.999


@pytest.fixture(scope="module")
def wall_scene() -> tuple[Mesh, Mesh]:
    ground = plane()
    return ground, merge(ground, box(**WALL))


def test_wall_matches_ray_casting(wall_scene):
    ground, occluder = wall_scene
    size, dirs = 128, 64
    ao = bake_ao(ground, size, occluder, directions=dirs, map_size=1024)
    row = size // 2 + 7  # y = -0.47: away from the wall's ends
    cols = np.array([0, 20, 40, 52, 58, 61, 62, 70, 80, 110])  # x from -1.98 to 1.45; the wall spans 0.5-0.7
    x = texel_x(cols, size)
    y = HALF - 2 * HALF * (row + 0.5) / size
    points = np.stack([x, np.full_like(x, y), np.zeros_like(x)], 1)
    ref = ray_cast_ao(points, np.array([0.0, 0.0, 1.0]), box(**WALL), sphere_directions(dirs))
    got = ao[row, cols]
    # A direction grazing the wall's top edge within a map pixel may flip (here one of 32 at
    # x = 1.45, weight 0.05); the mean shows the maps otherwise agree with the rays.
    assert np.abs(got - ref).max() < 0.06 and np.abs(got - ref).mean() < 0.015, np.stack([x, got, ref])
    assert ref.min() < 0.6 and ref.max() > 0.9  # the scene does span open and occluded texels
    under = (x > 0.5) & (x < 0.7)
    assert (got[under] < 0.05).all()  # under the wall: buried


def test_wall_contact_shadow_matches_analytic(wall_scene):
    """Infinite wall of height h at distance s: visible cosine-weighted share (1 + s / sqrt(s^2 + h^2)) / 2."""
    ground, occluder = wall_scene
    size = 128
    ao = bake_ao(ground, size, occluder, directions=128, map_size=1024)
    row = size // 2
    cols = np.arange(30, 60)
    s = 0.5 - texel_x(cols, size)
    analytic = (1 + s / np.sqrt(s * s + 1.0)) / 2
    got = ao[row, cols]
    assert np.abs(got - analytic).max() < 0.03, np.abs(got - analytic).max()
    assert (np.diff(got) < 0.01).all()  # darker towards the wall


@pytest.fixture(scope="module")
def coarse_sphere() -> Mesh:
    mesh = icosphere(2)  # chords sag up to ~1 % inside the unit sphere
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    return unwrap(mesh, 128)


def test_coarse_lod_reads_the_high_surface(coarse_sphere):
    """A convex object has no occlusion. Baked against its own fine LOD0, the coarse LOD's texels
    lie inside LOD0 (occluded) unless they are first moved onto the high surface."""
    lod0 = icosphere(4)  # sags 0.3 % under the sphere, the coarse LOD ~1 %; map pixel 0.4 %
    with_surface = bake_ao(coarse_sphere, 128, lod0, surface=sphere(), map_size=512)
    without = bake_ao(coarse_sphere, 128, lod0, map_size=512)
    assert with_surface.min() > 0.97
    assert without.mean() < 0.7


def test_padding_fills_empty_texels(coarse_sphere):
    occluder = merge(icosphere(4), box((-0.3, -0.3, -3.0), (0.3, 0.3, -0.9)))  # a pillar touching the pole
    ao = bake_ao(coarse_sphere, 64, occluder, surface=sphere())
    assert np.isfinite(ao).all() and 0.0 <= ao.min() and ao.max() <= 1.0
    assert ao.min() < 0.8  # the pillar's contact darkens the south pole


def test_curved_self_occlusion_matches_ray_casting():
    """Deep lobes on a sphere, the mesh shadowing itself: no acne on convex parts, real
    occlusion in the folds, texel by texel against exact rays."""
    res = 40
    g = (np.arange(res) + 0.5) / res * 2.4 - 1.2
    p = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1)
    f = np.linalg.norm(p, axis=-1) - 0.7 - 0.35 * np.sin(5 * p).prod(-1)
    v, faces, _, _ = marching_cubes(f, 0.0)
    mesh = Mesh(((v + 0.5) / res * 2.4 - 1.2).astype(np.float32), faces.astype(np.int64))
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    mesh = unwrap(mesh, 256)
    ao = bake_ao(mesh, 256, mesh, directions=64)
    frags = texel_fragments(mesh, 256)
    hit = np.flatnonzero(frags.tri.ravel() >= 0)
    darkest = hit[np.argsort(ao.ravel()[hit])[:20]]  # where acne would show, if there were any
    pick = np.concatenate([darkest, np.random.default_rng(1).choice(hit, 20, replace=False)])
    pos = interpolate(mesh.vertices, mesh.faces, frags).reshape(-1, 3)[pick]
    nrm = interpolate(mesh.normals, mesh.faces, frags).reshape(-1, 3)[pick]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    ref = np.array([ray_cast_ao(p[None], n, mesh, sphere_directions(64))[0] for p, n in zip(pos, nrm)])
    got = ao.ravel()[pick]
    assert ref.min() < 0.8 and ref.max() > 0.98, ref  # folds and open parts both sampled
    assert np.abs(got - ref).mean() < 0.02 and np.abs(got - ref).max() < 0.1, np.stack([got, ref])


def test_chain_in_one_pass_matches_each_lod_alone(coarse_sphere):
    """bake_ao_chain draws each shadow map once for every LOD: same maps as one LOD at a time."""
    occluder = merge(icosphere(4), box((-0.3, -0.3, -3.0), (0.3, 0.3, -0.9)))
    fine = unwrap(icosphere(3), 128)
    fine.normals = vertex_normals(fine.vertices, fine.faces)
    together = bake_ao_chain([fine, coarse_sphere], [128, 64], occluder, surface=sphere(), map_size=512)
    alone = [bake_ao(m, s, occluder, surface=sphere(), map_size=512) for m, s in ((fine, 128), (coarse_sphere, 64))]
    assert [a.shape for a in together] == [(128, 128), (64, 64)]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert together[0].min() < 0.8  # the pillar shadows the fine LOD too
