"""What one synthetic capture renders: cameras, film and scene, decided in plain numpy before Blender starts.

`render_capture` writes the same files for every scene; only the plan differs. A single object sits
at the origin under cameras on a sphere (`object_plan`); the `street` scene is a row of objects with
cameras driving past it (`synth.street.street_plan`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nrconvert.synth import cameras as cams
from nrconvert.synth.presets import CAMERA_ANGLE_X, CAMERA_RADIUS, ELEVATION_RANGE_DEG, get_preset


@dataclass(frozen=True)
class CapturePlan:
    """Everything about a capture that is not pixels."""

    poses: dict[str, list[np.ndarray]]  # "train" / "test": camera-to-world matrices (OpenGL/Blender axes)
    width: int
    height: int
    camera_angle_x: float
    samples: int
    denoise: bool
    scene: dict[str, Any]  # the Blender job's scene block: what `_blender_main` builds
    meta: dict[str, Any] = field(default_factory=dict)  # extra keys of the capture's `nrconvert` block

    def intrinsics(self) -> dict[str, float]:
        """The capture's pinhole, as `transforms_*.json` stores it."""
        return cams.intrinsics(self.width, self.height, self.camera_angle_x)


def object_plan(object: str, preset: str, seed: int) -> CapturePlan:
    """One procedural object at the origin, cameras on a sphere band around it, square film."""
    spec = get_preset(preset)
    train = cams.train_directions(spec.n_train, ELEVATION_RANGE_DEG)
    test = cams.test_directions(spec.n_test, ELEVATION_RANGE_DEG, seed, avoid=train)
    poses = {"train": cams.camera_poses(train, CAMERA_RADIUS), "test": cams.camera_poses(test, CAMERA_RADIUS)}
    return CapturePlan(poses, spec.resolution, spec.resolution, CAMERA_ANGLE_X, spec.samples, spec.denoise,
                       scene={"object": object})
