"""BakedAsset: everything the exporter writes, in the capture frame."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..capture.model import Frame
from ..mesh import Mesh


@dataclass
class BakedAsset:
    mesh: Mesh  # capture frame, with uvs
    base_color: np.ndarray  # (H, W, 3) uint8, sRGB texture (the photo-lit radiance in this slice)
    up_axis: str = "z"  # capture frame's up axis; the exporter turns it into glTF's +Y
    cameras: list[Frame] = field(default_factory=list)  # exported under a `capture_cameras` node
    # Goes to asset.extras.nrconvert (version, metrics, transform are added by the exporter).
    metadata: dict = field(default_factory=dict)
