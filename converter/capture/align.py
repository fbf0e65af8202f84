"""How far SfM poses are from known ones, after the best similarity (Sim(3)) between the frames.

SfM recovers cameras only up to a similarity (rotation, translation, scale), so estimated and
ground-truth poses are compared after aligning the camera centres with Umeyama's closed form
(least squares, Umeyama 1991). Used by the SfM tests and bench/sfm.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PoseErrors:
    rotation_deg: np.ndarray  # per camera
    centre: np.ndarray  # per camera, in ground-truth units
    scene_radius: float  # median distance of the ground-truth cameras from their centroid

    def report(self) -> dict:
        r, c = self.rotation_deg, self.centre / self.scene_radius * 100.0
        return {"cameras": int(len(r)), "rotation_mean_deg": float(r.mean()), "rotation_max_deg": float(r.max()),
                "centre_mean_pct_radius": float(c.mean()), "centre_max_pct_radius": float(c.max()),
                "scene_radius": self.scene_radius}


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R, translation t minimising sum |s R src_i + t - dst_i|^2 (N >= 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a ** 2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def pose_errors(estimated: np.ndarray, truth: np.ndarray) -> PoseErrors:
    """Errors of camera-to-world poses `estimated` (N, 4, 4) against `truth` (same cameras, same
    axis convention), after aligning the centres with a similarity."""
    s, R, t = umeyama(estimated[:, :3, 3], truth[:, :3, 3])
    centres = s * estimated[:, :3, 3] @ R.T + t
    centre_err = np.linalg.norm(centres - truth[:, :3, 3], axis=1)
    rel = np.einsum("nji,njk->nik", R @ estimated[:, :3, :3], truth[:, :3, :3])  # (R Re)^T Rt
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    radius = float(np.median(np.linalg.norm(truth[:, :3, 3] - truth[:, :3, 3].mean(0), axis=1)))
    return PoseErrors(np.degrees(np.arccos(cos)), centre_err, radius)
