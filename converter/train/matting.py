"""A visual hull for photos without masks, from masks estimated by a short first fit.

Why: with masks the SDF starts from the visual hull in a cube fitted to it; without them it
started from a sphere in the cube the camera layout allows (~1.6x the object on the synth
captures, so 1.6x less hash-grid resolution on it), and thin parts (ears, handles) had to grow out
of the sphere through a narrow occupancy band, which they mostly did not (docs/design.md, "Opaque
backgrounds"). A short fit of the usual model (SDF + direction-only background) already separates
the two: a pixel is foreground where the field is opaque or where the photo departs from the
background model held to its coarse levels, which can only hold what many views agree on.

Why votes: estimated masks are wrong on a few pixels (an object colour that matches the
background behind it), and in a plain visual hull one such pixel carves the object. A cell is
carved only where several views see it as background; pixels wrongly called foreground
(textured background the coarse model cannot hold) only leave the hull larger, never cut it.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..config import Config
from ..kernels import backend
from ..render.rays import Box, frame_rays
from ..render.volume import render_chunked
from .data import RayData, TrainingStart, cube, hull_box, object_box, visual_hull

log = logging.getLogger("nrconvert")

MAX_FRAMES = 60  # photos whose masks are estimated, evenly spread
THRESHOLD = 0.15  # sRGB difference from the background model above which a pixel is foreground
VOTES = 3  # views that must see a cell as background to carve it
VOTE_SHARE = 0.2  # ... and this share of the views that see it
EXTRA_LEVELS = 2  # background levels above the coarse ones used for the residual
MIN_PART = 0.05  # hull parts smaller than this share of the largest are dropped
MASK_SIDE = 100  # estimated masks' short side, at least (photos are rendered at a downscale to it)
PROBE_MAX_STEPS = 300  # the first fit's steps, at most
PROBE_LOG2_TABLE = 16  # ... its hash table (2^16 entries) and finest level (512): a hull at
PROBE_MAX_RESOLUTION = 512  # occupancy_res (128^3) and 100 px masks need no finer field
PROBE_MARCH_STEPS = 256
SURE_ERODE_PX = 3  # photo pixels (at the training resolution) the first fit's opaque region is eroded by
SURE_CELLS = 3  # hull cells a ray must cross to be surely on the object (at occupancy_res)


def estimated_masks(tf, frames: list[Frame], downscale: int, bg_levels: int
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(H, W) float masks at 1/`downscale`: field opacity > 0.5, or colour the background model
    (at `bg_levels` levels) does not explain; and (H, W) bool, the field's opacity > 0.5 alone."""
    dev = tf.field.log_beta.device
    tf.background.set_active_levels(bg_levels)
    masks, opaque = [], []
    for f in frames:
        rgb, _ = load_frame_image(f, downscale)
        o, d = frame_rays(f, downscale)
        h, w = rgb.shape[:2]
        o_t, d_t = (torch.from_numpy(a.reshape(-1, 3)).to(dev) for a in (o, d))
        opacity = render_chunked(tf.field, tf.occupancy, o_t, d_t, tf.box, tf.dt).opacity
        with torch.no_grad():
            bg = torch.cat([tf.background(c) for c in d_t.split(1 << 16)])
        resid = np.abs(gaussian_filter(rgb, (1, 1, 0)) - bg.reshape(h, w, 3).cpu().numpy()).max(-1)
        opaque.append(opacity.reshape(h, w).cpu().numpy() > 0.5)
        masks.append((opaque[-1] | (resid > THRESHOLD)).astype(np.float32))
    tf.background.set_active_levels(tf.background.levels)
    return masks, opaque


