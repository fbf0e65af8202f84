"""Split a large scene into overlapping blocks along its principal horizontal axis.

BirdNeRF / UE4-NeRF style: a capture too large for one field is cut into slabs along the direction
it is long in (a street, a facade, a corridor); each slab gets its own field over a cube that
reaches `overlap` past its borders, and the cameras that see it. The slabs' own regions (without
the overlap) partition the scene: extraction keeps each block's surface inside its own region only
(plus a sliver, blocks.clip), so every surface point belongs to exactly one block.

Why slabs along one axis and not a grid: captures that need blocks are walked along a path, so the
scene is long in one direction and a cube fits each slab with little waste; a 2D grid is the next
step for city-scale captures (docs/design.md).

Why not equal lengths: a block's memory and time go with the rays it keeps (its cameras' pixels
that cross its box), and the cameras of a path see the middle of a row from both sides, so equal
slabs load the middle block most; the farm machine is sized by the largest block. The cuts are
moved until the blocks' estimated rays agree (balanced_cuts).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..capture.model import Capture, Frame
from ..checkpoint import write_json
from ..errors import BoundsError, CaptureError, UsageError
from ..render.rays import frame_rays
from .scene import SceneHull, in_view

OVERLAP = 0.15  # each block's cube reaches this share of a block's length past each border
MIN_SHARE = 0.02  # a camera joins a block when it sees at least this share of the block's points
AUTO_ASPECT = 2.0  # auto: one block per this many scene widths of length ...
AUTO_MIN_CAMERAS = 24  # ... but never fewer training cameras per block than this
PROBES = 4000  # points per block for the frustum test
BALANCE_ROUNDS = 8  # cut adjustments at most (each costs one frustum test per block)
BALANCE_TOLERANCE = 0.05  # stop once the largest block's rays are within this of the mean
MIN_LENGTH = 0.5  # no block shorter than this share of an equal split
RAY_STRIDE = 8  # every 8th pixel each way estimates a camera's rays through a box
VERSION = 1


@dataclass
class Block:
    """One block: its cube (with overlap), its own slab along the layout axis, its cameras."""

    id: int  # 1 to N
    lo: list[float]  # cube corner, capture frame
    hi: list[float]
    own: list[float | None]  # [start, end) along the axis; None = open towards that end
    cameras: list[int]  # indices into capture.train
    test_cameras: list[int] = field(default_factory=list)  # indices into capture.test

    def owns(self, s: np.ndarray, skirt: float = 0.0) -> np.ndarray:
        """Which axis coordinates lie in the own region (widened by `skirt` on each side)."""
        return in_slab(self.own, s, skirt)


def in_slab(own: list[float | None], s: np.ndarray, skirt: float = 0.0) -> np.ndarray:
    a, b = own
    keep = np.ones(np.shape(s), bool)
    if a is not None:
        keep &= s >= a - skirt
    if b is not None:
        keep &= s < b + skirt
    return keep


@dataclass
class Layout:
    """The split: saved as WORK/blocks.json, read back by every unit command."""

    axis: list[float]  # unit, horizontal: the direction blocks follow each other along
    blocks: list[Block]
    scene_lo: list[float]
    scene_hi: list[float]
    overlap: float  # world units past each border
    requested: str  # "auto" or the number asked for
    n_train: int  # training cameras of the capture it was made for
    version: int = VERSION

    def block(self, block_id: int) -> Block:
        """Block `block_id` (1 to N), or a UsageError naming the valid ids."""
        if not 1 <= block_id <= len(self.blocks):
            raise UsageError(f"--block {block_id} does not exist: the layout has blocks 1 to {len(self.blocks)}")
        return self.blocks[block_id - 1]

    def coordinate(self, pts: np.ndarray) -> np.ndarray:
        return np.asarray(pts) @ np.asarray(self.axis)

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @staticmethod
    def load(path: Path) -> "Layout":
        doc = json.loads(Path(path).read_text())
        doc["blocks"] = [Block(**b) for b in doc["blocks"]]
        return Layout(**doc)


def up_vector(up_axis: str) -> np.ndarray:
    return np.array([0.0, 0.0, 1.0]) if up_axis == "z" else np.array([0.0, 1.0, 0.0])


def principal_axis(pts: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Unit horizontal direction of largest spread; its largest component made positive."""
    flat = pts - np.outer(pts @ up, up)
    flat = flat - flat.mean(0)
    _, vecs = np.linalg.eigh(flat.T @ flat)
    axis = vecs[:, -1] - (vecs[:, -1] @ up) * up
    axis /= np.linalg.norm(axis)
    return axis if axis[np.abs(axis).argmax()] > 0 else -axis


