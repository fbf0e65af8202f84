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
from scipy.ndimage import binary_dilation

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..config import Config
from ..render.rays import Box, frame_rays
from ..train.data import RayData, cube, load_rays
from .labels import EMPTY, IGNORE, KEEP, frame_labels
from .scene import SceneHull, project


def block_training_data(frames: list[Frame], hull: SceneHull, box: Box, cfg: Config
                        ) -> tuple[RayData, Box, np.ndarray | None]:
    """(rays, the block's cube, its occupancy prior at cfg.occupancy_res or None)."""
    cube_box = cube(box)
    if hull.grid is None:
        return load_rays(frames, cfg.downscale), cube_box, None
    labels, carve_masks = [], []
    for f in frames:  # pass 1: labels only, so the rays can be stored once, without a concatenation
        lab, _, alpha = frame_labels(f, hull, box, cfg.downscale)
        labels.append(lab)
        carve_masks.append((lab == IGNORE) | ((lab == KEEP) & (alpha > 0.5)))
    data = _kept_rays(frames, labels, cfg.downscale)
    return data, cube_box, block_prior(frames, carve_masks, hull, cube_box, cfg.occupancy_res, cfg.downscale)


def _kept_rays(frames: list[Frame], labels: list[np.ndarray], downscale: int) -> RayData:
    """Pass 2: the kept rays written straight into their final tensors (EMPTY ones with alpha 0)."""
    n = sum(int((lab != IGNORE).sum()) for lab in labels)
    o, d, rgb = (torch.empty(n, 3) for _ in range(3))
    a = torch.empty(n)
    at = 0
    for f, lab in zip(frames, labels):
        rgb_f, alpha_f = load_frame_image(f, downscale)
        o_f, d_f = frame_rays(f, downscale)
        keep = lab != IGNORE
        k = int(keep.sum())
        o[at:at + k] = torch.from_numpy(o_f[keep])
        d[at:at + k] = torch.from_numpy(d_f[keep])
        rgb[at:at + k] = torch.from_numpy(rgb_f[keep])
        a[at:at + k] = torch.from_numpy(np.where(lab == EMPTY, 0.0, alpha_f)[keep].astype(np.float32))
        at += k
    return RayData(o, d, rgb, a, None)


def block_prior(frames: list[Frame], masks: list[np.ndarray], hull: SceneHull, box: Box, res: int,
                downscale: int) -> np.ndarray:
    """The block's visual hull (res^3 over its cube) within the scene hull: cells of `scene_cells`
    that no camera sees as background (as train.data.visual_hull, a cell is carved only if its
    whole footprint is background). Only the scene hull's cells are projected, a few per cent of
    the cube, so this costs megabytes where carving the whole cube cost hundreds."""
    cells = np.argwhere(scene_cells(hull, box, res))
    pts = box.from_unit((cells + 0.5) / res).astype(np.float32)
    keep = np.ones(len(cells), bool)
    cell = float(box.size.max()) / res
    for f, mask in zip(frames, masks):
        h, w = mask.shape
        u, v, z = project(f, pts, downscale)
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        if not inside.any():
            continue
        pad = int(np.ceil(cell * f.fx / downscale / max(float(np.median(z[inside])), 1e-6))) + 1
        fg = binary_dilation(mask > 0.5, iterations=pad)
        keep &= ~inside | fg[np.clip(v.astype(int), 0, h - 1), np.clip(u.astype(int), 0, w - 1)]
    out = np.zeros((res, res, res), bool)
    out[tuple(cells[keep].T)] = True
    return out


def scene_cells(hull: SceneHull, box: Box, res: int) -> np.ndarray:
    """Cells of the block's cube (res^3) whose centre the scene hull holds, the hull grown by half a
    cube cell plus one hull cell (so a cube cell the hull only partly covers stays).

    The cube reaches far past the scene above, below and beside it; the block's own cameras never
    see most of that, and a visual hull keeps what no camera sees, which the field would then
    start as solid and nothing would ever carve. The scene hull only holds what two cameras saw.
    Both grids are axis-aligned, so the lookup is separable per axis."""
    reach = 0.5 * float(box.size.max()) / res / float(hull.cell.min())
    grown = binary_dilation(hull.grid, iterations=int(np.ceil(reach)) + 1)
    centres = box.lo[:, None] + (np.arange(res) + 0.5)[None, :] / res * box.size[:, None]  # (3, res)
    idx = np.floor((centres - hull.lo[:, None]) / hull.cell[:, None]).astype(np.int64)
    shape = np.asarray(hull.grid.shape)[:, None]
    ok = (idx >= 0) & (idx < shape)
    idx = np.clip(idx, 0, shape - 1)
    inside = ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :]
    return inside & grown[np.ix_(idx[0], idx[1], idx[2])]
