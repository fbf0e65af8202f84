"""Training pixels as flat ray tensors, and the object box estimated from the cameras (and masks)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..errors import BoundsError, CaptureError
from ..render.rays import Box, frame_rays
from .extent import OUTSIDE_SHARE, outside_share, scene_box


@dataclass
class RayData:
    origins: torch.Tensor  # (N, 3)
    dirs: torch.Tensor  # (N, 3)
    rgb: torch.Tensor  # (N, 3) sRGB in [0, 1]
    alpha: torch.Tensor | None  # (N,) or None for opaque-background photos
    masks: list[np.ndarray] | None = None  # per-frame (H, W) alpha, reused by the visual hull
    sure: torch.Tensor | None = None  # (N,) bool, opaque photos: rays surely on the object (train.matting)

    def to(self, device: torch.device) -> "RayData":
        alpha = None if self.alpha is None else self.alpha.to(device)
        sure = None if self.sure is None else self.sure.to(device)
        return RayData(self.origins.to(device), self.dirs.to(device), self.rgb.to(device), alpha, self.masks, sure)


def sure_state(sure: torch.Tensor | None) -> dict:
    """The sure-ray mask as checkpoint entries (packed bits): a resumed run skips the opaque first
    fit that found them, and without them its loss would lose the sure-object term."""
    if sure is None:
        return {}
    return {"sure": torch.from_numpy(np.packbits(sure.numpy())), "sure_rays": len(sure)}


def restore_sure(data: RayData, state: dict | None) -> RayData:
    """`data` with the checkpoint's sure rays, when it has them for exactly these rays."""
    if data.sure is not None or not state or "sure" not in state or int(state["sure_rays"]) != len(data.rgb):
        return data
    bits = np.unpackbits(state["sure"].numpy(), count=int(state["sure_rays"])).astype(bool)
    return RayData(data.origins, data.dirs, data.rgb, data.alpha, data.masks, torch.from_numpy(bits))


@dataclass
class TrainingStart:
    """What the main fit starts from: its rays, its cube, the occupancy prior (None: a sphere) and
    the seconds of training already spent on the way (the opaque first fit), which count in the
    time budget."""

    data: RayData
    box: Box
    hull: np.ndarray | None
    spent_s: float = 0.0


def load_rays(frames: list[Frame], downscale: int = 1) -> RayData:
    os_, ds, cs, als = [], [], [], []
    for f in frames:
        rgb, alpha = load_frame_image(f, downscale)
        o, d = frame_rays(f, downscale)
        if rgb.shape[:2] != o.shape[:2]:
            raise CaptureError(f"image is {rgb.shape[1]}x{rgb.shape[0]}, camera says "
                               f"{o.shape[1]}x{o.shape[0]}", path=str(f.image_path))
        os_.append(o.reshape(-1, 3)); ds.append(d.reshape(-1, 3)); cs.append(rgb.reshape(-1, 3))
        als.append(alpha)
    masked = all(a is not None for a in als)
    return RayData(torch.from_numpy(np.concatenate(os_)), torch.from_numpy(np.concatenate(ds)),
                   torch.from_numpy(np.concatenate(cs)),
                   torch.from_numpy(np.concatenate([a.reshape(-1) for a in als])) if masked else None,
                   als if masked else None)


def camera_box(frames: list[Frame]) -> Box:
    """A cube around the point all cameras look at, as large as the narrowest view allows."""
    centres = np.stack([f.c2w[:3, 3] for f in frames])
    axes = np.stack([-f.c2w[:3, 2] for f in frames])
    a = np.zeros((3, 3)); b = np.zeros(3)
    for c, v in zip(centres, axes):
        p = np.eye(3) - np.outer(v, v)
        a += p; b += p @ c
    target = np.linalg.lstsq(a, b, rcond=None)[0]
    spread = np.linalg.eigvalsh(a / len(frames))[0]  # ~0 when every camera looks the same way
    dist = np.median(np.linalg.norm(centres - target, axis=1))
    half_fov = min(min(np.arctan(f.width / 2 / f.fx), np.arctan(f.height / 2 / f.fy)) for f in frames)
    half = 0.95 * dist * np.tan(half_fov)
    if not np.isfinite(half) or half <= 0 or spread < 1e-4:
        raise BoundsError("cannot place the object: the camera axes do not converge on a common point",
                          hint="check the poses (all cameras in one spot, or looking in parallel?); "
                          "the photos must circle or face the object from several sides")
    return Box(target - half, target + half)