def starting_shape(cfg: Config, frames: list[Frame], data: RayData) -> TrainingStart:
    """The field's cube and its visual hull (None: start from a sphere), from the masks when the
    photos have them, else from masks a first fit estimates (cfg.matting_share > 0); then also the
    rays surely on the object (RayData.sure) and the first fit's seconds, which count in the
    training time budget (stages.train_stage) unless the first fit failed."""
    box, hull = object_box(frames, data, cfg.occupancy_res, cfg.downscale)
    if hull is None and data.alpha is None and cfg.matting_share > 0:
        from .trainer import resolve_device

        backend(resolve_device(cfg.device))  # a first build of the kernels is not training time
        t0 = time.monotonic()
        box, hull, sure = opaque_prior(cfg, frames, data, box)
        if hull is None:
            # a first fit whose masks separate nothing gives its time back: the main fit then
            # starts from a sphere and needs all of it (19.0 dB at `fast` with half the budget)
            return TrainingStart(data, box, None, 0.0)
        return TrainingStart(dataclasses.replace(data, sure=sure), box, hull, time.monotonic() - t0)
    return TrainingStart(data, box, hull, 0.0)


def opaque_prior(cfg: Config, frames: list[Frame], data: RayData, box: Box
                 ) -> tuple[Box, np.ndarray | None, torch.Tensor | None]:
    """(the object's cube, its visual hull at cfg.occupancy_res, the rays surely on the object)
    from a first fit of cfg.matting_share of the steps; (box, None, None) when the estimated masks
    leave nothing."""
    from .trainer import build_field, train

    share = cfg.matting_share
    probe = cfg.replace(steps=max(1, min(PROBE_MAX_STEPS, int(cfg.steps * share))),
                        time_budget_s=cfg.time_budget_s * share, eval_every=0,
                        hash_log2_table=min(cfg.hash_log2_table, PROBE_LOG2_TABLE),
                        hash_max_resolution=min(cfg.hash_max_resolution, PROBE_MAX_RESOLUTION),
                        march_steps=min(cfg.march_steps, PROBE_MARCH_STEPS),
                        # masks need opacity, not gloss: the plain head's steps are ~1.8x cheaper,
                        # and with the reflective one 2.4 % of the sure rays missed the object
                        color_input="view", normal_gradients=False)
    log.info("no masks: a first fit of %d steps estimates them for the visual hull", probe.steps)
    torch.manual_seed(cfg.seed)  # the first fit's masks, and so the hull, repeat for a given seed
    tf = build_field(probe, box, False, None)
    train(tf, data, probe)
    picked = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_FRAMES)).astype(int))
    pick = [frames[i] for i in picked]
    ds = mask_downscale(pick[0], cfg.downscale)
    masks, opaque = estimated_masks(tf, pick, ds, cfg.coarse_levels + EXTRA_LEVELS)
    box, hull = hull_from_masks(pick, masks, box, cfg.occupancy_res, ds)
    if hull is None or cfg.sure_object_weight <= 0:
        return box, hull, None
    erode = max(1, int(SURE_ERODE_PX * cfg.downscale / ds))  # in mask pixels, at least one
    return box, hull, sure_object(frames, data, dict(zip(picked.tolist(), opaque)), hull, box, cfg.downscale, erode)


