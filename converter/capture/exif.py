"""Camera facts from a photo's EXIF block: the focal length prior and the camera body.

SfM estimates the focal length itself, but it starts from a guess and, for a narrow lens or a
small object, the focal length trades off against the distance to the object. A prior from EXIF
(the focal length the camera recorded) makes the estimate start near the truth; COLMAP then keeps
refining it. The body (make + model) separates photos of equal size taken with different
cameras, which must not share intrinsics.

Read with Pillow, which parses the EXIF block without decoding the pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

EXIF_IFD = 0x8769
TAG_MAKE, TAG_MODEL = 0x010F, 0x0110
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405
TAG_PLANE_X_RES, TAG_PLANE_UNIT = 0xA20E, 0xA210
PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # inch, cm, mm, um (EXIF 2.3 + DNG)
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class ExifCamera:
    """What EXIF says about the camera of one photo (None where it says nothing usable)."""

    focal_px: float | None  # focal length in pixels of the stored image
    body: str  # "make model", "" when unknown

    @property
    def has_prior(self) -> bool:
        return self.focal_px is not None


def read_exif_camera(path: Path, width: int, height: int) -> ExifCamera:
    """Focal length (pixels) and camera body of a photo of `width` x `height` pixels.

    The 35 mm equivalent focal length is preferred (defined by the diagonal angle of view, so it
    holds whatever the crop), then the focal length in mm over the focal-plane resolution. A value
    outside 0.1x-10x the image diagonal is treated as missing: some cameras write junk.
    """
    try:
        with Image.open(path) as img:
            exif = img.getexif()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return ExifCamera(None, "")
    sub = exif.get_ifd(EXIF_IFD) if exif else {}
    body = " ".join(str(exif.get(t, "")).strip("\x00 ") for t in (TAG_MAKE, TAG_MODEL)).strip()
    focal = _from_35mm(sub.get(TAG_FOCAL_35MM), width, height)
    if focal is None:
        focal = _from_plane(sub.get(TAG_FOCAL_LENGTH), sub.get(TAG_PLANE_X_RES), sub.get(TAG_PLANE_UNIT))
    diagonal = math.hypot(width, height)
    if focal is not None and not 0.1 * diagonal <= focal <= 10.0 * diagonal:
        focal = None
    return ExifCamera(focal, body)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _from_35mm(value, width: int, height: int) -> float | None:
    focal = _number(value)
    return None if focal is None else focal * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM


def _from_plane(focal_mm, x_res, unit) -> float | None:
    """mm x pixels per mm of the sensor. The resolution refers to the full-size sensor readout;
    photos stored smaller than that (rare in camera JPEGs) would need the original width."""
    focal, res = _number(focal_mm), _number(x_res)
    unit_mm = PLANE_UNIT_MM.get(int(unit) if _number(unit) else 2)
    if focal is None or res is None or unit_mm is None:
        return None
    return focal * res / unit_mm
