"""Training loop: fit the SDF field (and the background) to the training photos."""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Config
from .. import faults
from ..errors import OutOfMemoryError, TrainingError
from ..fields.background import Background
from ..fields.hashgrid import HashGridConfig
from ..fields.occupancy import OccupancyGrid
from ..fields.sdf import SdfField, hull_sdf
from ..kernels import backend
from ..metrics.image import psnr
from ..render.rays import Box
from ..render.volume import render_chunked, render_rays
from .data import RayData, cube
from .schedule import PlateauStop, active_levels, beta_ceiling, lr_factor

Progress = Callable[[int, int, dict], None]
log = logging.getLogger(__name__)
MIN_BATCH_RAYS = 256
MAX_ROLLBACKS = 3
ROLLBACK_LR_FACTOR = 0.3


@dataclass
class TrainedField:
    """The field and everything needed to render it again."""

    field: SdfField
    background: Background
    occupancy: OccupancyGrid
    box: Box
    dt: float
    masked: bool
    history: list[dict] = field(default_factory=list)  # step, seconds, loss, psnr


def resolve_device(name: str) -> torch.device:
    """`auto`: the GPU when torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_field(cfg: Config, box: Box, masked: bool, hull: np.ndarray | None) -> TrainedField:
    grid = HashGridConfig(cfg.hash_levels, cfg.hash_features, cfg.hash_log2_table, 16, cfg.hash_max_resolution)
    box = cube(box)
    device = resolve_device(cfg.device)
    occ = OccupancyGrid(cfg.occupancy_res, None if hull is None else torch.from_numpy(hull), device)
    sdf = SdfField(grid, cfg.hidden, geometry_max_resolution=cfg.geometry_max_resolution,
                   init_radius=cfg.sdf_init_radius, reflective=cfg.color_input == "reflect",
                   normal_gradients=cfg.normal_gradients)
    sdf.beta_min = cfg.beta_min_steps * math.sqrt(3) / cfg.march_steps
    if hull is not None:
        sdf.set_base(hull_sdf(hull))
    background = Background(max_resolution=cfg.background_max_resolution)
    return TrainedField(sdf.to(device), background.to(device), occ, box, box.diagonal / cfg.march_steps, masked)


def _optimizer(tf: TrainedField, lr: float) -> torch.optim.Optimizer:
    f = tf.field
    grids = [f.grid.table, tf.background.grid.table]
    grids += [] if f.reflection is None else list(f.reflection.parameters())
    params = [{"params": grids, "eps": 1e-15},
              {"params": list(f.sdf_net.parameters()) + list(f.color_net.parameters())
               + list(tf.background.net.parameters()), "weight_decay": 1e-6},
              {"params": [f.log_beta]}]
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99), fused=True)


def _targets(tf: TrainedField, batch: dict, out) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target composited over the same background."""
    if tf.masked:
        bg = torch.rand_like(batch["rgb"])  # random backgrounds force the opacity to match the mask
        a = batch["alpha"][:, None]
        target = batch["rgb"] * a + bg * (1 - a)
    else:
        bg = tf.background(batch["dirs"])
        target = batch["rgb"]
    return out.rgb + (1 - out.opacity[:, None]) * bg, target