def block_count(requested: str | int, length: float, width: float, n_train: int) -> int:
    """`auto`: blocks about AUTO_ASPECT scene widths long, each with >= AUTO_MIN_CAMERAS cameras."""
    if requested != "auto":
        return int(requested)
    by_shape = int(round(length / max(AUTO_ASPECT * width, 1e-9)))
    return max(1, min(by_shape, n_train // AUTO_MIN_CAMERAS))


def split_scene(capture: Capture, hull: SceneHull, requested: str | int = "auto",
                overlap: float = OVERLAP) -> Layout:
    """Blocks along the principal horizontal axis of the scene points, with their cameras."""
    frames = capture.train
    up = up_vector(capture.up_axis)
    pts = hull.points(core=True)
    axis = principal_axis(pts if hull.grid is not None else np.stack([f.c2w[:3, 3] for f in frames]), up)
    s = pts @ axis
    s0, s1 = np.percentile(s, [0.2, 99.8])  # a few stray hull cells must not stretch the split
    across = np.cross(up, axis)
    width = max(np.ptp(np.percentile(pts @ across, [0.2, 99.8])), np.ptp(np.percentile(pts @ up, [0.2, 99.8])))
    n = block_count(requested, s1 - s0, width, len(frames))
    if n < 1:
        raise CaptureError(f"--blocks must be at least 1, got {n}")
    step = (s1 - s0) / n
    margin = max(overlap * step, 2 * float(hull.cell.max()) if hull.grid is not None else 0.0)
    cuts = balanced_cuts(s0, s1, n, lambda c: _slabs(c, pts, s, hull, margin, frames)[2])
    blocks, probes, _ = _slabs(cuts, pts, s, hull, margin, frames)
    _assign(blocks, probes, frames, layout_s=np.stack([f.c2w[:3, 3] for f in frames]) @ axis, cuts=cuts)
    for b, test in zip(blocks, _seen(probes, capture.test)):
        b.test_cameras = test
    return Layout(axis.tolist(), blocks, hull.lo.tolist(), hull.hi.tolist(), float(margin), str(requested),
                  len(frames))


def balanced_cuts(s0: float, s1: float, n: int, rays, rounds: int = BALANCE_ROUNDS) -> list[float]:
    """Cuts s0 < ... < s1 for n slabs whose `rays(cuts)` (per block) agree within
    BALANCE_TOLERANCE of their mean, starting from equal lengths; the best split seen is kept.

    A block's rays grow with its length (its box catches more of each photo) but not in
    proportion, so each round rescales every length by the square root of mean / own rays: a
    damped step that settles in a few rounds without overshooting."""
    lengths = np.full(n, (s1 - s0) / n)
    best, best_max = None, np.inf
    for _ in range(rounds if n > 1 else 1):
        cuts = (s0 + np.concatenate([[0.0], np.cumsum(lengths)])).tolist()
        cuts[-1] = s1
        load = np.maximum(np.asarray(rays(cuts), float), 1.0)
        if load.max() < best_max:
            best, best_max = cuts, load.max()
        if load.max() <= (1 + BALANCE_TOLERANCE) * load.mean():
            break
        lengths = np.maximum(lengths * np.sqrt(load.mean() / load), MIN_LENGTH * (s1 - s0) / n)
        lengths *= (s1 - s0) / lengths.sum()
    return best


def _slabs(cuts: list[float], pts: np.ndarray, s: np.ndarray, hull: SceneHull, margin: float,
           frames: list[Frame]) -> tuple[list[Block], list[np.ndarray], list[int]]:
    """The blocks for these cuts (cameras not yet assigned), their probe points and each one's
    estimated rays: the pixels of the cameras that see it (MIN_SHARE) whose rays cross its box."""
    n = len(cuts) - 1
    blocks, probes = [], []
    for k in range(n):
        own = [None if k == 0 else float(cuts[k]), None if k == n - 1 else float(cuts[k + 1])]
        inside = pts[in_slab(own, s, margin)]
        lo, hi = _bounds(inside, hull)
        blocks.append(Block(k + 1, lo.tolist(), hi.tolist(), own, []))  # ids count from 1, as farm tasks do
        probes.append(_probes(inside, hull, blocks[-1]))
    rays = [sum(rays_through(f, b) for f in frames if in_view(f, p).mean() >= MIN_SHARE)
            for b, p in zip(blocks, probes)]
    return blocks, probes, rays


def rays_through(frame: Frame, block: Block) -> int:
    """Pixels of `frame` (every RAY_STRIDE-th each way, scaled up) whose rays cross the block's box."""
    o, d = frame_rays(frame, RAY_STRIDE)
    lo, hi = np.asarray(block.lo), np.asarray(block.hi)
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t0, t1 = (lo - o) / d, (hi - o) / d
    near = np.maximum(np.minimum(t0, t1).max(-1), 0.0)
    far = np.maximum(t0, t1).min(-1)
    return int((far > near).sum()) * RAY_STRIDE * RAY_STRIDE


def _bounds(pts: np.ndarray, hull: SceneHull) -> tuple[np.ndarray, np.ndarray]:
    """A block's box: its points (robustly), padded by two hull cells, inside the scene region."""
    if len(pts) == 0:
        raise BoundsError("a block holds no part of the scene", hint="ask for fewer blocks (--blocks)")
    lo, hi = np.percentile(pts, 0.1, axis=0), np.percentile(pts, 99.9, axis=0)
    pad = 2 * hull.cell if hull.grid is not None else 0.0
    return np.maximum(lo - pad, hull.lo), np.minimum(hi + pad, hull.hi)


def _probes(pts: np.ndarray, hull: SceneHull, block: Block, seed: int = 0) -> np.ndarray:
    """Points that stand for the block in the frustum test: its scene points, else its box."""
    if hull.grid is None or len(pts) == 0:
        g = [np.linspace(a, b, 12) for a, b in zip(block.lo, block.hi)]
        return np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
    if len(pts) > PROBES:
        pts = pts[np.random.default_rng(seed).choice(len(pts), PROBES, replace=False)]
    return pts


def _seen(probes: list[np.ndarray], frames: list[Frame]) -> list[list[int]]:
    """Per block, the frames that see at least MIN_SHARE of its probe points."""
    shares = np.array([[in_view(f, p).mean() for f in frames] for p in probes]).reshape(len(probes), len(frames))
    return [np.flatnonzero(row >= MIN_SHARE).tolist() for row in shares]


def _assign(blocks: list[Block], probes: list[np.ndarray], frames: list[Frame], layout_s: np.ndarray,
            cuts: list[float]) -> None:
    """Cameras per block; a camera that sees no block enough joins the block it sees most (or, if
    it sees none at all, the one it stands beside), so every training photo is used."""
    shares = np.array([[in_view(f, p).mean() for f in frames] for p in probes])
    for b, row in zip(blocks, shares):
        b.cameras = np.flatnonzero(row >= MIN_SHARE).tolist()
    for i in np.flatnonzero((shares >= MIN_SHARE).sum(0) == 0):
        k = int(shares[:, i].argmax()) if shares[:, i].max() > 0 else \
            int(np.clip(np.searchsorted(cuts, layout_s[i]) - 1, 0, len(blocks) - 1))
        blocks[k].cameras = sorted(blocks[k].cameras + [int(i)])
    for b in blocks:
        if len(b.cameras) < 2:
            raise BoundsError(f"block {b.id} is seen by {len(b.cameras)} camera(s)",
                              hint="ask for fewer blocks (--blocks), or capture that part of the scene")
