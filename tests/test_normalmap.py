"""Normal-map baking against analytic surfaces, decoded the way a glTF viewer decodes it."""
from __future__ import annotations

import numpy as np
import pytest

from nrconvert.bake.normalmap import bake_normal_map, decode
from nrconvert.bake.surface import Surface, project, sphere
from nrconvert.bake.tangents import tangent_frames
from nrconvert.bake.texture import interpolate, texel_fragments
from nrconvert.bake.uv import unwrap
from nrconvert.mesh import Mesh, vertex_normals

from .test_lod import icosphere


def plane_surface(normal) -> Surface:
    n = np.asarray(normal, np.float32) / np.linalg.norm(normal)
    return Surface(lambda p: (p @ n).astype(np.float32), lambda p: np.tile(n, (len(p), 1)))


def bumpy_sphere(amplitude: float = 0.03, k: float = 8.0) -> Surface:
    """r = 1 + a sin(kx) sin(ky) sin(kz), with its exact normalised gradient."""
    def sdf(p):
        s = np.sin(k * p)
        return (np.linalg.norm(p, axis=1) - 1 - amplitude * s.prod(1)).astype(np.float32)

    def normal(p):
        s, c = np.sin(k * p), np.cos(k * p)
        grad = np.stack([c[:, 0] * s[:, 1] * s[:, 2], s[:, 0] * c[:, 1] * s[:, 2], s[:, 0] * s[:, 1] * c[:, 2]], 1)
        g = p / np.linalg.norm(p, axis=1, keepdims=True) - amplitude * k * grad
        return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)

    return Surface(sdf, normal)


def grid_plane(n: int = 8, mirror_u: bool = False) -> Mesh:
    """[-1, 1]^2 at z = 0, UVs u along +x (or -x), v = (1 - y) / 2 so image-up is +y."""
    g = np.linspace(-1, 1, n + 1)
    x, y = np.meshgrid(g, g)
    v = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1).astype(np.float32)
    idx = np.arange(v.shape[0]).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)
    u = (1 - v[:, 0]) / 2 if mirror_u else (v[:, 0] + 1) / 2
    uvs = np.stack([u, (1 - v[:, 1]) / 2], 1).astype(np.float32)
    return Mesh(v, f, np.tile(np.float32([0, 0, 1]), (len(v), 1)), uvs)


def decoded_world_normals(mesh: Mesh, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World normals (P, 3) a shader reconstructs at the covered texels, and those texels' points."""
    frags = texel_fragments(mesh, rgb.shape[0])
    hit = frags.tri >= 0
    pos, nrm, tan = (interpolate(a, mesh.faces, frags)[hit] for a in (mesh.vertices, mesh.normals, mesh.tangents))
    t, b, n = tangent_frames(nrm, tan)
    v = decode(rgb[hit])
    world = v[:, :1] * t + v[:, 1:2] * b + v[:, 2:3] * n
    return world / np.linalg.norm(world, axis=1, keepdims=True), pos


def angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(1), -1, 1)))


@pytest.mark.parametrize("mirror_u", [False, True])
def test_plane_tilt_follows_gltf_axes(mirror_u):
    """+X = +u (mirrored UVs flip it), +Y = image-up: the convention glTF viewers decode with."""
    mesh = grid_plane(mirror_u=mirror_u)  # the tilted planes lie up to 0.3 away: allow that move
    rgb, covered = bake_normal_map(mesh, 64, plane_surface([0.0, 0.3, 1.0]), max_distance=0.2)
    assert covered.all()
    px = rgb.reshape(-1, 3).astype(int)
    expect_g = round((0.5 * 0.3 / np.hypot(0.3, 1) + 0.5) * 255)
    assert np.abs(px[:, 0] - 128).max() <= 1 and np.abs(px[:, 1] - expect_g).max() <= 1
    rgb, _ = bake_normal_map(grid_plane(mirror_u=mirror_u), 64, plane_surface([0.3, 0.0, 1.0]), max_distance=0.2)
    red = rgb[..., 0].astype(int)
    assert (red < 100).all() if mirror_u else (red > 156).all()
    assert np.abs(rgb[..., 1].astype(int) - 128).max() <= 1


@pytest.fixture(scope="module")
def coarse_sphere() -> Mesh:
    mesh = icosphere(2)  # 320 triangles: chords up to ~4 deg off the sphere
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    return unwrap(mesh, 256)