def _regularisers(tf: TrainedField, cfg: Config, frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eikonal and curvature terms on points near the surface (occupied cells) and anywhere."""
    occ = tf.occupancy
    cells = occ.mask.nonzero()
    n = cfg.eikonal_points
    pick = cells[torch.randint(0, len(cells), (n // 2,), device=cells.device)]
    x = torch.cat([occ.cell_centres(pick), torch.rand(n - n // 2, 3, device=cells.device)])
    eps = 1.0 / tf.field.finest_active_resolution()
    grad, lap = tf.field.gradient(x, eps)
    eikonal = ((grad.norm(dim=-1) - 1.0) ** 2).mean()
    curvature = lap.abs().mean()
    return eikonal, curvature


def _band(tf: TrainedField) -> float:
    """|sdf| below which an occupancy cell may hold the surface: half a cell diagonal, plus the
    reach of the density (a few beta), plus one cell of slack for the surface moving."""
    cell = math.sqrt(3) / tf.occupancy.res
    return 1.5 * cell + 5.0 * float(tf.field.beta_max)


@dataclass
class LoopState:
    """Everything besides the field that a resumed run needs to continue as if never stopped."""

    step: int = 0
    seconds: float = 0.0  # training time already spent (the time budget counts across restarts)
    spent_before_s: float = 0.0  # spent before this fit (the opaque first fit): in the budget too
    lr_scale: float = 1.0  # lowered after a divergence
    batch_rays: int = 0  # halved after running out of memory
    rollbacks: int = 0
    psnr_checks: list[float] = field(default_factory=list)


Checkpoint = Callable[[TrainedField, LoopState, dict], None]


def train(tf: TrainedField, data: RayData, cfg: Config, *, eval_data: RayData | None = None,
          progress: Progress | None = None, resume: dict | None = None,
          checkpoint: Checkpoint | None = None, spent_s: float = 0.0) -> TrainedField:
    """Fit the field. `resume` is a checkpoint's loop state ("loop", "optimizer", "rng").

    `spent_s` seconds of training came before this fit (the opaque first fit): cfg.time_budget_s
    is the whole training's, so a user's budget holds with or without masks. This fit keeps at
    least half of it, so a slow first fit cannot starve it."""
    device = tf.field.log_beta.device
    data = data.to(device)
    eval_data = None if eval_data is None else eval_data.to(device)
    opt = _optimizer(tf, cfg.lr)
    state = LoopState(batch_rays=cfg.batch_rays, spent_before_s=spent_s)
    torch.manual_seed(cfg.seed)
    if resume:
        state = LoopState(**resume["loop"])
        opt.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["rng"])
    stopper = PlateauStop(cfg.early_stop_patience, cfg.early_stop_min_delta, list(state.psnr_checks))
    good = _snapshot(tf, opt, state)  # rolled back to when the loss goes NaN
    backend(device)  # a first build of the kernels (~30 s) must not run inside the timed first step
    t0, last_ckpt = time.time() - state.seconds, time.time()
    budget_s = max(cfg.time_budget_s - state.spent_before_s, 0.5 * cfg.time_budget_s)
    while state.step < cfg.steps:
        state.seconds = time.time() - t0
        frac = schedule_fraction(state.step, cfg.steps, state.seconds, budget_s)
        if frac >= 1.0:  # the clock, not the steps: say so, a starved field is the user's to know
            if tf.history:
                tf.history[-1].update(stopped_by="time_budget", budget_s=round(budget_s, 1))
            break
        record = _guarded_step(tf, data, cfg, opt, state, frac)
        if record is None:  # diverged: back to the last good state with a lower learning rate
            _restore(tf, opt, good, state)
            continue
        state.step += 1
        record["seconds"] = round(time.time() - t0, 2)
        stop = _maybe_evaluate(tf, eval_data, cfg, state, stopper, record)
        tf.history.append(record)
        if state.step % cfg.checkpoint_every == 0 or time.time() - last_ckpt > cfg.checkpoint_every_s:
            good = None  # a snapshot is 89-133 MiB at 2^18-2^19 tables: never two at once
            good = _snapshot(tf, opt, state)
            if checkpoint:
                checkpoint(tf, state, opt.state_dict())
                record["checkpoint"] = state.step
            last_ckpt = time.time()
        if progress:
            progress(state.step, cfg.steps, record)
        if stop:
            break
    if eval_data is not None and tf.history and "test_psnr" not in tf.history[-1]:
        tf.history[-1]["test_psnr"] = evaluate(tf, eval_data)  # a run cut by its time budget too
    return tf


def under_trained(last: dict, steps: int) -> str | None:
    """A warning when the time budget ended training before half its steps, else None.

    A budget is meant to bound a run, but on a busy or slow machine it silently decides quality: a
    balanced suzanne reached step 449 of 2000 in its 420 s beside a CI run (field 34.6 dB held-out
    against 37.5 with every step)."""
    if last.get("stopped_by") != "time_budget" or last.get("step", 0) >= steps / 2:
        return None
    step, seconds = int(last.get("step", 0)), float(last.get("seconds", 0.0))
    need = 60 * math.ceil(1.2 * seconds * steps / max(step, 1) / 60)
    return (f"Training stopped at its time budget ({last.get('budget_s', seconds):.0f} s) after {step} of {steps} "
            f"steps: the field may be under-trained (a busy or slow machine). To train every step: "
            f"--set time_budget_s={need}, or a smaller preset.")


def schedule_fraction(step: int, steps: int, seconds: float, budget_s: float) -> float:
    """How far the schedules (learning rate, coarse-to-fine, beta) are: steps or time, whichever
    binds. Step 0 is 0 exactly: the clock's few microseconds there once set the first learning rate
    and beta ceiling, so two runs with the same seed drifted apart from step 2 on (0.3 dB after
    150 steps), and a resumed run could not match an uninterrupted one."""
    return max(step / steps, seconds / budget_s) if step else 0.0


def _maybe_evaluate(tf, eval_data, cfg: Config, state: LoopState, stopper: PlateauStop, record: dict) -> bool:
    if eval_data is None or not cfg.eval_every or state.step % cfg.eval_every:
        return False
    record["test_psnr"] = evaluate(tf, eval_data)
    stop = cfg.early_stop_patience > 0 and stopper.update(record["test_psnr"])
    state.psnr_checks = list(stopper.history)
    return stop


def _guarded_step(tf, data: RayData, cfg: Config, opt, state: LoopState, frac: float) -> dict | None:
    """One step with its schedule; None when the loss went non-finite. Out of memory halves the
    batch and tries again, down to 256 rays."""
    for g in opt.param_groups:
        g["lr"] = cfg.lr * state.lr_scale * lr_factor(frac, cfg.lr_final_ratio)
    tf.field.set_active_levels(active_levels(frac, cfg.coarse_levels, tf.field.geo_levels, cfg.coarse_to_fine))
    tf.background.set_active_levels(active_levels(frac, cfg.coarse_levels, tf.background.levels,
                                                  cfg.background_coarse_to_fine))
    tf.field.beta_max.fill_(beta_ceiling(frac, 0.02, tf.field.beta_min, cfg.coarse_to_fine))
    if state.step % 16 == 0:
        tf.occupancy.update_sdf(tf.field.sdf_only, _band(tf))
    while True:
        try:
            if faults.fire("oom", state.step) and state.batch_rays > 0:
                raise MemoryError("injected by NRCONVERT_FAULTS")
            return _step(tf, data, cfg, opt, state.batch_rays, state.step, frac)
        except (MemoryError, torch.OutOfMemoryError) as exc:
            opt.zero_grad(set_to_none=True)
            if state.batch_rays <= MIN_BATCH_RAYS:
                raise OutOfMemoryError(f"out of memory at step {state.step} even with {state.batch_rays} rays "
                                       f"per batch ({exc})", hint="use a machine with more memory or a "
                                       "smaller capture (--set downscale=2), then re-run with --resume") from exc
            state.batch_rays = max(MIN_BATCH_RAYS, state.batch_rays // 2)
            log.warning("out of memory at step %d: batch size lowered to %d rays", state.step, state.batch_rays)


def _snapshot(tf: TrainedField, opt, state: LoopState) -> dict:
    """An in-memory copy of the last good state (the disk checkpoint may be older or absent)."""
    return {"field": copy.deepcopy(tf.field.state_dict()), "background": copy.deepcopy(tf.background.state_dict()),
            "occ": (tf.occupancy.distance.clone(), tf.occupancy.mask.clone(), tf.occupancy.updates),
            "optimizer": copy.deepcopy(opt.state_dict()), "step": state.step, "history": len(tf.history)}


def _restore(tf: TrainedField, opt, good: dict, state: LoopState) -> None:
    state.rollbacks += 1
    if state.rollbacks > MAX_ROLLBACKS:
        raise TrainingError(f"training diverged (loss NaN/Inf) at step {state.step}, {MAX_ROLLBACKS} times "
                            f"after rolling back with a lower learning rate",
                            hint="check the capture's poses and exposure; or try --set lr=0.001")
    log.warning("loss not finite at step %d: back to step %d with learning rate x%.2g", state.step,
                good["step"], state.lr_scale * ROLLBACK_LR_FACTOR)
    tf.field.load_state_dict(good["field"])
    tf.background.load_state_dict(good["background"])
    distance, mask, updates = good["occ"]
    tf.occupancy.distance, tf.occupancy.mask, tf.occupancy.updates = distance.clone(), mask.clone(), updates
    opt.load_state_dict(good["optimizer"])
    del tf.history[good["history"]:]
    state.step = good["step"]
    state.lr_scale *= ROLLBACK_LR_FACTOR


def _step(tf: TrainedField, data: RayData, cfg: Config, opt, batch_rays: int, step: int, frac: float) -> dict | None:
    n_rays = data.origins.shape[0]
    idx = torch.randint(0, n_rays, (batch_rays,), device=data.origins.device)
    batch = {"origins": data.origins[idx], "dirs": data.dirs[idx], "rgb": data.rgb[idx],
             "alpha": None if data.alpha is None else data.alpha[idx],
             "sure": None if data.sure is None else data.sure[idx]}
    out = render_rays(tf.field, tf.occupancy, batch["origins"], batch["dirs"], tf.box, tf.dt, jitter=True,
                      neus=frac >= cfg.neus_from)
    pred, target = _targets(tf, batch, out)
    rgb_loss = torch.nn.functional.mse_loss(pred, target)
    eikonal, curvature = _regularisers(tf, cfg, frac)
    curv_w = cfg.curvature_weight * min(1.0, frac / max(cfg.coarse_to_fine, 1e-6))
    loss = rgb_loss + cfg.eikonal_weight * eikonal + curv_w * curvature
    if batch["sure"] is not None:  # opaque photos: rays surely on the object must end on it (train.matting)
        loss = loss + cfg.sure_object_weight * ((1.0 - out.opacity) ** 2 * batch["sure"]).mean()
    if faults.fire("nan_loss", step):
        loss = loss * float("nan")
    if not torch.isfinite(loss):
        return None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    mse = float(rgb_loss.detach())
    return {"step": step + 1, "loss": float(loss.detach()), "train_psnr": -10 * math.log10(max(mse, 1e-10)),
            "eikonal": float(eikonal.detach()), "beta": float(tf.field.beta().detach()), "samples": out.samples}


def eval_indices(n: int, max_rays: int) -> torch.Tensor:
    """Every ray when there are few, else `max_rays` evenly strided ones (all rows of the view)."""
    if n <= max_rays:
        return torch.arange(n)
    return torch.div(torch.arange(max_rays) * n, max_rays, rounding_mode="floor")


def evaluate(tf: TrainedField, data: RayData, max_rays: int = 20000) -> float:
    """Held-out PSNR of the field itself (on black for masked captures), on at most `max_rays`
    rays spread evenly over the view. The first rays of a view are its top rows: at 640×480 the
    first 20,000 were 31 rows of empty sky, which scored 83 dB and drove early stopping."""
    idx = eval_indices(data.origins.shape[0], max_rays).to(data.origins.device)
    o, d, rgb = data.origins[idx], data.dirs[idx], data.rgb[idx]
    out = render_chunked(tf.field, tf.occupancy, o, d, tf.box, tf.dt)
    if tf.masked:
        target = rgb * data.alpha[idx, None]
        pred = out.rgb
    else:
        target = rgb
        with torch.no_grad():
            pred = out.rgb + (1 - out.opacity[:, None]) * tf.background(d)
    return psnr(pred.detach().cpu().numpy(), target.cpu().numpy())
