"""A block's training rays, cube and occupancy prior (the `prepare` hook of stages.train_stage).

With masks, every pixel of the block's photos is labelled (blocks.labels): IGNORE rays are left
out, EMPTY rays keep their colour but get alpha 0 (the block must be transparent along them), KEEP
rays are used as they are. Rays are filtered photo by photo, so the block never holds the rays it
drops: that, and the smaller share of each photo that meets the block, is where the memory of a
block goes down. The occupancy prior is the visual hull of the block's cube carved by those same
labels: IGNORE pixels count as object (they must not carve what an occluder hid), EMPTY as empty.
Without masks the block trains on all its photos' pixels, the background model explaining what
lies outside its cube.
"""
from __future__ import annotations

import numpy as np
import torch

from ..capture.model import Frame
from ..config import Config
from ..render.rays import Box, frame_rays
from ..train.data import RayData, cube, load_rays, visual_hull
from .labels import EMPTY, IGNORE, frame_labels
from .scene import SceneHull


def block_training_data(frames: list[Frame], hull: SceneHull, box: Box, cfg: Config
                        ) -> tuple[RayData, Box, np.ndarray | None]:
    """(rays, the block's cube, its occupancy prior at cfg.occupancy_res or None)."""
    cube_box = cube(box)
    if hull.grid is None:
        return load_rays(frames, cfg.downscale), cube_box, None
    parts: list[tuple[np.ndarray, ...]] = []
    carve_masks = []
    for f in frames:
        lab, rgb, alpha = frame_labels(f, hull, box, cfg.downscale)
        o, d = frame_rays(f, cfg.downscale)
        a = np.where(lab == EMPTY, 0.0, alpha).astype(np.float32)
        keep = lab != IGNORE
        parts.append((o[keep], d[keep], rgb[keep], a[keep]))
        carve_masks.append(np.where(lab == IGNORE, 1.0, a).astype(np.float32))
    o, d, rgb, a = (torch.from_numpy(np.concatenate([p[i] for p in parts])) for i in range(4))
    data = RayData(o, d, rgb, a, None)
    prior = visual_hull(frames, carve_masks, cube_box, cfg.occupancy_res, cfg.downscale)
    return data, cube_box, prior & scene_cells(hull, cube_box, cfg.occupancy_res)


def scene_cells(hull: SceneHull, box: Box, res: int) -> np.ndarray:
    """Cells of the block's cube (res^3) whose centre the scene hull holds, the hull grown by half a
    cube cell plus one hull cell (so a cube cell the hull only partly covers stays).

    The cube reaches far past the scene above, below and beside it; the block's own cameras never
    see most of that, and a visual hull keeps what no camera sees, which the field would then
    start as solid and nothing would ever carve. The scene hull only holds what two cameras saw."""
    from scipy.ndimage import binary_dilation

    reach = 0.5 * float(box.size.max()) / res / float(hull.cell.min())
    grown = binary_dilation(hull.grid, iterations=int(np.ceil(reach)) + 1)
    g = (np.arange(res) + 0.5) / res
    pts = box.from_unit(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3))
    idx = np.floor((pts - hull.lo) / hull.cell).astype(np.int64)
    shape = np.asarray(hull.grid.shape)
    ok = ((idx >= 0) & (idx < shape)).all(1)
    idx = np.clip(idx, 0, shape - 1)
    return (ok & grown[idx[:, 0], idx[:, 1], idx[:, 2]]).reshape(res, res, res)
