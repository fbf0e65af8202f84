"""Occupancy-grid ray marching: the `nrc::march_rays` kernel and its pure-torch reference.

Samples sit at t_k = near + (k + offset) * dt for k = 0, 1, ... while t_k < far and
k < max_samples; a sample is kept iff the grid cell of o + t_k d is occupied, where the cell of a
point p is floor((p - box_min) / (box_max - box_min) * G) clamped to the grid (NaN: cell 0).
The result is packed: `t` (S,) float32 sorted per ray, `ray_offsets` (R + 1,) int64, ray r owning
t[ray_offsets[r]:ray_offsets[r + 1]].

The reference is the oracle of the kernel's parity tests, so it spells out the float32 operations
in the kernel's order (nrc/march.h); compiled without contraction the two agree bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .loader import backend

Box = Sequence[float] | torch.Tensor


def march_rays(o: torch.Tensor, d: torch.Tensor, near: torch.Tensor, far: torch.Tensor, grid: torch.Tensor,
               box_min: Box, box_max: Box, dt: float, max_samples: int,
               offset: float | torch.Tensor = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept sample distances and per-ray offsets (see module doc); no gradients."""
    args = _prepare(o, d, near, far, grid, box_min, box_max, dt, max_samples, offset)
    if backend(o.device) != "torch":
        return torch.ops.nrc.march_rays(*args)
    return _march_ref(*args)


def march_rays_ref(o: torch.Tensor, d: torch.Tensor, near: torch.Tensor, far: torch.Tensor, grid: torch.Tensor,
                   box_min: Box, box_max: Box, dt: float, max_samples: int,
                   offset: float | torch.Tensor = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch `march_rays` (uniform stepping, chunked over rays)."""
    return _march_ref(*_prepare(o, d, near, far, grid, box_min, box_max, dt, max_samples, offset))


def _prepare(o, d, near, far, grid, box_min, box_max, dt, max_samples, offset):
    """Both paths see the same float32 contiguous tensors and Python-float box, so both round alike."""
    dev = o.device
    f32 = {"dtype": torch.float32, "device": dev}
    o, d, near, far = (x.detach().to(**f32).contiguous() for x in (o, d, near, far))
    if not torch.is_tensor(offset):
        offset = torch.full((o.shape[0],), float(offset), **f32)
    offset = offset.detach().to(**f32).expand(o.shape[0]).contiguous()
    lo = [float(x) for x in (box_min.tolist() if torch.is_tensor(box_min) else box_min)]
    hi = [float(x) for x in (box_max.tolist() if torch.is_tensor(box_max) else box_max)]
    if float(torch.tensor(dt, dtype=torch.float32)) <= 0:
        raise ValueError("march_rays: dt must be positive")
    if not 0 <= max_samples <= 1 << 24:
        raise ValueError("march_rays: max_samples must lie in [0, 2^24]")
    return o, d, near, far, grid.to(dev), lo, hi, float(dt), int(max_samples), offset


def _march_ref(o, d, near, far, grid, lo, hi, dt, max_samples, offset,
               chunk: int = 1 << 21) -> tuple[torch.Tensor, torch.Tensor]:
    dev = o.device
    lo_t = torch.tensor(lo, dtype=torch.float32, device=dev)
    ext = torch.tensor(hi, dtype=torch.float32, device=dev) - lo_t
    if not bool((ext > 0).all()):
        raise ValueError("march_rays: box_max must exceed box_min on every axis")
    res = torch.tensor(grid.shape, device=dev)
    occ = grid.reshape(-1).to(torch.bool)
    dt_t = torch.tensor(dt, dtype=torch.float32, device=dev)
    k = torch.arange(max_samples, dtype=torch.float32, device=dev)
    rows = max(1, chunk // max(max_samples, 1))
    ts, counts = [], []
    for a in range(0, o.shape[0], rows):
        s = slice(a, a + rows)
        t = near[s, None] + (k[None, :] + offset[s, None]) * dt_t
        p = o[s, None, :] + t[..., None] * d[s, None, :]
        cell = _cells(p, lo_t, ext, res)
        keep = (t < far[s, None]) & occ[(cell[..., 0] * res[1] + cell[..., 1]) * res[2] + cell[..., 2]]
        ts.append(t[keep])
        counts.append(keep.sum(1))
    offsets = torch.zeros(o.shape[0] + 1, dtype=torch.int64, device=dev)
    if counts:
        offsets[1:] = torch.cumsum(torch.cat(counts), 0)
    t_out = torch.cat(ts) if ts else torch.zeros(0, dtype=torch.float32, device=dev)
    return t_out, offsets


def _cells(p: torch.Tensor, lo: torch.Tensor, ext: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
    """Integer cell per axis, as nrc::march_axis_cell computes it (NaN -> 0, then clamped)."""
    top = (res - 1).to(torch.float32)
    v = torch.floor(((p - lo) / ext) * res.to(torch.float32))
    v = torch.where(v >= 0, v, torch.zeros((), device=p.device))
    v = torch.where(v > top, top, v)
    return v.long()
