"""Camera placement for synthetic captures, in plain numpy.

Poses are camera-to-world in the OpenGL/Blender convention (camera looks down its local -Z, +Y up,
world Z up), which is exactly Blender's `camera.matrix_world`, so the same matrix drives the
render and lands in `transform_matrix`.
"""
from __future__ import annotations

import math

import numpy as np

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def look_at(position: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """4x4 camera-to-world matrix of a camera at `position` looking at `target`, world Z up."""
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    back = position - target
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    if np.linalg.norm(right) < 1e-8:  # looking straight up or down: any right vector will do
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, position
    return m


def _band_z(elevation_deg: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (math.sin(math.radians(e)) for e in elevation_deg)
    return lo, hi


def _direction(z: float, azimuth: float) -> np.ndarray:
    r = math.sqrt(max(0.0, 1.0 - z * z))
    return np.array([r * math.cos(azimuth), r * math.sin(azimuth), z])


def train_directions(n: int, elevation_deg: tuple[float, float]) -> np.ndarray:
    """`n` unit vectors spread evenly over a band of the sphere (a golden spiral).

    Uniform steps in z are uniform steps in area, so the spiral covers the band evenly.
    """
    z_lo, z_hi = _band_z(elevation_deg)
    dirs = [_direction(z_lo + (z_hi - z_lo) * (i + 0.5) / n, i * GOLDEN_ANGLE) for i in range(n)]
    return np.array(dirs).reshape(n, 3)


def test_directions(
    n: int, elevation_deg: tuple[float, float], seed: int, avoid: np.ndarray, min_angle_deg: float = 2.0
) -> np.ndarray:
    """`n` seeded random unit vectors in the band, each at least `min_angle_deg` from `avoid`.

    Held-out views must not coincide with training views, or the test measures memorisation.
    """
    rng = np.random.default_rng(seed)
    z_lo, z_hi = _band_z(elevation_deg)
    cos_min = math.cos(math.radians(min_angle_deg))
    out: list[np.ndarray] = []
    while len(out) < n:
        d = _direction(rng.uniform(z_lo, z_hi), rng.uniform(0.0, 2.0 * math.pi))
        if len(avoid) == 0 or float(np.max(avoid @ d)) < cos_min:
            out.append(d)
    return np.array(out).reshape(n, 3)


def camera_poses(directions: np.ndarray, radius: float) -> list[np.ndarray]:
    """Camera-to-world matrices at `radius` along each direction, all looking at the origin."""
    return [look_at(d * radius) for d in directions]


def intrinsics(width: int, height: int, camera_angle_x: float) -> dict[str, float]:
    """NeRF-synthetic / nerfstudio intrinsics keys of a centred pinhole with horizontal FOV."""
    fl = 0.5 * width / math.tan(0.5 * camera_angle_x)
    return {
        "camera_angle_x": camera_angle_x,
        "w": width, "h": height,
        "fl_x": fl, "fl_y": fl,
        "cx": width / 2.0, "cy": height / 2.0,
    }


def project(points: np.ndarray, c2w: np.ndarray, intr: dict[str, float]) -> np.ndarray:
    """Pixel coordinates (x right, y down) of world `points` seen by an OpenGL camera."""
    w2c = np.linalg.inv(c2w)
    cam = (np.c_[points, np.ones(len(points))] @ w2c.T)[:, :3]
    x = intr["cx"] + intr["fl_x"] * cam[:, 0] / -cam[:, 2]
    y = intr["cy"] - intr["fl_y"] * cam[:, 1] / -cam[:, 2]
    return np.stack([x, y], axis=1)
