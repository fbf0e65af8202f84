"""Is the camera-convergence box the whole scene? For a masked capture, check it against the masks.

train.data.camera_box assumes the cameras circle one object, and places a cube where their axes
meet. A street or a shelf walked along breaks that: the axes meet in the middle, and everything
past the cube's faces was silently left out of the field. The masks say what the scene is: if a
real share of the object pixels falls outside the cube's image in the photos, the cube does not
hold the scene, and the scene hull (blocks.scene, made for exactly such captures) gives its extent.
"""
from __future__ import annotations

import logging

import numpy as np

from ..capture.model import Frame
from ..render.rays import Box

log = logging.getLogger("nrconvert")

OUTSIDE_SHARE = 0.05  # object pixels outside the box's image above this share: the box is too small
GRID = 24  # points per axis that stand for the box when its image is drawn
MAX_FRAMES = 40  # photos checked, evenly spread


def outside_share(frames: list[Frame], masks: list[np.ndarray], box: Box, downscale: int = 1) -> float:
    """Share of the object pixels (alpha > 0.5) of up to MAX_FRAMES photos that the box's image
    does not cover. An object inside the box leaves ~0; a scene that runs past it, its share."""
    from scipy.ndimage import binary_dilation

    from ..blocks.scene import project

    g = (np.arange(GRID) + 0.5) / GRID
    pts = box.from_unit(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3))
    cell = float(box.size.max()) / GRID
    pick = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_FRAMES)).astype(int))
    outside = total = 0
    for i in pick:
        fg = masks[i] > 0.5
        h, w = fg.shape
        u, v, z = project(frames[i], pts, downscale)
        ok = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        covered = np.zeros((h, w), bool)
        covered[v[ok].astype(int), u[ok].astype(int)] = True
        if ok.any():  # the points stand for their cells: grow by a cell's footprint at the nearest depth
            pad = int(np.ceil(cell * frames[i].fx / downscale / max(float(z[ok].min()), 1e-6))) + 1
            covered = binary_dilation(covered, iterations=min(pad, max(h, w)))
        total += int(fg.sum())
        outside += int((fg & ~covered).sum())
    return outside / max(total, 1)


def scene_box(frames: list[Frame], masks: list[np.ndarray], res: int, downscale: int, share: float
              ) -> tuple[Box, np.ndarray]:
    """The cube over the scene hull's extent (its core parts, strays dropped) and the occupancy
    prior at `res`^3 within the scene hull, for a scene the cameras' meeting point does not hold;
    says so, since one field over a long scene spreads its detail thin.

    The prior must be the scene hull's cells, not a visual hull over the cube: a cube around a
    street reaches far above, below and behind it, where no camera looks, and a visual hull keeps
    what no camera sees, which the field would start as solid and never carve (blocks.train)."""
    from ..blocks.scene import build_scene_hull
    from ..blocks.train import block_prior
    from .data import cube

    hull = build_scene_hull(frames)
    pts = hull.points(core=True)
    lo, hi = pts.min(0) - hull.cell, pts.max(0) + hull.cell
    log.warning("%.0f %% of the object pixels lie outside the region the cameras converge on: one field "
                "over the whole scene (%s); for scenes walked along, --blocks auto keeps more detail",
                100 * share, " x ".join(f"{s:.3g}" for s in hi - lo))
    box = cube(Box(lo, hi))
    return box, block_prior(frames, masks, hull, box, res, downscale)
