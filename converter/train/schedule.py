"""Schedules: learning rate, coarse-to-fine hash levels, and when to stop.

Every schedule is a pure function of the training fraction, itself the larger of the step fraction
and the time-budget fraction, so a run cut short by its time budget still anneals fully instead of
stopping at a high learning rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


def lr_factor(frac: float, final_ratio: float, warmup: float = 0.02) -> float:
    """Linear warm-up (Adam's moments are noise at first), then exponential decay to `final_ratio`."""
    if frac < warmup:
        return max(frac / warmup, 0.05)
    return final_ratio ** ((frac - warmup) / (1.0 - warmup))


def active_levels(frac: float, first: int, total: int, ramp_end: float) -> int:
    """Hash levels the geometry may use: `first` at the start, all of them from `ramp_end` on.

    Coarse-to-fine (Neuralangelo): fine levels switched on from the start fit texture edges as
    bumps before the coarse shape has settled.
    """
    if ramp_end <= 0 or frac >= ramp_end:
        return total
    return min(total, first + int((total - first) * frac / ramp_end))


def beta_ceiling(frac: float, start: float, end: float, ramp_end: float) -> float:
    """Upper bound on the SDF's density width, geometric from `start` to `end` by `ramp_end`.

    The learnt beta follows the fit, but at Adam's pace it needs thousands of steps to sharpen; a
    soft surface meanwhile costs many samples per ray and blurs thin parts.
    """
    if frac >= ramp_end:
        return end
    return start * (end / start) ** (frac / ramp_end)


@dataclass
class PlateauStop:
    """Stop when held-out PSNR has not improved by `min_delta` dB over the last `patience` checks."""

    patience: int = 3
    min_delta: float = 0.1
    history: list[float] = field(default_factory=list)

    def update(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        self.history.append(value)
        if len(self.history) <= self.patience:
            return False
        best_before = max(self.history[: -self.patience])
        return max(self.history[-self.patience:]) < best_before + self.min_delta