def sure_object(frames: list[Frame], data: RayData, masks: dict[int, np.ndarray], hull: np.ndarray, box: Box,
                downscale: int, erode: int) -> torch.Tensor:
    """Per training ray (in load_rays' order), whether it surely meets the object: the first fit
    renders its pixel opaque (`masks`: bool, at the mask resolution, for some of the frames; the
    region eroded by `erode` mask pixels) and the ray crosses the voted hull for at least
    SURE_CELLS cells.

    Why: without masks the background model is the cheaper explanation of any pixel, and for some
    initial weights it paints thin parts (ear tips, a chin) into the directions each photo sees
    them in before the SDF has grown them; the occupancy grid then prunes them for good (seed 2 at
    `fast`: field silhouette IoU 0.93 against 0.98, GLB 20.9 dB against 24.7-25.1). These rays
    give the field's opacity a target where the evidence is strong on two counts: the first fit's
    opacity alone can be loose at the silhouette, the hull alone is wider than the object. (The
    estimated masks' other half, the background residual, speckles on textured background: not used.)"""
    from scipy.ndimage import binary_erosion

    shapes = [(f.height // downscale, f.width // downscale) for f in frames]  # as load_rays stores them
    starts = np.concatenate([[0], np.cumsum([h * w for h, w in shapes])])
    sure = torch.zeros(len(data.origins), dtype=torch.bool)
    grid = torch.from_numpy(hull)
    cell = float(box.size.max()) / hull.shape[0]
    for i, mask in masks.items():
        (h, w), at = shapes[i], int(starts[i])
        core = binary_erosion(mask, iterations=erode)
        rows = np.minimum(((np.arange(h) + 0.5) * core.shape[0] / h).astype(int), core.shape[0] - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * core.shape[1] / w).astype(int), core.shape[1] - 1)
        fg = torch.from_numpy(np.flatnonzero(core[np.ix_(rows, cols)])) + at
        depth = _hull_depth(data.origins[fg], data.dirs[fg], grid, box, cell)
        sure[fg[torch.from_numpy(depth >= SURE_CELLS * cell)]] = True
    return sure


def _hull_depth(o: torch.Tensor, d: torch.Tensor, grid: torch.Tensor, box: Box, cell: float) -> np.ndarray:
    """Length of each ray's path through the hull's cells."""
    from ..kernels.march import march_rays
    from ..render.rays import intersect_box

    if len(o) == 0:
        return np.zeros(0, np.float32)
    near, far = intersect_box(o, d, box)
    step = 0.5 * cell
    _, offsets = march_rays(o, d, near, far, grid, box.lo, box.hi, step, int(box.diagonal / step) + 2, 0.5)
    return ((offsets[1:] - offsets[:-1]).numpy() * step).astype(np.float32)


def hull_from_masks(frames: list[Frame], masks: list[np.ndarray], box: Box, res: int,
                    downscale: int) -> tuple[Box, np.ndarray | None]:
    """The voted hull's cube and the hull in it at `res`; (box, None) when the masks carve nothing
    or leave a hull reaching the cube's faces: a first fit that called (nearly) everything
    foreground or background must not shape the field, a sphere is the safer start."""
    coarse = main_part(visual_hull(frames, masks, box, 64, downscale, VOTES, VOTE_SHARE))
    if not coarse.any() or _touches_faces(coarse):
        log.warning("the estimated masks do not separate the object from its background (too few or "
                    "too small photos?): training from a sphere, without a visual hull")
        return box, None
    tight = cube(hull_box(coarse, box))
    return tight, main_part(visual_hull(frames, masks, tight, res, downscale, VOTES, VOTE_SHARE))


def mask_downscale(frame: Frame, downscale: int) -> int:
    """Masks of at least MASK_SIDE pixels on the short side: enough for a hull, cheap to render."""
    short = min(frame.width, frame.height) // downscale
    return downscale * max(1, short // MASK_SIDE)


def _touches_faces(hull: np.ndarray) -> bool:
    """A hull that reaches the cube's faces on two or more axes was not carved around an object."""
    idx = np.argwhere(hull)
    reach = (idx.min(0) == 0) | (idx.max(0) == hull.shape[0] - 1)
    return int(reach.sum()) >= 2


def main_part(hull: np.ndarray, keep: float = MIN_PART) -> np.ndarray:
    """The hull's connected parts of at least `keep` x the largest one's cells. What else survives
    the carving is where few cameras look (the cube's corners) or background texture that the
    coarse model could not explain in enough views: kept, it would widen the cube around the
    object and start as solid the field has to carve."""
    from scipy.ndimage import label

    parts, n = label(hull)
    if n <= 1:
        return hull
    sizes = np.bincount(parts.ravel())[1:]
    return np.isin(parts, 1 + np.flatnonzero(sizes >= keep * sizes.max()))
