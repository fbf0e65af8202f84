"""The whole scene's extent before any field exists: a coarse visual hull over every camera.

Why not the single-object box (train.data.object_box): it assumes every camera looks at one point,
which a street walked along breaks. Here each camera gets its own look point (where its axis
passes closest to its neighbours' axes), the look points bound a generous region, and the masks
carve it: a cell stays if at least two cameras see it and every camera that sees it sees the object
there. The hull is anisotropic (a long street gets many cells along its length, few across), and it
is what the block split partitions, what tells each camera which block it sees, and what tells each
pixel of a block's camera whether that block explains it (blocks.labels).

Without masks nothing can be carved: the region of the look points stands in for the scene, and the
split works on its extent alone (docs/design.md, "Blocks").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, label

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..errors import BoundsError, os_error

HULL_CELLS = 1_500_000  # cells of the carved grid (a 200-image capture carves it in seconds)
MASK_LONG_SIDE = 400  # masks are carved at about this size: the hull is coarse anyway
MIN_VIEWS = 2  # a cell seen by fewer cameras is not evidence of anything
# ... nor one seen only along nearly the same direction: cones from one side never close behind the
# object (triangulation angle, as in SfM); the views' directions must spread over this angle
MIN_PARALLAX_DEG = 10.0
CORE_SHARE = 0.01  # hull parts below this share of its cells are strays to the block bounds


@dataclass
class SceneHull:
    """Axis-aligned region of the scene (capture frame) and its carved occupancy, if masked."""

    lo: np.ndarray  # (3,)
    hi: np.ndarray  # (3,)
    grid: np.ndarray | None  # (nx, ny, nz) bool, or None for captures without masks

    @property
    def cell(self) -> np.ndarray:
        shape = self.grid.shape if self.grid is not None else (1, 1, 1)
        return (self.hi - self.lo) / np.asarray(shape)

    def points(self, max_points: int = 200_000, seed: int = 0, core: bool = False) -> np.ndarray:
        """Centres of the occupied cells (a grid over the region without masks), subsampled.

        `core`: only connected parts holding >= CORE_SHARE of the hull. The few cameras at a path's
        ends leave small stray blobs far out, which must not stretch the blocks' bounds."""
        if self.grid is None:
            g = [np.linspace(a, b, 24) for a, b in zip(self.lo, self.hi)]
            return np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
        idx = np.argwhere(self._core() if core else self.grid)
        if len(idx) > max_points:
            idx = idx[np.random.default_rng(seed).choice(len(idx), max_points, replace=False)]
        return self.lo + (idx + 0.5) * self.cell

    def _core(self) -> np.ndarray:
        labels, n = label(self.grid)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        big = sizes >= CORE_SHARE * sizes[1:].sum()
        big[0] = False
        return big[labels]

    def save(self, path: Path) -> None:
        from ..checkpoint import atomic_path

        tmp = atomic_path(path).with_suffix(".npz")
        grid = self.grid if self.grid is not None else np.zeros((0, 0, 0), bool)
        try:
            np.savez_compressed(tmp, lo=self.lo, hi=self.hi, grid=grid)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_error(exc, str(path), "the scene hull") from exc

    @staticmethod
    def load(path: Path) -> "SceneHull":
        with np.load(path) as z:
            grid = z["grid"]
            return SceneHull(z["lo"], z["hi"], grid if grid.size else None)


def project(frame: Frame, pts: np.ndarray, downscale: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) and depth z of capture-frame points in a photo (OpenGL camera)."""
    w2c = np.linalg.inv(frame.c2w)
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = -pc[:, 2]
    safe = np.maximum(z, 1e-6)
    u = (pc[:, 0] / safe * frame.fx + frame.cx) / downscale
    v = (-pc[:, 1] / safe * frame.fy + frame.cy) / downscale
    return u, v, z


def in_view(frame: Frame, pts: np.ndarray) -> np.ndarray:
    u, v, z = project(frame, pts)
    return (z > 0) & (u >= 0) & (u < frame.width) & (v >= 0) & (v < frame.height)


def look_points(frames: list[Frame], masks: list[np.ndarray] | None = None, scale: int = 1,
                min_angle_deg: float = 10.0) -> np.ndarray:
    """Per camera, where its axis meets other cameras' axes (N, 3): the median of the closest points
    with every camera whose axis crosses it at >= `min_angle_deg`, in front of both, and (with
    masks) on the object in both photos. Near-parallel axes meet far away or nowhere, so they are
    never paired; a camera left without a pair gets the median depth of the others."""
    c = np.stack([f.c2w[:3, 3] for f in frames])
    v = np.stack([-f.c2w[:3, 2] for f in frames])
    out, depth = np.full_like(c, np.nan), np.full(len(c), np.nan)
    for i in range(len(c)):
        mids = _meeting_points(c, v, i, min_angle_deg)
        if masks is not None and len(mids):
            mids = mids[_on_object(frames[i], masks[i], mids[:, :3], scale) & mids[:, 3].astype(bool)]
        if len(mids):
            out[i] = np.median(mids[:, :3], axis=0)
            depth[i] = float(np.dot(out[i] - c[i], v[i]))
    if np.isnan(depth).all():
        raise BoundsError("cannot place the scene: no two camera axes meet in front of the cameras",
                          hint="check the poses: the cameras must look at shared parts of the scene")
    fill = np.isnan(depth)
    out[fill] = c[fill] + v[fill] * np.nanmedian(depth)
    return out


def _meeting_points(c: np.ndarray, v: np.ndarray, i: int, min_angle_deg: float) -> np.ndarray:
    """Midpoints of the closest approach of axis i with every other axis crossing it steeply
    enough, in front of both cameras: (M, 4) = xyz + the other camera's index."""
    w = c[i] - c
    b, d, f = v @ v[i], v[i] @ w.T, (v * w).sum(1)
    den = 1.0 - b * b
    ok = den > np.sin(np.radians(min_angle_deg)) ** 2
    den = np.where(ok, den, 1.0)
    t1, t2 = (b * f - d) / den, (f - b * d) / den
    ok &= (t1 > 0) & (t2 > 0)
    ok[i] = False
    mid = (c[i] + t1[:, None] * v[i] + c + t2[:, None] * v) / 2
    return np.concatenate([mid[ok], np.flatnonzero(ok)[:, None]], 1)