def visual_hull(frames: list[Frame], masks: list[np.ndarray], box: Box, res: int, downscale: int = 1,
                votes: int = 1, share: float = 0.0, skip_decided: bool = True) -> np.ndarray:
    """Cells of the box (res^3 bool) that fewer than `votes` masks see as background, or fewer
    than `share` of the masks that see them at all: with the defaults, every mask sees them as
    foreground (or cannot see them at all).

    `masks` are the frames' alphas as loaded at 1/`downscale` resolution (RayData.masks). Why
    votes: estimated masks (train.matting) can be wrong on a few pixels, and one wrong pixel
    would carve the object in a plain hull.
    """
    g = (np.arange(res) + 0.5) / res
    pts = box.from_unit(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3))
    carved = np.zeros(len(pts), dtype=np.int32)
    seen = np.zeros(len(pts), dtype=np.int32)
    cell = float(box.size.max()) / res
    # a cell carved `votes` times, and by `share` of all the views (as many as could ever see it),
    # is out whatever later views say: later views project only the open cells (a few per cent
    # after a dozen views of a masked capture; 2.7 vs 11 s for 100 masks at 128^3)
    decided = max(votes, int(np.ceil(share * len(frames)))) if skip_decided else len(frames) + 1
    todo = np.arange(len(pts))
    for f, alpha in zip(frames, masks):
        todo = todo[carved[todo] < decided]
        h, w = alpha.shape
        w2c = np.linalg.inv(f.c2w)
        pc = pts[todo] @ w2c[:3, :3].T + w2c[:3, 3]
        z = -pc[:, 2]
        fx, fy = f.fx / downscale, f.fy / downscale
        u = (pc[:, 0] / np.maximum(z, 1e-6)) * fx + f.cx / downscale
        v = (-pc[:, 1] / np.maximum(z, 1e-6)) * fy + f.cy / downscale
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        # a cell is carved only if its whole footprint is background: dilate the mask by it
        # (at the box centre's depth: the median cell's, and the same whichever cells are left)
        depth = -(w2c[2, :3] @ ((box.lo + box.hi) / 2) + w2c[2, 3])
        pad = int(np.ceil(cell * fx / max(depth, 1e-6))) + 1
        fg = _dilate(alpha > 0.5, pad)
        ui = np.clip(u.astype(int), 0, w - 1); vi = np.clip(v.astype(int), 0, h - 1)
        carved[todo] += inside & ~fg[vi, ui]
        seen[todo] += inside
    return ((carved < votes) | (carved < share * seen)).reshape(res, res, res)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation
    return binary_dilation(mask, iterations=r) if r > 0 else mask


def hull_box(hull: np.ndarray, box: Box, margin_cells: int = 2) -> Box:
    """Tight box around the occupied cells, with a margin."""
    idx = np.argwhere(hull)
    if len(idx) == 0:
        raise BoundsError("the masks leave no foreground in front of every camera",
                           hint="check that the alpha channel / masks mark the object, not the background")
    res = hull.shape[0]
    lo = box.from_unit(np.maximum(idx.min(0) - margin_cells, 0) / res)
    hi = box.from_unit(np.minimum(idx.max(0) + 1 + margin_cells, res) / res)
    return Box(lo, hi)


def cube(box: Box) -> Box:
    """The smallest cube around `box`: an SDF must see the same scale along every axis."""
    centre, half = (box.lo + box.hi) / 2, float(box.size.max()) / 2
    return Box(centre - half, centre + half)


def object_box(frames: list[Frame], data: RayData, res: int, downscale: int = 1) -> tuple[Box, np.ndarray | None]:
    """The object's cube and its visual hull at `res`^3: carved from the masks when there are
    masks, else the cube the camera layout allows (no hull). Where the masks show the scene runs
    past that cube (a street walked along), the scene hull's extent instead (train.extent)."""
    box = camera_box(frames)
    if data.masks is None:
        return cube(box), None
    share = outside_share(frames, data.masks, box, downscale)
    if share > OUTSIDE_SHARE:
        return scene_box(frames, data.masks, res, downscale, share)
    coarse = visual_hull(frames, data.masks, box, 64, downscale)
    box = cube(hull_box(coarse, box))
    return box, visual_hull(frames, data.masks, box, res, downscale)
