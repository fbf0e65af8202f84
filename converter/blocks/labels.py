"""Which pixels of a block's photos the block's field must explain, and how.

A block's cameras also see the rest of the street. With masks, the scene hull (blocks.scene) says
where along each pixel's ray the first possible surface lies, and so which of three cases it is:

  KEEP    the ray's first hull crossing is inside the block's cube and its hull run ends there
          (or the pixel is background): the block explains the pixel as it is;
  EMPTY   an object pixel whose first hull crossing lies beyond the cube: the hull contains every
          surface, so the ray crosses the block empty and the block must render it transparent;
  IGNORE  the ray misses the cube, meets the hull before the cube (an occluder outside the block),
          or its hull run leaves the cube (the surface may be inside or beyond): not evidence.

Training uses all three (blocks.train); baking, distillation and metrics read the photos through
`Frame.mask_path`, so each block's frames get a mask that is 1 exactly on KEEP pixels: the fits
then never see an occluder that belongs to another block. Without masks there is no hull: every
ray is kept and the background model explains what lies outside the block (docs/design.md).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..capture.images import frame_distortion, load_frame_image, read_mask
from ..capture.model import Frame
from ..capture.undistort import distort_image
from ..errors import os_error
from ..kernels.march import march_rays
from ..render.rays import Box, frame_rays, intersect_box
from .scene import SceneHull

IGNORE, KEEP, EMPTY = 0, 1, 2
OBJECT_ALPHA = 0.02  # below: a background pixel, which says "empty" along the whole ray


@torch.no_grad()
def ray_labels(o: np.ndarray, d: np.ndarray, alpha: np.ndarray, hull: SceneHull, box: Box) -> np.ndarray:
    """KEEP / EMPTY / IGNORE per ray (uint8), for rays (N, 3) with photo alpha (N,)."""
    cell = float(hull.cell.min())
    ot, dt = torch.from_numpy(np.ascontiguousarray(o)), torch.from_numpy(np.ascontiguousarray(d))
    enter, leave = (x.numpy() for x in intersect_box(ot, dt, box))
    lab = np.full(len(o), IGNORE, np.uint8)
    hits_box = leave > enter
    background = alpha < OBJECT_ALPHA
    lab[hits_box & background] = KEEP
    obj = np.flatnonzero(hits_box & ~background)
    if len(obj) == 0:
        return lab
    first = _first_hull_hit(hull, ot[obj], dt[obj], torch.from_numpy(leave[obj] + cell), cell)
    lab[obj[first > leave[obj] + 0.5 * cell]] = EMPTY  # no surface along the ray inside the box
    exit_pt = o[obj] + d[obj] * np.maximum(leave[obj] - 0.5 * cell, 0)[:, None]
    inside = (first >= enter[obj] - cell) & (first <= leave[obj] + 0.5 * cell) & ~_occupied(hull, exit_pt)
    lab[obj[inside]] = KEEP
    return lab


def _first_hull_hit(hull: SceneHull, o: torch.Tensor, d: torch.Tensor, until: torch.Tensor,
                    cell: float) -> np.ndarray:
    """Distance to the first occupied hull cell along each ray, marched no further than `until`
    (inf where there is none): only the runs before and inside the block are ever walked."""
    hbox = Box(hull.lo, hull.hi)
    near, far = intersect_box(o, d, hbox)
    far = torch.minimum(far, until.to(far.dtype))
    step = 0.5 * cell
    t, offsets = march_rays(o, d, near, far, torch.from_numpy(hull.grid), hull.lo, hull.hi, step,
                            int(hbox.diagonal / step) + 2, 0.5)
    first = np.full(len(o), np.inf, np.float32)
    has = offsets[1:] > offsets[:-1]
    if bool(has.any()):
        first[has.numpy()] = t[offsets[:-1][has]].numpy()
    return first


def _occupied(hull: SceneHull, pts: np.ndarray) -> np.ndarray:
    idx = np.floor((pts - hull.lo) / hull.cell).astype(np.int64)
    shape = np.asarray(hull.grid.shape)
    ok = ((idx >= 0) & (idx < shape)).all(1)
    idx = np.clip(idx, 0, shape - 1)
    return ok & hull.grid[idx[:, 0], idx[:, 1], idx[:, 2]]


def frame_labels(frame: Frame, hull: SceneHull, box: Box, downscale: int = 1
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels (H, W), rgb, alpha) of a photo at 1/`downscale`; labels are all KEEP without masks."""
    rgb, alpha = load_frame_image(frame, downscale)
    if alpha is None or hull.grid is None:
        return np.full(rgb.shape[:2], KEEP, np.uint8), rgb, alpha
    o, d = frame_rays(frame, downscale)
    lab = ray_labels(o.reshape(-1, 3), d.reshape(-1, 3), alpha.reshape(-1), hull, box)
    return lab.reshape(alpha.shape), rgb, alpha


def block_frames(frames: list[Frame], indices: list[int], hull: SceneHull, box: Box,
                 folder: Path) -> list[Frame]:
    """The block's view of its photos: each frame with a mask that is 1 on its KEEP pixels (the
    photo's own mask multiplied in), written once into `folder` (WORK/block_NN/masks/)."""
    out = []
    for i in indices:
        f = frames[i]
        if hull.grid is None:
            out.append(f)
            continue
        path = folder / f"{f.split}_{i:05d}.png"
        if not path.exists():
            _write_mask(path, _keep_mask(f, hull, box))
        out.append(dataclasses.replace(f, mask_path=path))
    return out


def _keep_mask(frame: Frame, hull: SceneHull, box: Box) -> np.ndarray:
    """1 on KEEP pixels, in the photo's own (distorted) pixels, times the photo's own mask: the
    loader undistorts a mask file and multiplies it with the image's alpha, as it does any mask."""
    lab, _, _ = frame_labels(frame, hull, box)
    keep = (lab == KEEP).astype(np.float32)
    lens = frame_distortion(frame)
    if lens is not None and not lens.is_identity():
        keep = np.clip(distort_image(keep, frame.intrinsics(), lens), 0.0, 1.0)
    if frame.mask_path is not None:  # the block's mask replaces the photo's own: multiply it in
        keep *= read_mask(frame.mask_path)
    return keep


def _write_mask(path: Path, keep: np.ndarray) -> None:
    from ..checkpoint import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        Image.fromarray((keep * 255 + 0.5).astype(np.uint8), "L").save(tmp, format="PNG")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, str(path), "a block mask") from exc
