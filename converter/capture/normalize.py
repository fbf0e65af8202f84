"""Scene normalisation for an SfM reconstruction: which way is up, where the object is, how big.

SfM returns cameras and points in an arbitrary frame (random rotation, origin and scale). Every
later stage wants the object near the origin, Z up (the capture convention of `Capture`), at a
known size, so we estimate a similarity x -> s R (x - c):

  * up: photographers hold cameras roughly upright, so the mean camera up axis is a good up; when
    the camera centres lie on a plane (an orbit at one height, a turntable) its normal is a
    better one, signed by the mean up axis;
  * centre and size: from the sparse points near the object, by percentiles (SfM points always
    include a few wild outliers, so min/max would follow them). "Near the object" = closer to
    the point the cameras look at than the cameras themselves are, which drops the background
    of a walk-around capture;
  * scale: the object's largest half-extent becomes 1 (NeRF-synthetic's [-1, 1] cube).

The object's bounds (percentile box, padded) go into `Capture.bounds`. A reconstruction that
gives no usable bounds (all cameras in one spot, points in one spot, too few points) raises a
BoundsError instead of producing a nonsense frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BoundsError
from .similarity import look_at_point, rotation_to_z

PLANAR_RATIO = 0.25  # smallest / middle singular value of the camera centres below which they are "a plane"
PERCENTILES = (2.0, 98.0)
BOUNDS_PADDING = 0.1  # of the box size, each side
MIN_POINTS = 10
OBJECT_HALF_EXTENT = 1.0


@dataclass
class Normalisation:
    transform: np.ndarray  # (4, 4) similarity, raw SfM frame -> capture frame
    bounds: np.ndarray  # (2, 3) object box in the capture frame
    up_source: str  # "camera plane" or "camera up axes"
    object_points: int  # sparse points used for the box


def up_vector(c2ws: np.ndarray) -> tuple[np.ndarray, str]:
    """Unit up direction of the scene from OpenGL camera-to-world poses (camera +Y is up)."""
    mean_up = c2ws[:, :3, 1].mean(0)
    centres = c2ws[:, :3, 3]
    if len(centres) >= 4:
        _, sing, vt = np.linalg.svd(centres - centres.mean(0), full_matrices=False)
        if sing[1] > 1e-12 and sing[2] < PLANAR_RATIO * sing[1] and abs(vt[2] @ mean_up) > 1e-6:
            normal = vt[2] if vt[2] @ mean_up > 0 else -vt[2]
            return normal / np.linalg.norm(normal), "camera plane"
    norm = np.linalg.norm(mean_up)
    if norm < 1e-6:
        raise BoundsError("cannot tell which way is up: the camera up axes cancel out",
                          hint="shoot with the camera upright (portrait or landscape) around the object")
    return mean_up / norm, "camera up axes"


def normalise(c2ws: np.ndarray, points: np.ndarray, where: str) -> Normalisation:
    """The similarity and object bounds for cameras `c2ws` (N, 4, 4) and sparse points (M, 3).

    `where` names the reconstruction in error messages.
    """
    centres = c2ws[:, :3, 3]
    spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) if len(centres) else 0.0
    if not np.isfinite(spread) or spread < 1e-9:
        raise BoundsError("all cameras are in one spot: SfM cannot place the object", path=where,
                          hint="walk around the object: every photo from a different position")
    up, up_source = up_vector(c2ws)
    R = rotation_to_z(up)
    near = _object_points(c2ws, points)
    if len(near) < MIN_POINTS:
        raise BoundsError(f"only {len(near)} sparse points near the object (need {MIN_POINTS})", path=where,
                          hint="take sharper photos with more overlap, of an object with some texture")
    local = near @ R.T
    lo, hi = np.percentile(local, PERCENTILES, axis=0)
    size = hi - lo
    if not np.isfinite(size).all() or size.max() < 1e-6 * spread:
        raise BoundsError("the sparse points collapse to a point or a line: no object bounds", path=where,
                          hint="take sharper photos with more overlap, of an object with some texture")
    centre_local = (lo + hi) / 2.0
    scale = OBJECT_HALF_EXTENT / (size.max() / 2.0)
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = -scale * centre_local
    pad = BOUNDS_PADDING * size
    bounds = scale * np.stack([lo - pad - centre_local, hi + pad - centre_local])
    return Normalisation(T, bounds, up_source, len(near))


def _object_points(c2ws: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The finite points closer to the cameras' look-at point than the median camera is."""
    points = points[np.isfinite(points).all(1)] if len(points) else np.zeros((0, 3))
    if len(points) == 0:
        return points
    target = look_at_point(c2ws)
    reach = float(np.median(np.linalg.norm(c2ws[:, :3, 3] - target, axis=1)))
    near = points[np.linalg.norm(points - target, axis=1) < reach]
    return near if len(near) >= MIN_POINTS else points
