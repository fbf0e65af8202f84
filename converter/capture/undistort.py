"""OpenCV radial-tangential lens distortion, and its removal from images.

Every later stage (ray generation, rasterised previews, the baker) assumes an ideal pinhole camera,
so photos shot through a distorting lens are resampled onto the *same* pinhole K when they are
loaded. Keeping K unchanged means the intrinsics a loader reports stay valid before and after
undistortion, and no stage needs to know a lens was ever involved.

The model is OpenCV's rational one (COLMAP `OPENCV`/`FULL_OPENCV`, nerfstudio `OPENCV`), on
normalised coordinates (x, y) = ((u - cx) / fx, (v - cy) / fy) with r2 = x² + y²:

    radial = (1 + k1 r2 + k2 r2² + k3 r2³) / (1 + k4 r2 + k5 r2² + k6 r2³)
    x_d = x radial + 2 p1 x y + p2 (r2 + 2 x²)
    y_d = y radial + p1 (r2 + 2 y²) + 2 p2 x y

Pixel coordinates follow `Frame.intrinsics`: the origin is the top-left *corner* of the image, so
the centre of pixel (row i, column j) is at (u, v) = (j + 0.5, i + 0.5).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np
from scipy.ndimage import map_coordinates

_BLOCK_ROWS = 64


@dataclass(frozen=True)
class Distortion:
    """Coefficients of the rational radial-tangential model (all zero: no distortion)."""

    k1: float = 0.0
    k2: float = 0.0
    k3: float = 0.0
    k4: float = 0.0
    k5: float = 0.0
    k6: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def is_identity(self) -> bool:
        """True when resampling would change nothing, so loaders can skip the work."""
        return all(getattr(self, f.name) == 0.0 for f in fields(self))

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-able form, as stored in `Capture.extras["distortion"]`."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> Distortion:
        """Inverse of `to_dict`; unknown keys are an error so typos do not vanish silently."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown distortion coefficients: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


def distort_normalized(x: np.ndarray, y: np.ndarray, d: Distortion) -> tuple[np.ndarray, np.ndarray]:
    """Apply the lens model to ideal normalised coordinates (the forward, closed-form direction)."""
    r2 = x * x + y * y
    num = 1.0 + r2 * (d.k1 + r2 * (d.k2 + r2 * d.k3))
    den = 1.0 + r2 * (d.k4 + r2 * (d.k5 + r2 * d.k6))
    radial = num / den
    xd = x * radial + 2.0 * d.p1 * x * y + d.p2 * (r2 + 2.0 * x * x)
    yd = y * radial + d.p1 * (r2 + 2.0 * y * y) + 2.0 * d.p2 * x * y
    return xd, yd


def undistort_normalized(
    xd: np.ndarray, yd: np.ndarray, d: Distortion, iterations: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Invert `distort_normalized` by fixed-point iteration (what OpenCV's undistortPoints does).

    Used to synthesise distorted test images and to map observed points back to the pinhole
    camera; it converges for the moderate distortion of ordinary (non-fisheye) lenses.
    """
    x = np.array(xd, dtype=np.float64, copy=True)
    y = np.array(yd, dtype=np.float64, copy=True)
    for _ in range(iterations):
        r2 = x * x + y * y
        num = 1.0 + r2 * (d.k1 + r2 * (d.k2 + r2 * d.k3))
        den = 1.0 + r2 * (d.k4 + r2 * (d.k5 + r2 * d.k6))
        radial = num / den
        dx = 2.0 * d.p1 * x * y + d.p2 * (r2 + 2.0 * x * x)
        dy = d.p1 * (r2 + 2.0 * y * y) + 2.0 * d.p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


def _pixel_grid(width: int, height: int, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v) of every pixel (of some rows), corner-origin convention."""
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64)[rows] + 0.5
    return np.meshgrid(u, v)


@lru_cache(maxsize=2)
def _sample_map(
    fx: float, fy: float, cx: float, cy: float, d: Distortion, width: int, height: int
) -> np.ndarray:
    """(2, H, W) float32 (row, col) indices in the distorted photo for each undistorted pixel.

    Cached because every photo of one camera shares it (computing it is most of the cost of
    undistorting an image); evaluated in blocks of rows to keep the temporaries in cache.
    """
    out = np.empty((2, height, width), dtype=np.float32)
    for start in range(0, height, _BLOCK_ROWS):
        rows = slice(start, min(start + _BLOCK_ROWS, height))
        u, v = _pixel_grid(width, height, rows)
        xd, yd = distort_normalized((u - cx) / fx, (v - cy) / fy, d)
        out[0, rows] = yd * fy + cy - 0.5
        out[1, rows] = xd * fx + cx - 0.5
    out.flags.writeable = False
    return out


def undistort_sample_map(K: np.ndarray, d: Distortion, width: int, height: int) -> np.ndarray:
    """(2, H, W) (row, col) array indices in the distorted photo to sample per undistorted pixel."""
    return _sample_map(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), d, width, height)


def _resample(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear sampling of an HxW or HxWxC image; outside samples clamp to the nearest edge.

    Clamping (rather than filling black) keeps the few border pixels that fall outside the photo
    plausible instead of inventing dark borders the reconstruction would try to explain.
    """
    src = image.astype(np.float32, copy=False)
    if src.ndim == 2:
        return map_coordinates(src, coords, order=1, mode="nearest", output=np.float32)
    out = np.empty(coords.shape[1:] + (src.shape[2],), dtype=np.float32)
    for c in range(src.shape[2]):
        out[..., c] = map_coordinates(np.ascontiguousarray(src[..., c]), coords, order=1, mode="nearest",
                                      output=np.float32)
    return out


def undistort_image(image: np.ndarray, K: np.ndarray, d: Distortion) -> np.ndarray:
    """Resample a distorted photo (HxW or HxWxC) into the pinhole camera with the same K."""
    height, width = image.shape[:2]
    return _resample(image, undistort_sample_map(K, d, width, height))


def distort_image(image: np.ndarray, K: np.ndarray, d: Distortion) -> np.ndarray:
    """The inverse of `undistort_image`: what the lens would have recorded (for synthetic tests)."""
    height, width = image.shape[:2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u, v = _pixel_grid(width, height)
    x, y = undistort_normalized((u - cx) / fx, (v - cy) / fy, d)
    return _resample(image, np.stack([y * fy + cy - 0.5, x * fx + cx - 0.5]))
