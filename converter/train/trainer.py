"""Training loop: fit the density field (and background) to the training photos."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..config import Config
from ..errors import TrainingError
from ..fields.hashgrid import HashGridConfig
from ..fields.nerf import Background, NerfField
from ..fields.occupancy import OccupancyGrid
from ..metrics.image import psnr
from ..render.rays import Box
from ..render.volume import render_chunked, render_rays
from .data import RayData

Progress = Callable[[int, int, dict], None]


@dataclass
class TrainedField:
    """The field and everything needed to render it again."""

    field: NerfField
    background: Background
    occupancy: OccupancyGrid
    box: Box
    dt: float
    masked: bool
    history: list[dict] = field(default_factory=list)  # step, seconds, loss, psnr

    def density_fn(self):
        return lambda x: self.field.density(x)[0]


def build_field(cfg: Config, box: Box, masked: bool, hull: np.ndarray | None) -> TrainedField:
    grid = HashGridConfig(cfg.hash_levels, cfg.hash_features, cfg.hash_log2_table, 16,
                          cfg.hash_max_resolution)
    occ = OccupancyGrid(cfg.occupancy_res, None if hull is None else torch.from_numpy(hull))
    field = NerfField(grid, cfg.hidden, geometry_max_resolution=cfg.geometry_max_resolution,
                      density_bias=cfg.density_bias)
    return TrainedField(field, Background(), occ, box, box.diagonal / cfg.march_steps, masked)


def _optimizer(tf: TrainedField, lr: float) -> torch.optim.Optimizer:
    params = [{"params": [tf.field.grid.table], "eps": 1e-15},
              {"params": list(tf.field.density_net.parameters()) + list(tf.field.color_net.parameters()),
               "weight_decay": 1e-6},
              {"params": tf.background.parameters()}]
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


def train(tf: TrainedField, data: RayData, cfg: Config, *, eval_data: RayData | None = None,
          progress: Progress | None = None, start_step: int = 0,
          checkpoint: Callable[[TrainedField, int], None] | None = None) -> TrainedField:
    torch.manual_seed(cfg.seed + start_step)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    opt = _optimizer(tf, cfg.lr)
    n_rays = data.origins.shape[0]
    threshold = 0.01 / tf.dt
    warmup = min(256, max(cfg.steps // 4, 1))
    t0 = time.time()
    for step in range(start_step, cfg.steps):
        frac = max(step / cfg.steps, (time.time() - t0) / cfg.time_budget_s)
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = cfg.lr * cfg.lr_final_ratio ** frac
        if step >= warmup and step % 16 == 0:
            tf.occupancy.update(tf.density_fn(), threshold)
        idx = torch.randint(0, n_rays, (cfg.batch_rays,))
        batch = {"origins": data.origins[idx], "dirs": data.dirs[idx], "rgb": data.rgb[idx],
                 "alpha": None if data.alpha is None else data.alpha[idx]}
        out = render_rays(tf.field, tf.occupancy, batch["origins"], batch["dirs"], tf.box, tf.dt, jitter=True)
        pred, target = _targets(tf, batch, out)
        loss = torch.nn.functional.mse_loss(pred, target)
        if not tf.masked and cfg.sparsity_weight > 0:
            # without masks, keep the box empty unless the photos need matter there: otherwise the
            # field paints the background onto the walls of the box
            loss = loss + cfg.sparsity_weight * out.sparsity
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at step {step}",
                                hint="retry with a lower learning rate: --set lr=0.003")
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # no sample hit occupied space: nothing to learn from this batch
            loss.backward()
            opt.step()
        loss = float(loss.detach())
        record = {"step": step + 1, "seconds": round(time.time() - t0, 2), "loss": loss,
                  "train_psnr": -10 * math.log10(max(loss, 1e-10)), "samples": out.samples}
        if eval_data is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            record["test_psnr"] = evaluate(tf, eval_data)
        tf.history.append(record)
        if checkpoint and (step + 1) % 500 == 0:
            checkpoint(tf, step + 1)
        if progress:
            progress(step + 1, cfg.steps, record)
    if eval_data is not None and tf.history and "test_psnr" not in tf.history[-1]:
        tf.history[-1]["test_psnr"] = evaluate(tf, eval_data)  # a run cut by its time budget too
    return tf


def evaluate(tf: TrainedField, data: RayData, max_rays: int = 20000) -> float:
    """Held-out PSNR of the field itself (on black for masked captures)."""
    n = min(max_rays, data.origins.shape[0])
    out = render_chunked(tf.field, tf.occupancy, data.origins[:n], data.dirs[:n], tf.box, tf.dt)
    if tf.masked:
        target = data.rgb[:n] * data.alpha[:n, None]
        pred = out.rgb
    else:
        target = data.rgb[:n]
        pred = out.rgb + (1 - out.opacity[:, None]) * tf.background(data.dirs[:n])
    return psnr(pred.detach().numpy(), target.numpy())
