"""A wide test scene without Blender: a row of six textured spheres and boxes, cameras on a path.

The block tests need a capture that is long in one direction (a street), fast to make and free of
bpy, so they run where `nrconvert synth` cannot. Ray-cast analytically with numpy (Lambert under a
fixed sun plus ambient, 2x2 supersampled so edges carry fractional alpha) and written as a
NeRF-synthetic folder (RGBA PNGs, transforms_{train,test}.json), it goes through the same loader
as every other capture. The cameras circle the row on a long ellipse and look at the nearest part
of it, so each object is seen from several sides and no view sees the whole row.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from .capture_fixtures import look_at

SPACING = 2.0
N_OBJECTS = 6
CENTRES = np.array([[(i - (N_OBJECTS - 1) / 2) * SPACING, 0.0, 0.6] for i in range(N_OBJECTS)])
HUES = np.array([[0.85, 0.3, 0.25], [0.3, 0.7, 0.35], [0.25, 0.4, 0.85],
                 [0.85, 0.75, 0.3], [0.7, 0.35, 0.8], [0.3, 0.75, 0.8]])
RADIUS = 0.6  # spheres (even indices)
HALF = 0.5  # boxes (odd indices): half side
SUN = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])
ANGLE_X = 2.0 * math.atan(18.0 / 40.0)


def _sphere(o, d, c):
    oc = o - c
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - RADIUS ** 2)
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > 1e-4), t, np.inf)
    p = o + t[:, None] * d
    return t, (p - c) / RADIUS


def _box(o, d, c):
    inv = 1.0 / np.where(np.abs(d) < 1e-9, 1e-9, d)
    t0, t1 = (c - HALF - o) * inv, (c + HALF - o) * inv
    near, far = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
    t = np.where((near < far) & (near > 1e-4), near, np.inf)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    q = (p - c) / HALF
    n = np.zeros_like(q)
    axis = np.abs(q).argmax(-1)
    n[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
    return t, n


def _albedo(p: np.ndarray, k: int) -> np.ndarray:
    """Each object's hue, modulated by a smooth pattern in world space (detail to measure)."""
    s = 0.5 + 0.3 * np.sin(9 * p[:, 0] + 3 * k) * np.sin(8 * p[:, 2] + 6 * p[:, 1])
    return HUES[k][None] * (0.45 + 0.55 * s[:, None])


def _rays(c2w: np.ndarray, width: int, height: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    fx = 0.5 * width / math.tan(ANGLE_X / 2)
    i, j = np.meshgrid((np.arange(width * ss) + 0.5) / ss, (np.arange(height * ss) + 0.5) / ss, indexing="xy")
    dirs = np.stack([(i - width / 2) / fx, -(j - height / 2) / fx, -np.ones_like(i)], -1).reshape(-1, 3)
    d = dirs @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], d.shape), d


def _first_hits(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per ray: distance to the nearest object (inf: none), its index (-1) and normal."""
    best = np.full(len(d), np.inf)
    which = np.full(len(d), -1)
    normal = np.zeros((len(d), 3))
    for k, c in enumerate(CENTRES):
        t, n = (_sphere if k % 2 == 0 else _box)(o, d, c)
        closer = t < best
        best, which[closer], normal[closer] = np.where(closer, t, best), k, n[closer]
    return best, which, normal


def render(c2w: np.ndarray, width: int, height: int, ss: int = 2) -> np.ndarray:
    """RGBA uint8 image of the scene from an OpenGL camera-to-world pose."""
    o, d = _rays(c2w, width, height, ss)
    t, which, n = _first_hits(o, d)
    rgb = np.zeros((len(d), 3))
    for k in range(N_OBJECTS):
        m = which == k
        p = o[m] + t[m, None] * d[m]
        rgb[m] = _albedo(p, k) * (0.35 + 0.65 * np.clip((n[m] * SUN).sum(-1), 0, 1))[:, None]
    alpha = np.isfinite(t).astype(np.float64)
    rgba = np.concatenate([rgb, alpha[:, None]], -1).reshape(height, ss, width, ss, 4).mean((1, 3))
    rgba[..., :3] /= np.maximum(rgba[..., 3:], 1e-6)  # straight (not premultiplied) alpha
    return (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)


def object_ids(c2w: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) index of the object each pixel centre sees (-1: none): ground truth for tests."""
    return _first_hits(*_rays(c2w, width, height, 1))[1].reshape(height, width)


def path_poses(n: int, phase: float = 0.0) -> list[np.ndarray]:
    """n cameras on an ellipse around the row, each looking at the nearest part of it."""
    half = (N_OBJECTS - 1) / 2 * SPACING
    out = []
    for k in range(n):
        a = 2 * math.pi * (k + phase) / n
        eye = np.array([(half + 3.5) * math.cos(a), 4.5 * math.sin(a), 1.3 + 0.9 * (k % 2)])
        target = np.array([np.clip(eye[0] * 0.8, -half, half), 0.0, 0.5])
        out.append(look_at(eye, target))
    return out


def write_street(root: Path, n_train: int = 48, n_test: int = 6, size: tuple[int, int] = (96, 72)) -> Path:
    """Write the capture into `root` (created) and return it."""
    root = Path(root)
    for split, poses in (("train", path_poses(n_train)), ("test", path_poses(n_test, phase=0.37))):
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for k, c2w in enumerate(poses):
            Image.fromarray(render(c2w, *size), "RGBA").save(root / split / f"r_{k:03d}.png")
            frames.append({"file_path": f"./{split}/r_{k:03d}.png", "transform_matrix": c2w.tolist()})
        doc = {"camera_angle_x": ANGLE_X, "frames": frames, "nrconvert": {"up_axis": "z"}}
        (root / f"transforms_{split}.json").write_text(json.dumps(doc, indent=1))
    return root
