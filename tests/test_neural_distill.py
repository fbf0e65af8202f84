"""Distillation: on a surface whose colour depends on the view (a highlight), the neural material
must beat the best view-independent texture on held-out views, and its exported, quantised form
must decode to what was trained."""
from __future__ import annotations

import numpy as np
import pytest

from nrconvert.bake.neural import ViewSamples, between_cameras, distill, feature_size, observed_texels
from nrconvert.bake.uv import unwrap
from nrconvert.capture.model import Frame
from nrconvert.export.neural import decode
from nrconvert.mesh import vertex_normals
from tests.test_lod import icosphere

from .kernel_utils import devices

LIGHT = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])


def shade(pos: np.ndarray, nrm: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Striped albedo plus a sharp highlight that moves with the view (sRGB-ish, in [0, 1])."""
    albedo = 0.25 + 0.2 * np.stack([np.sin(6 * pos[:, 0]) + 1, np.cos(5 * pos[:, 1]) + 1, np.ones(len(pos))], 1)
    refl = view - 2 * (view * nrm).sum(1, keepdims=True) * nrm
    spec = np.clip((refl * LIGHT).sum(1), 0, 1) ** 24
    return np.clip(albedo + 0.5 * spec[:, None], 0, 1)


def surface_samples(mesh, n: int, rng) -> ViewSamples:
    face = rng.integers(0, len(mesh.faces), n)
    b = rng.dirichlet(np.ones(3), n)
    tri = mesh.faces[face]
    pos = (mesh.vertices[tri] * b[..., None]).sum(1)
    nrm = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    uv = (mesh.uvs[tri] * b[..., None]).sum(1)
    view = rng.normal(size=(n, 3))
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    view *= -np.sign((view * nrm).sum(1, keepdims=True))  # camera -> surface: against the normal
    return ViewSamples(uv.astype(np.float32), view.astype(np.float32), shade(pos, nrm, view).astype(np.float32))


@pytest.fixture(scope="module")
def sphere():
    mesh = icosphere(4)
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    return unwrap(mesh, 256)


@devices
def test_neural_material_beats_a_texture_on_held_out_views(sphere, device):
    """On the CPU and, where there is one, on the GPU (the pipeline distils on the field's
    device); the decoder comes back on the CPU either way."""
    rng = np.random.default_rng(0)
    train, test = surface_samples(sphere, 200_000, rng), surface_samples(sphere, 20_000, rng)
    size = 64
    result = distill(train, size, steps=2000, batch=8192, seed=0, device=device)
    assert {p.device.type for p in result.decoder.parameters()} == {"cpu"}
    mat = result.material
    pred = decode(mat, test.uv, test.view)
    err_neural = np.mean((pred - test.rgb) ** 2)
    # the best view-independent texture at the same resolution: each texel's mean training colour
    ix = np.clip((train.uv * size).astype(int), 0, size - 1)
    flat = ix[:, 1] * size + ix[:, 0]
    count = np.bincount(flat, minlength=size * size)[:, None]
    mean = np.stack([np.bincount(flat, train.rgb[:, c], size * size) for c in range(3)], 1) / np.maximum(count, 1)
    jx = np.clip((test.uv * size).astype(int), 0, size - 1)
    err_texture = np.mean((mean[jx[:, 1] * size + jx[:, 0]] - test.rgb) ** 2)
    gain_db = 10 * np.log10(err_texture / err_neural)
    assert gain_db > 2.0, (err_texture, err_neural)
    assert 10 * np.log10(1 / err_neural) > 30.0


def test_unseen_texels_take_their_neighbours_features(sphere):
    rng = np.random.default_rng(1)
    samples = surface_samples(sphere, 50_000, rng)
    keep = samples.uv[:, 0] < 0.5  # the right half of the atlas is never observed
    part = ViewSamples(samples.uv[keep], samples.view[keep], samples.rgb[keep])
    mat = distill(part, 32, steps=50, batch=4096).material
    seen = observed_texels(part.uv, 32)
    assert not seen[:, 20:].any()
    # every unseen texel copies some observed texel's features (nearest-texel padding)
    observed = {tuple(v) for v in mat.features[seen]}
    assert all(tuple(v) in observed for v in mat.features[~seen][:200])


def test_feature_size_follows_the_observations():
    assert feature_size(16_000_000, 0.5, 1024) == 1024  # 1333 texels a side: 1024 fits, 2048 not
    assert feature_size(4_000_000, 0.5, 1024) == 512
    assert feature_size(800_000, 0.5, 1024) == 256
    assert feature_size(700_000, 0.5, 1024) == 128
    assert feature_size(10, 0.5, 1024) == 32
    assert feature_size(4_000_000, 0.5, 256) == 256


def test_cameras_between_photos_look_at_the_object():
    frames = []
    for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        c = np.array([4 * np.cos(a), 4 * np.sin(a), 1.0])
        back = c / np.linalg.norm(c)
        right = np.cross([0, 0, 1.0], back); right /= np.linalg.norm(right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, c
        frames.append(Frame(None, c2w, 100, 100, 50, 50, 100, 100))
    extra = between_cameras(frames, 8, seed=0)
    assert len(extra) == 8
    for f in extra:
        r = f.c2w[:3, :3]
        assert np.allclose(r.T @ r, np.eye(3), atol=1e-9)
        forward = -r[:, 2]
        to_origin = -f.c2w[:3, 3] / np.linalg.norm(f.c2w[:3, 3])
        assert forward @ to_origin > 0.99  # still aimed at the object
        assert 3.5 < np.linalg.norm(f.c2w[:3, 3]) < 4.2  # between two cameras on the ring


def test_distill_builds_the_widths_it_is_given_and_the_reference_decodes_them():
    """`hidden` reaches the exported layers, and the file's decoder reproduces the trained one."""
    rng = np.random.default_rng(3)
    n = 4000
    view = rng.normal(size=(n, 3))
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    samples = ViewSamples(rng.random((n, 2), dtype=np.float32), view.astype(np.float32),
                          rng.random((n, 3), dtype=np.float32))
    out = distill(samples, 16, 30, batch=1024, hidden=(10, 6))
    assert [layer.weights.shape for layer in out.material.layers] == [(10, 17), (6, 10), (3, 6)]
    import torch
    with torch.no_grad():
        trained = out.decoder(torch.from_numpy(samples.uv[:50]), torch.from_numpy(samples.view[:50])).numpy()
    np.testing.assert_allclose(decode(out.material, samples.uv[:50], samples.view[:50]), trained, atol=1e-4)