def _on_object(frame: Frame, mask: np.ndarray, pts: np.ndarray, scale: int) -> np.ndarray:
    h, w = mask.shape
    u, v, z = project(frame, pts, scale)
    inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return inside & mask[np.clip(v.astype(int), 0, h - 1), np.clip(u.astype(int), 0, w - 1)]


def build_scene_hull(frames: list[Frame], bounds: np.ndarray | None = None) -> SceneHull:
    """The scene region and, with masks, its carved hull (coarse pass, then a tight one)."""
    masks, scale = _masks(frames)
    if bounds is not None:
        lo, hi = np.asarray(bounds[0], float), np.asarray(bounds[1], float)
    else:
        look = look_points(frames, masks, scale)
        reach = 0.5 * np.median(np.linalg.norm(look - np.stack([f.c2w[:3, 3] for f in frames]), axis=1))
        lo, hi = look.min(0) - reach, look.max(0) + reach
    if masks is None:
        return SceneHull(lo, hi, None)
    grid = carve(frames, masks, scale, lo, hi, cells=HULL_CELLS // 10)  # coarse, to find the scene
    idx = np.argwhere(grid)
    if len(idx) == 0:
        raise BoundsError("the masks leave no part of the scene that two cameras see as object",
                          hint="check the masks (alpha) and that the photos overlap")
    cell = (hi - lo) / np.asarray(grid.shape)
    lo, hi = lo + (idx.min(0) - 2) * cell, lo + (idx.max(0) + 3) * cell
    return SceneHull(lo, hi, carve(frames, masks, scale, lo, hi))


def _masks(frames: list[Frame]) -> tuple[list[np.ndarray] | None, int]:
    long_side = max(max(f.width, f.height) for f in frames)
    scale = max(1, long_side // MASK_LONG_SIDE)
    masks = []
    for f in frames:
        _, alpha = load_frame_image(f, scale)
        if alpha is None:
            return None, scale
        masks.append(alpha > 0.5)
    return masks, scale


def grid_shape(lo: np.ndarray, hi: np.ndarray, cells: int = HULL_CELLS) -> tuple[int, int, int]:
    """Cubic cells, about `cells` of them, at least 4 along any axis."""
    size = np.maximum(hi - lo, 1e-9)
    edge = (np.prod(size) / cells) ** (1 / 3)
    return tuple(int(max(4, np.ceil(s / edge))) for s in size)


def carve(frames: list[Frame], masks: list[np.ndarray], scale: int, lo: np.ndarray, hi: np.ndarray,
          cells: int = HULL_CELLS, min_views: int = MIN_VIEWS) -> np.ndarray:
    """Cells that >= `min_views` cameras see from directions at least MIN_PARALLAX_DEG apart and
    every one of them sees as (dilated) foreground.

    The spread is measured by the mean of the unit view directions: n views at angle a to each
    other average to length cos(a / 2), so a long mean means they all look the same way."""
    shape = grid_shape(lo, hi, cells)
    cell = (hi - lo) / np.asarray(shape)
    axes = [lo[a] + (np.arange(shape[a]) + 0.5) * cell[a] for a in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    views = np.zeros(len(pts), np.int32)
    dirs = np.zeros((len(pts), 3), np.float32)
    keep = np.ones(len(pts), bool)
    for f, m in zip(frames, masks):
        h, w = m.shape
        u, v, z = project(f, pts, scale)
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        pad = int(np.ceil(cell.max() * f.fx / scale / max(float(np.median(z[inside])) if inside.any() else 1.0,
                                                          1e-6))) + 1
        fg = binary_dilation(m, iterations=pad)
        ui = np.clip(u.astype(int), 0, w - 1)
        vi = np.clip(v.astype(int), 0, h - 1)
        views += inside
        ray = (pts[inside] - f.c2w[:3, 3]).astype(np.float32)
        dirs[inside] += ray / np.linalg.norm(ray, axis=1, keepdims=True)
        keep &= ~inside | fg[vi, ui]
    spread = np.linalg.norm(dirs, axis=1) < np.cos(np.radians(MIN_PARALLAX_DEG) / 2) * np.maximum(views, 1)
    return (keep & (views >= min_views) & spread).reshape(shape)
