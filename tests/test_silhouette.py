"""The silhouette fit (bake.silhouette): a mesh a fraction of a pixel inside the photographed
object must be moved out by that much, one that matches must stay, and photos without masks must
leave the mesh alone."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nrconvert.bake.silhouette import fit_silhouette, offset_mesh
from nrconvert.capture.model import Frame
from nrconvert.mesh import Mesh, vertex_normals
from nrconvert.render.raster import rasterize_view, supersampled

SIZE, FOCAL, DIST = 64, 80.0, 4.0


def sphere(radius: float, n: int = 48) -> Mesh:
    """A UV sphere, outward-wound, welded at the poles."""
    theta = np.linspace(0, np.pi, n + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]) * radius
    rows, cols = n - 1, 2 * n
    idx = lambda r, c: 1 + r * cols + c % cols  # noqa: E731
    faces = [(0, idx(0, c), idx(0, c + 1)) for c in range(cols)]
    for r in range(rows - 1):
        for c in range(cols):
            faces += [(idx(r, c), idx(r + 1, c), idx(r + 1, c + 1)), (idx(r, c), idx(r + 1, c + 1), idx(r, c + 1))]
    last = len(v) - 1
    faces += [(idx(rows - 1, c), last, idx(rows - 1, c + 1)) for c in range(cols)]
    f = np.array(faces, np.int64)
    mesh = Mesh(v.astype(np.float32), f)
    if (vertex_normals(mesh.vertices, f) * mesh.vertices).sum() < 0:
        mesh = Mesh(mesh.vertices, f[:, ::-1].copy())
    return mesh


def cameras(tmp_path, n: int = 6) -> list[Frame]:
    out = []
    for k in range(n):
        a = 2 * np.pi * k / n
        back = np.array([np.cos(a), np.sin(a), 0.4])
        back /= np.linalg.norm(back)
        right = np.cross([0, 0, 1], back)
        right /= np.linalg.norm(right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, back * DIST
        out.append(Frame(tmp_path / f"{k}.png", c2w, FOCAL, FOCAL, SIZE / 2, SIZE / 2, SIZE, SIZE))
    return out


def photograph(mesh: Mesh, frame: Frame, alpha: bool = True, s: int = 8) -> None:
    """Grey object, its alpha the box-filtered coverage of s x s sub-pixels."""
    tri = rasterize_view(supersampled(frame, s), mesh.vertices.astype(np.float64), mesh.faces).tri
    cover = (tri >= 0).reshape(SIZE, s, SIZE, s).mean((1, 3))
    grey = np.full((SIZE, SIZE, 3), 0.6)
    img = np.concatenate([grey, cover[..., None]], -1) if alpha else grey * cover[..., None]
    Image.fromarray(np.round(img * 255).astype(np.uint8), "RGBA" if alpha else "RGB").save(frame.image_path)


@pytest.mark.parametrize("true_radius", [1.0, 1.003])
def test_fit_recovers_a_sub_pixel_offset(tmp_path, true_radius):
    frames = cameras(tmp_path)
    for f in frames:
        photograph(sphere(true_radius, 96), f)
    mesh = sphere(1.0)
    fit = fit_silhouette(mesh, frames, samples=4)
    assert fit is not None and fit.views == len(frames)
    # a pixel is ~0.05 units at this distance: 0.003 is 6 % of one, the tolerance 2.4 % (the
    # coarse mesh's chords also sit ~0.0005 inside the finer one that was photographed)
    assert fit.offset == pytest.approx(true_radius - 1.0, abs=1.2e-3)
    assert fit.error_after <= fit.error_before
    moved = offset_mesh(mesh, fit.offset)
    r = np.linalg.norm(moved.vertices, axis=1)
    assert np.allclose(r, 1.0 + fit.offset, atol=1e-5)


def test_a_larger_bias_is_found_in_both_directions(tmp_path):
    frames = cameras(tmp_path)
    for f in frames:
        photograph(sphere(1.0, 96), f)
    out = fit_silhouette(sphere(0.995), frames)
    inside = fit_silhouette(sphere(1.005), frames)
    assert out.offset == pytest.approx(0.005, abs=1.5e-3) and inside.offset == pytest.approx(-0.005, abs=1.5e-3)


def test_no_masks_no_fit(tmp_path):
    frames = cameras(tmp_path, 3)
    for f in frames:
        photograph(sphere(1.0, 96), f, alpha=False)
    assert fit_silhouette(sphere(0.99), frames) is None
    for f in frames:  # RGBA photos whose alpha is opaque everywhere carry no outline either
        Image.open(f.image_path).convert("RGBA").save(f.image_path)
    assert fit_silhouette(sphere(0.99), frames) is None
