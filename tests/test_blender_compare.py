"""How a Blender render is compared with a held-out photo (`metrics.blender.compare_images`)."""
from __future__ import annotations

import numpy as np

from nrconvert.metrics.blender import compare_images


def _scene(seed: int = 0):
    """A disc of object colour over a textured background, with a soft (anti-aliased) edge."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64]
    alpha = np.clip(20.5 - np.hypot(x - 32, y - 32), 0, 1).astype(np.float32)
    obj = np.broadcast_to(np.float32([0.8, 0.3, 0.2]), (64, 64, 3))
    bg = rng.uniform(0, 1, (64, 64, 3)).astype(np.float32)
    return obj, bg, alpha


def test_an_opaque_render_of_the_right_object_matches_its_opaque_photo() -> None:
    obj, bg, alpha = _scene()
    photo = obj * alpha[..., None] + bg * (1 - alpha[..., None])
    assert ((alpha > 0.5) & (alpha < 1)).any()  # silhouette pixels that blend the two
    same = compare_images(photo.copy(), None, photo, alpha)
    assert same["psnr_object"] > 60
    wrong = compare_images(np.clip(photo + 0.05, 0, 1), None, photo, alpha)
    assert 24 < wrong["psnr_object"] < 28


def test_a_transparent_render_is_compared_premultiplied() -> None:
    obj, _, alpha = _scene()
    exact = compare_images(obj.copy(), alpha, obj, alpha)
    assert exact["psnr_object"] > 60
    shrunk = np.where(alpha >= 1, alpha, 0).astype(np.float32)  # the mesh misses the silhouette
    assert compare_images(obj.copy(), shrunk, obj, alpha)["psnr_object"] < exact["psnr_object"] - 20
