"""Names the synth generator accepts: objects, presets, bundled HDRIs.

Kept free of bpy so the API can reject a bad name before paying for a Blender start-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from nrconvert.errors import UsageError

# "street" is a scene, not one object: a row of objects along X seen from a lane (synth/street.py).
OBJECTS: tuple[str, ...] = ("suzanne", "suzanne_specular", "torus_knot", "box", "materials", "street")

# Blender's bundled studio-light worlds (datafiles/studiolights/world).
HDRIS: tuple[str, ...] = (
    "city.exr", "courtyard.exr", "forest.exr", "interior.exr",
    "night.exr", "studio.exr", "sunrise.exr", "sunset.exr",
)

# HDRI A lights train/test, HDRI B the relit test views. They were chosen to disagree: forest is
# cool with a sun-like peak high up, courtyard warm, soft and low, its mean light direction ~60
# degrees away; the same tiny capture under the two differs by 12 dB (materials) / 14 dB (suzanne)
# PSNR on object pixels, so a texture with A's light baked in cannot pass for B.
DEFAULT_HDRI = "forest.exr"
DEFAULT_RELIGHT_HDRI = "courtyard.exr"

BACKGROUNDS: tuple[str, ...] = ("transparent", "opaque")

# NeRF-synthetic's field of view: a 50 mm lens on a 36 mm sensor.
CAMERA_ANGLE_X = 2.0 * math.atan(18.0 / 50.0)
CAMERA_RADIUS = 4.0
ELEVATION_RANGE_DEG = (-35.0, 80.0)


@dataclass(frozen=True)
class Preset:
    """Resolution, view counts and sampling of one capture size."""

    name: str
    resolution: int
    n_train: int
    n_test: int
    samples: int
    denoise: bool


# OpenImageDenoise is built into bpy 5.0.1 and was measured deterministic on CPU (same input,
# same bytes out), so the larger presets pair 64 samples with denoising instead of 128 plain.
PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 64, 16, 4, 16, False),
    # the sample capture bundled in samples/: small enough to ship, large enough to look good
    "demo": Preset("demo", 160, 48, 6, 64, True),
    "standard": Preset("standard", 200, 100, 20, 64, True),
    "large": Preset("large", 400, 200, 40, 64, True),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a UsageError listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown synth preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def check_object(name: str) -> str:
    """`name` if it is a known procedural object, else a UsageError listing them."""
    if name not in OBJECTS:
        raise UsageError(f"unknown synth object {name!r}; choose one of {', '.join(OBJECTS)}")
    return name


def check_background(name: str) -> str:
    """`name` if it is a known background mode, else a UsageError."""
    if name not in BACKGROUNDS:
        raise UsageError(f"unknown background {name!r}; choose one of {', '.join(BACKGROUNDS)}")
    return name


def check_hdri(name: str) -> str:
    """A bundled HDRI name (`forest` or `forest.exr`) or the absolute path of an existing file.

    Bundled names stay names in the capture's JSON so the capture is portable between machines;
    the Blender side resolves them against its own install.
    """
    if name in HDRIS:
        return name
    if f"{name}.exr" in HDRIS:
        return f"{name}.exr"
    path = Path(name).expanduser()
    if path.is_file():
        return str(path.resolve())
    raise UsageError(
        f"unknown HDRI {name!r}",
        hint=f"use one of Blender's bundled worlds ({', '.join(HDRIS)}) or the path of an .exr/.hdr file",
    )