def test_coarse_sphere_against_analytic_sphere(coarse_sphere):
    mesh = Mesh(coarse_sphere.vertices, coarse_sphere.faces, coarse_sphere.normals.copy(), coarse_sphere.uvs)
    rgb, covered = bake_normal_map(mesh, 256, sphere())
    assert mesh.tangents is not None  # filled in place: the exporter must write this frame
    world, pos = decoded_world_normals(mesh, rgb)
    err = angles_deg(world, pos / np.linalg.norm(pos, axis=1, keepdims=True))
    assert np.percentile(err, 99) < 1.5 and err.max() < 3.0, (np.percentile(err, 99), err.max())
    assert covered.sum() == len(pos) and covered.mean() > 0.3


def test_map_corrects_wrong_vertex_normals(coarse_sphere):
    """Vertex normals tilted 12 deg: only a map expressed in the right frame brings them back,
    so x/y signs and the bitangent's handedness are all exercised."""
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    a = np.radians(12.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    mesh = Mesh(coarse_sphere.vertices, coarse_sphere.faces, (coarse_sphere.normals @ rot.T).astype(np.float32),
                coarse_sphere.uvs)
    rgb, _ = bake_normal_map(mesh, 256, sphere())
    world, pos = decoded_world_normals(mesh, rgb)
    truth = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    err = angles_deg(world, truth)
    assert np.percentile(err, 99) < 1.5, np.percentile(err, 99)
    frags = texel_fragments(mesh, 256)
    interpolated = interpolate(mesh.normals, mesh.faces, frags)[frags.tri >= 0]
    wrong = angles_deg(interpolated / np.linalg.norm(interpolated, axis=1, keepdims=True), truth)
    tilt = angles_deg(decode(rgb[frags.tri >= 0]), np.float32([[0, 0, 1]]))
    assert np.median(wrong) > 6.0 and np.percentile(np.abs(tilt - wrong), 99) < 1.5


def test_bumpy_surface_gives_detail(coarse_sphere):
    mesh = Mesh(coarse_sphere.vertices, coarse_sphere.faces, coarse_sphere.normals.copy(), coarse_sphere.uvs)
    surface = bumpy_sphere()
    rgb, covered = bake_normal_map(mesh, 256, surface)
    world, pos = decoded_world_normals(mesh, rgb)
    _, truth = project(surface, pos)
    err = angles_deg(world, truth)
    assert np.percentile(err, 99) < 2.0, np.percentile(err, 99)
    tilt = angles_deg(decode(rgb[covered]), np.float32([[0, 0, 1]]))
    assert (tilt > 5.0).mean() > 0.3  # bumps of slope up to ~13 deg show in the map


def test_guard_falls_back_to_the_mesh_normal(coarse_sphere):
    """Texels whose projection moved too far, or whose surface normal faces away, keep the mesh
    normal (0, 0, 1); the others get the shifted sphere's (different) normals."""
    flat = np.array([128, 128, 255])
    mesh = Mesh(coarse_sphere.vertices, coarse_sphere.faces, coarse_sphere.normals.copy(), coarse_sphere.uvs)
    shifted = sphere(centre=(0.25, 0.0, 0.0))
    rgb, covered = bake_normal_map(mesh, 128, shifted)  # limit: 3 % of the 3.46 diagonal = 0.104
    frags = texel_fragments(mesh, 128)
    pos = interpolate(mesh.vertices, mesh.faces, frags)[covered]
    moved = np.linalg.norm(project(shifted, pos)[0] - pos, axis=1)
    is_flat = (np.abs(rgb[covered].astype(int) - flat) <= 1).all(1)
    assert is_flat[moved > 0.106].all() and (moved > 0.106).mean() > 0.3
    assert (~is_flat[moved < 0.1]).mean() > 0.9  # the normals differ by ~5-15 deg there
    inside_out = Surface(lambda p: -sphere().sdf(p), lambda p: -sphere().normal(p))
    rgb, covered = bake_normal_map(mesh, 64, inside_out)
    assert (np.abs(rgb[covered].astype(int) - flat) <= 1).all()


def test_empty_texels_copy_their_nearest_covered_texel(coarse_sphere):
    mesh = Mesh(coarse_sphere.vertices, coarse_sphere.faces, coarse_sphere.normals.copy(), coarse_sphere.uvs)
    rgb, covered = bake_normal_map(mesh, 128, bumpy_sphere())
    assert 0.2 < covered.mean() < 1.0
    assert (rgb[..., 2] > 128).all()  # no black or default-zero texel anywhere
    inside = {tuple(c) for c in rgb[covered]}
    assert all(tuple(c) in inside for c in rgb[~covered])
    # chart borders: every empty texel next to a covered one took a covered neighbour's exact value
    shifted = np.roll(covered, 1, axis=1) & ~covered
    left = np.roll(rgb, 1, axis=1)
    assert (rgb[shifted] == left[shifted]).all(1).mean() > 0.5


def test_needs_uvs():
    with pytest.raises(ValueError):
        bake_normal_map(icosphere(1), 32, sphere())
