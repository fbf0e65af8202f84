"""Photo pixels as footprints (bake.footprint): a photo integrates the surface over each pixel, so
fitting the decoder's mean over a pixel's sub-samples must reproduce fine detail that fitting the
pixel centre blurs twice, and a mask's partial pixels must be compared premultiplied."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nrconvert.bake.footprint import pixel_colour, pixel_samples
from nrconvert.bake.neural import distill, view_samples
from nrconvert.bake.neural_chain import lod_samples
from nrconvert.bake.texture import interpolate
from nrconvert.capture.model import Frame
from nrconvert.config import Config
from nrconvert.mesh import Mesh
from nrconvert.metrics.image import psnr
from nrconvert.render.raster import rasterize_view

SIZE, FOCAL = 48, 56.0


def plane() -> Mesh:
    """A 2 x 2 square at z = 0 facing +z, its UVs spanning the atlas."""
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    return Mesh(v, np.array([[0, 1, 2], [0, 2, 3]], np.int64), np.tile([[0, 0, 1]], (4, 1)).astype(np.float32), uv)


def stripes(uv: np.ndarray) -> np.ndarray:
    """Sharp stripes about three pixels apart in the photos, with an edge across them."""
    a = (np.sin(2 * np.pi * 15 * uv[:, 0]) > 0).astype(np.float32)
    b = (uv[:, 1] > 0.5).astype(np.float32)
    return np.stack([0.2 + 0.6 * a, 0.3 + 0.4 * b, 0.7 - 0.5 * a * b], 1)


def camera(x: float, y: float, z: float, path) -> Frame:
    c2w = np.eye(4)
    c2w[:3, 3] = (x, y, z)  # looking down -z at the plane
    return Frame(path, c2w, FOCAL, FOCAL, SIZE / 2, SIZE / 2, SIZE, SIZE)


def photograph(mesh: Mesh, frame: Frame, s: int = 8) -> None:
    """The plane as a camera records it: each pixel the box-filtered mean of s x s sub-pixels, RGBA."""
    k = s
    fine = Frame(frame.image_path, frame.c2w, frame.fx * k, frame.fy * k, frame.cx * k, frame.cy * k,
                 SIZE * k, SIZE * k)
    frags = rasterize_view(fine, mesh.vertices, mesh.faces)
    hit = frags.tri >= 0
    rgb = np.zeros(hit.shape + (3,), np.float32)
    rgb[hit] = stripes(interpolate(mesh.uvs, mesh.faces, frags)[hit])
    pool = (SIZE, s, SIZE, s)
    alpha = hit.reshape(pool).mean((1, 3))
    rgb = rgb.reshape(pool + (3,)).mean((1, 3)) / np.maximum(alpha[..., None], 1e-6)
    rgba = np.concatenate([rgb, alpha[..., None]], -1)
    Image.fromarray(np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA").save(frame.image_path)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("footprint")
    mesh, rng = plane(), np.random.default_rng(3)
    frames = []
    for i in range(13):  # the last one is held out
        x, y = rng.uniform(-0.25, 0.25, 2)
        frames.append(camera(x, y, rng.uniform(2.3, 2.7), root / f"{i}.png"))
        photograph(mesh, frames[-1])
    return mesh, frames[:-1], frames[-1]


def test_pixel_samples_cover_each_pixel_and_premultiply(capture):
    mesh, frames, _ = capture
    px = pixel_samples(mesh, frames[0], np.eye(3), 1, "sh2", 2)
    centres = view_samples(mesh, frames[0], np.eye(3), 1, encoding="sh2")
    assert px.uv.shape[1:] == (4, 2) and px.hit.shape[1] == 4 and px.rgb.shape[1] == 3
    whole = px.hit.min(1) > 0
    assert 0.8 * len(centres.uv) < whole.sum() <= len(px.rgb)
    assert (px.hit.max(1) > 0).all()  # no pixel without the mesh in it
    # the sub-samples straddle the centre: their mean UV is where the centre lands
    mean_uv = px.uv[whole].mean(1)
    nearest = np.min(np.abs(mean_uv[:, None, 0] - np.unique(centres.uv[:, 0])[None]), 1)
    assert np.median(nearest) < 1e-3
    spread = px.uv[whole].max(1) - px.uv[whole].min(1)
    half_pixel_uv = 0.5 * frames[0].c2w[2, 3] / FOCAL * 0.5  # the plane is 2 wide, its UVs 1
    assert np.allclose(spread.mean(0), half_pixel_uv, rtol=0.1)
    # the targets are the photo's object pixels premultiplied by its alpha (the mesh is exact here)
    rgba = np.asarray(Image.open(frames[0].image_path), np.float32) / 255
    obj = rgba[..., 3] > 0.5
    expected = (rgba[..., :3] * rgba[..., 3:])[obj]
    assert len(px.rgb) == obj.sum()
    assert np.allclose(np.sort(px.rgb.sum(1)), np.sort(expected.sum(1)), atol=1e-5)
    assert (~whole).any() and (rgba[..., 3][obj] < 0.99).any()  # partly covered pixels are among them


def test_footprints_keep_the_detail_pixel_centres_blur(capture):
    """Same features, same decoder, same steps: only what a photo pixel is compared with differs.
    Held out and anti-aliased (4 x 4 sub-samples), the footprint fit must win clearly."""
    mesh, frames, held_out = capture
    target = pixel_samples(mesh, held_out, np.eye(3), 1, "sh2", 4)
    scores = {}
    for foot in (1, 2):
        cfg = Config(neural_encoding="sh2", neural_environment=0, neural_footprint=foot)
        samples, pixels = lod_samples(mesh, frames, [], np.eye(3), cfg)
        dec = distill(samples, 128, 800, pixels=pixels, encoding="sh2", hidden=(16,), batch=4096, tv=1e-3,
                      seed=0).decoder.eval()
        with torch.no_grad():
            pred = pixel_colour(dec, *(torch.from_numpy(a) for a in (target.uv, target.view, target.hit))).numpy()
        scores[foot] = psnr(pred, target.rgb)
    assert scores[2] > scores[1] + 2.0, scores
    assert scores[2] > 30.0, scores
