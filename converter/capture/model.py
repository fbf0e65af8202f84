"""The Capture: what every later stage knows about the photos.

Poses are camera-to-world 4x4 matrices in the OpenGL convention (camera looks down -Z, +Y up), in
the capture's own world frame. `up_axis` says which world axis is up so the exporter can place the
asset Y-up in glTF (Blender/nerfstudio captures are Z-up).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Frame:
    """One photo with its pinhole camera (distortion already removed or refused at load time)."""

    image_path: Path
    c2w: np.ndarray  # (4, 4) float64, OpenGL convention
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    split: str = "train"  # "train" | "test"
    mask_path: Path | None = None  # separate mask file; RGBA images carry their own alpha

    def intrinsics(self) -> np.ndarray:
        """3x3 K matrix (pixel units, origin at the top-left pixel corner)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)


@dataclass
class Capture:
    """Frames plus the scene-level facts a loader could establish."""

    frames: list[Frame]
    source: str  # "transforms" | "colmap" | "images"
    root: Path
    up_axis: str = "z"  # "z" (Blender / nerfstudio / colmap2nerf) or "y"
    # Axis-aligned bounds of the object of interest, (2, 3) min/max, or None: estimated later.
    bounds: np.ndarray | None = None
    # Optional ground-truth mesh (synth captures) in the capture frame, for metrics.
    gt_mesh_path: Path | None = None
    # Extra per-capture facts (e.g. the HDRI a synth capture was rendered with).
    extras: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Frame]:
        return [f for f in self.frames if f.split == name]

    @property
    def train(self) -> list[Frame]:
        return self.split("train")

    @property
    def test(self) -> list[Frame]:
        return self.split("test")
