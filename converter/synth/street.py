"""The `street` synth scene: a row of objects along X and cameras driving past it, in plain numpy.

Large-scene work (splitting a capture into blocks) needs a capture where no camera sees the whole
scene: seven distinct procedural objects stand in a row along +X on an invisible ground (z = 0),
and the cameras drive along a lane parallel to the row, at street, mid and drone height, facing the
row or turned forwards/backwards along it, so each view holds about two or three objects. There
is no ground plane: the objects are the content, and a transparent film keeps the masks exact (an
opaque capture shows the HDRI behind them). Held-out cameras look at points half-way between the
training stations, on the same lane.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nrconvert.errors import UsageError
from nrconvert.synth import cameras as cams
from nrconvert.synth.plan import CapturePlan

STREET = "street"

# A wider lens than the object captures (a dash or drone camera): 60 degrees horizontal on 4:3 film.
CAMERA_ANGLE_X = math.radians(60.0)
LANE_Y = -5.0  # the cameras' lane, parallel to the row, which stands on y = 0
SPACING = 2.4  # between object centres along X: gaps of ~0.6-1 between neighbours


@dataclass(frozen=True)
class StreetItem:
    """One object of the row. The Blender side fits `kind` into [-1, 1]^3, scales it by `scale`
    (its half-extents), tilts it about X, turns it about Z and stands it on z = 0 at x."""

    kind: str
    scale: tuple[float, float, float]
    tilt_deg: float = 0.0
    yaw_deg: float = 0.0


# Built from the single-object scenes' meshes and materials, each varied so no two look alike.
ROW: tuple[StreetItem, ...] = (
    StreetItem("box", (0.7, 0.7, 0.7), yaw_deg=15.0),  # checkered faces, one hue per face
    StreetItem("suzanne", (0.85, 0.85, 0.85)),  # rough Voronoi cells, facing the lane
    StreetItem("torus_knot", (0.85, 0.85, 0.85), tilt_deg=70.0),  # glossy noise bands, standing up
    StreetItem("materials", (0.9, 0.9, 0.9), yaw_deg=-20.0),  # textured sphere, glossy cube, gold torus
    StreetItem("pillar", (0.45, 0.45, 1.25), yaw_deg=30.0),  # a tall box, faces in other hues
    StreetItem("suzanne_glossy", (0.8, 0.8, 0.8), yaw_deg=-35.0),  # glossy, finer cells, turned
    StreetItem("knot_2_5", (0.8, 0.8, 0.8), tilt_deg=60.0),  # a (2, 5) knot, rough cells
)


@dataclass(frozen=True)
class Rig:
    """A camera mounting: height above the ground, yaw along the row (+ looks towards +X) and the
    height of the point on the row it aims at."""

    height: float
    yaw_deg: float
    look_z: float


RIGS: tuple[Rig, ...] = (
    Rig(0.9, 0.0, 0.7), Rig(3.5, 0.0, 0.5),  # street level and drone height, facing the row
    Rig(0.9, 22.0, 0.7), Rig(3.5, -22.0, 0.5),  # the same, turned along the row
    Rig(2.0, -22.0, 0.6), Rig(2.0, 22.0, 0.6),  # half-way up, turned both ways
)


@dataclass(frozen=True)
class StreetPreset:
    """Film size, camera counts and sampling of one street capture size."""

    name: str
    width: int
    height: int
    n_stations: int  # training aim points along the row, each shot by every rig
    n_test: int  # held-out cameras, each at a midpoint between two stations with one rig
    samples: int
    denoise: bool

    @property
    def n_train(self) -> int:
        return self.n_stations * len(RIGS)


# Four times the views of the object presets, so fewer samples: 16 + OpenImageDenoise was measured
# 32-35 dB PSNR against 64 + denoise on object pixels (far above any conversion) at half the time,
# ~1.9 s per 320x240 view on 2 cores.
STREET_PRESETS: dict[str, StreetPreset] = {
    "tiny": StreetPreset("tiny", 160, 120, 7, 8, 16, False),  # 42 train, for CI
    "standard": StreetPreset("standard", 320, 240, 30, 30, 16, True),  # 180 train, the blocks benchmark
    "large": StreetPreset("large", 640, 480, 60, 60, 32, True),  # 360 train
}


def get_street_preset(name: str) -> StreetPreset:
    """The street preset called `name`, or a UsageError listing the valid ones."""
    try:
        return STREET_PRESETS[name]
    except KeyError:
        raise UsageError(f"the street scene has no preset {name!r}; choose one of "
                         f"{', '.join(STREET_PRESETS)}") from None


def row_x() -> np.ndarray:
    """X of each object's centre: the row is centred on the origin."""
    return (np.arange(len(ROW)) - (len(ROW) - 1) / 2.0) * SPACING


def row_spec() -> list[dict]:
    """The row as the Blender job (and the capture's `nrconvert.street` block) records it."""
    return [{"object": it.kind, "x": float(x), "scale": list(it.scale), "tilt_deg": it.tilt_deg,
             "yaw_deg": it.yaw_deg} for it, x in zip(ROW, row_x())]


def rig_pose(target_x: float, rig: Rig) -> np.ndarray:
    """Camera-to-world of `rig` on the lane, aimed at (target_x, 0, look_z) on the row.

    The camera sits back along the lane by the yaw, so a turned camera still aims at the row and
    no view is empty, even at the ends of the row.
    """
    x = target_x - abs(LANE_Y) * math.tan(math.radians(rig.yaw_deg))
    return cams.look_at(np.array([x, LANE_Y, rig.height]), np.array([target_x, 0.0, rig.look_z]))


def stations(n: int) -> np.ndarray:
    """`n` aim points spread evenly from the first object's centre to the last one's."""
    xs = row_x()
    return np.linspace(xs[0], xs[-1], n)


def train_poses(preset: StreetPreset) -> list[np.ndarray]:
    """Every rig at every station, in driving order."""
    return [rig_pose(float(t), rig) for t in stations(preset.n_stations) for rig in RIGS]


def heldout_poses(preset: StreetPreset, seed: int) -> list[np.ndarray]:
    """`n_test` seeded (midpoint, rig) pairs, all distinct, in driving order.

    Aiming half-way between two training stations puts every held-out camera on the lane between
    training cameras, never on one of them, so the test measures new views.
    """
    t = stations(preset.n_stations)
    mids = (t[:-1] + t[1:]) / 2.0
    pairs = len(mids) * len(RIGS)
    if preset.n_test > pairs:
        raise UsageError(f"street preset {preset.name!r}: {preset.n_test} test views, only {pairs} slots")
    picks = np.sort(np.random.default_rng(seed).choice(pairs, size=preset.n_test, replace=False))
    return [rig_pose(float(mids[p // len(RIGS)]), RIGS[p % len(RIGS)]) for p in picks]


def street_plan(preset: str, seed: int) -> CapturePlan:
    """The street capture of size `preset`, on 4:3 film."""
    spec = get_street_preset(preset)
    row = row_spec()
    return CapturePlan(
        poses={"train": train_poses(spec), "test": heldout_poses(spec, seed)},
        width=spec.width, height=spec.height, camera_angle_x=CAMERA_ANGLE_X,
        samples=spec.samples, denoise=spec.denoise,
        scene={"street": row}, meta={"street": {"row": row, "lane_y": LANE_Y}},
    )
