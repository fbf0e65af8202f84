"""SIFT features of one photo for SfM, in the photo's own pixel coordinates.

We extract with pycolmap's SIFT ourselves instead of letting COLMAP read the files, because:
  * the photo is read by our own reader (16-bit, float TIFF, EXR) and its alpha or mask applied:
    transparent pixels are composited onto mid grey (their stored colour is arbitrary) and
    keypoints outside the object are dropped, so a turntable's static background cannot pull the
    cameras towards "nobody moved";
  * SIFT's detector is tuned for photos of a few megapixels. On a small photo (or a small object
    in it) it finds a few dozen keypoints, too few to pose a camera, so photos whose long side is
    under `SMALL_SIDE` are upsampled (Lanczos) to about that size first; large photos are shrunk to
    `max_size` (time, memory). Keypoints are scaled back, so poses and intrinsics stay in the
    photo's pixels;
  * on a photo with weak texture (fewer than `LOW_TEXTURE` keypoints, or an upsampled one) the
    detector threshold is lowered and two opponent-colour channels (red-green, yellow-blue) are
    searched as well: patches that differ in hue but not in brightness are invisible to
    grey-level SIFT. Measured on the 200 px `standard` synth suzanne: 472 instead of 191
    keypoints per photo, mean rotation error 0.48 instead of 0.91 degrees (bench/RESULTS.md).
Resampling is corner-aligned (Pillow), and COLMAP's keypoints use the same convention as
`Frame` (origin at the top-left pixel corner), so scaling them back is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import CaptureError
from .images import read_mask, read_pixels
from .photos import Photo

SMALL_SIDE = 800  # photos with a shorter long side are upsampled to about this for SIFT
LOW_TEXTURE = 2000  # fewer grey-level keypoints than this: also search the colour channels
LOW_PEAK_THRESHOLD = 0.002  # SIFT DoG threshold for low-texture photos (COLMAP's default: 0.0067)
MASK_BACKGROUND = 0.5  # grey that transparent / masked-out pixels are composited onto
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class PhotoFeatures:
    keypoints: np.ndarray  # (N, 4) float32: x, y, scale, orientation in the photo's pixels
    descriptors: np.ndarray  # (N, 128) uint8
    scale: float  # extraction image width / photo width
    low_texture: bool


def extraction_scale(width: int, height: int, max_size: int) -> float:
    """Resampling factor for feature extraction: an integer upsampling for small photos, a
    shrink to `max_size` for large ones, else 1."""
    side = max(width, height)
    if side < SMALL_SIDE:
        return float(math.ceil(SMALL_SIDE / side))
    return min(1.0, max_size / side)


class FeatureExtractor:
    """One pycolmap SIFT extractor per detector threshold, reused over the photos."""

    def __init__(self, max_size: int, num_threads: int = -1, colour: bool = True):
        import pycolmap

        self.max_size = max_size
        self.colour = colour  # off: grey-level SIFT only (for comparison, bench/sfm.py --grey-only)
        self._extractors = {}
        for key in ((None, False), (LOW_PEAK_THRESHOLD, False), (LOW_PEAK_THRESHOLD, True)):
            threshold, upsampled = key
            options = pycolmap.FeatureExtractionOptions()
            options.num_threads = num_threads
            options.max_image_size = max(max_size, 4 * SMALL_SIDE)  # we resize; COLMAP must not
            if threshold is not None:  # weak texture: more, and steadier, descriptors (DSP-SIFT)
                options.sift.peak_threshold = threshold
                options.sift.domain_size_pooling = True
            if upsampled:  # SIFT's own 2x upsampling (octave -1) adds little to our Lanczos one
                options.sift.first_octave = 0
            self._extractors[key] = pycolmap.FeatureExtractor.create(options, pycolmap.Device.cpu)

    def extract(self, photo: Photo) -> PhotoFeatures:
        rgb, weight = _object_pixels(photo)
        height, width = rgb.shape[:2]
        work, sx, sy = _resize(rgb, extraction_scale(width, height, self.max_size))
        luma = np.ascontiguousarray(work @ LUMA)
        upsampled = sx > 1.0
        low = upsampled  # an upsampled photo never reaches LOW_TEXTURE: skip the first try
        if not low:
            kps, descs = self._sift(luma, (None, False))
            low = len(kps) < LOW_TEXTURE
        if low:
            key = (LOW_PEAK_THRESHOLD, upsampled)
            channels = (luma, *_opponent(work)) if self.colour else (luma,)
            found = [self._sift(c, key) for c in channels]
            kps, descs = np.concatenate([k for k, _ in found]), np.concatenate([d for _, d in found])
        kps[:, 0] /= sx
        kps[:, 1] /= sy
        kps[:, 2] /= math.sqrt(sx * sy)
        if weight is not None and len(kps):
            col = np.clip(kps[:, 0].astype(int), 0, width - 1)
            row = np.clip(kps[:, 1].astype(int), 0, height - 1)
            keep = weight[row, col] >= 0.5
            kps, descs = kps[keep], descs[keep]
        return PhotoFeatures(np.ascontiguousarray(kps, dtype=np.float32), np.ascontiguousarray(descs), sx, low)

    def _sift(self, channel: np.ndarray, key: tuple) -> tuple[np.ndarray, np.ndarray]:
        import pycolmap

        image = np.ascontiguousarray(np.clip(channel, 0.0, 1.0), dtype=np.float32)
        keypoints, descriptors = self._extractors[key].extract_from_float32_array(image)
        kps = pycolmap.keypoints_to_matrix(keypoints).astype(np.float32, copy=True).reshape(-1, 4)
        return kps, np.asarray(descriptors.data, dtype=np.uint8).reshape(len(kps), -1)


def _object_pixels(photo: Photo) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB with transparent / masked-out pixels composited onto grey, and the object weight."""
    rgb, alpha = read_pixels(photo.path)
    weight = alpha
    if photo.mask_path is not None:
        mask = read_mask(photo.mask_path)
        if mask.shape != rgb.shape[:2]:
            raise CaptureError(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but its photo {photo.name} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}", path=str(photo.mask_path),
                hint="masks must have the size of their photos")
        weight = mask if weight is None else weight * mask
    if weight is not None:
        rgb = rgb * weight[..., None] + MASK_BACKGROUND * (1.0 - weight[..., None])
    return rgb, weight


def _resize(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Corner-aligned Lanczos resampling of a float image (per channel, no 8-bit rounding), with
    the exact x and y factors of the rounded size."""
    if scale == 1.0:
        return rgb, 1.0, 1.0
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c])).resize(size, Image.LANCZOS))
                for c in range(rgb.shape[2])]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0), size[0] / width, size[1] / height


def _opponent(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Red-green and yellow-blue opponent channels, offset to mid grey."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return 0.5 + (r - g) / 2.0, 0.5 + ((r + g) / 2.0 - b) / 2.0
