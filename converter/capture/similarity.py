"""Frame geometry shared by COLMAP models and our own SfM: which rotation takes up to +Z, where
the cameras look, a robust centre of a point cloud, and moving cameras by a similarity. Pure numpy,
no I/O: the model readers (colmap.py) and the SfM normalisation (normalize.py) both build on it.
"""
from __future__ import annotations

import numpy as np


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the unit vector `up` to +Z (Rodrigues)."""
    z = np.array([0.0, 0.0, 1.0])
    axis, cos = np.cross(up, z), float(np.dot(up, z))
    if np.linalg.norm(axis) < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + cos)


def look_at_point(c2ws: np.ndarray) -> np.ndarray:
    """Least-squares point nearest to every optical axis (the mean centre if they are parallel)."""
    origins, dirs = c2ws[:, :3, 3], -c2ws[:, :3, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]
    A, b = proj.sum(0), np.einsum("nij,nj->i", proj, origins)
    if np.linalg.cond(A) > 1e8:
        return origins.mean(0)
    return np.linalg.solve(A, b)


def geometric_median(points: np.ndarray, iterations: int = 100, max_points: int = 100_000) -> np.ndarray:
    """Point minimising the summed distances (Weiszfeld): robust to SfM outliers and, unlike a
    per-axis median, independent of the arbitrary orientation of the SfM frame. Large clouds are
    subsampled (deterministically): the centre does not need a million points."""
    if len(points) > max_points:
        points = points[np.random.default_rng(0).choice(len(points), max_points, replace=False)]
    centre = np.median(points, axis=0)
    for _ in range(iterations):
        dist = np.maximum(np.linalg.norm(points - centre, axis=1), 1e-12)
        weights = 1.0 / dist
        new = (points * weights[:, None]).sum(0) / weights.sum()
        if np.linalg.norm(new - centre) < 1e-12 * (1.0 + np.linalg.norm(centre)):
            return new
        centre = new
    return centre


def apply_similarity(T: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Move a camera by a similarity, keeping its rotation block orthonormal."""
    scale = np.cbrt(np.linalg.det(T[:3, :3]))
    out = T @ c2w
    out[:3, :3] /= scale
    return out
