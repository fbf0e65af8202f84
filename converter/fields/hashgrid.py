"""Multiresolution hash-grid encoding (instant-ngp), pure PyTorch.

Why `embedding_bag`: the encoding is a gather of 8 corner feature rows per level followed by a
trilinear weighted sum. `F.embedding_bag(mode="sum", per_sample_weights=...)` does exactly that in
one fused C++ kernel with a matching scatter-add backward, so no (N, L, 8, F) temporary is built.
Coarse levels whose dense grid fits in the table are indexed densely (no hash collisions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class HashGridConfig:
    levels: int = 16
    features: int = 2
    log2_table: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048


def level_resolutions(cfg: HashGridConfig) -> list[int]:
    if cfg.levels == 1:
        return [cfg.base_resolution]
    growth = math.exp(math.log(cfg.max_resolution / cfg.base_resolution) / (cfg.levels - 1))
    return [int(math.floor(cfg.base_resolution * growth**lvl)) for lvl in range(cfg.levels)]


class _GatherSum(torch.autograd.Function):
    """out[m] = sum_k w[m, k] * table[idx[m, k]], with a flat scatter-add backward.

    The stock embedding_bag backward sorts the indices; a 1-D `scatter_add_` into the flattened
    table is ~5x faster on CPU for the 8-corner access pattern.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table, idx, w)
        return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        table, idx, w = ctx.saved_tensors
        grad_table = grad_w = None
        feats = table.shape[1]
        if ctx.needs_input_grad[0]:
            vals = (grad_out[:, None, :] * w[..., None]).reshape(-1)
            flat = (idx[..., None] * feats + torch.arange(feats, device=idx.device)).reshape(-1)
            grad_table = torch.zeros(table.numel(), dtype=table.dtype, device=table.device)
            grad_table.scatter_add_(0, flat, vals)
            grad_table = grad_table.view_as(table)
        if ctx.needs_input_grad[2]:
            grad_w = (F.embedding(idx, table) * grad_out[:, None, :]).sum(-1)
        return grad_table, None, grad_w


def _axis_terms(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis corner coordinates (N, L, 3, 2) and their linear weights (N, L, 3, 2)."""
    base = pos.floor()
    frac = pos - base
    coords = base.to(torch.int64)[..., None] + torch.tensor([0, 1], device=pos.device)
    weights = torch.stack([1.0 - frac, frac], dim=-1)
    return coords, weights


def _combine(t: torch.Tensor, op) -> torch.Tensor:
    """Combine per-axis terms (N, L, 3, 2) into the 8 corners (N, L, 8), x slowest."""
    x, y, z = t[:, :, 0], t[:, :, 1], t[:, :, 2]
    out = op(op(x[:, :, :, None, None], y[:, :, None, :, None]), z[:, :, None, None, :])
    return out.reshape(t.shape[0], t.shape[1], 8)


class HashGrid(nn.Module):
    """Encodes points in [0, 1]^3 to (N, levels * features) features."""

    def __init__(self, cfg: HashGridConfig = HashGridConfig()):
        super().__init__()
        self.cfg = cfg
        table = 1 << cfg.log2_table
        res = level_resolutions(cfg)
        sizes = [min(table, (r + 1) ** 3) for r in res]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.register_buffer("resolutions", torch.tensor(res, dtype=torch.float32), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False)
        self.n_dense = sum((r + 1) ** 3 <= table for r in res)  # dense levels come first
        strides = [[1, r + 1, (r + 1) ** 2] for r in res[: self.n_dense]]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.int64).view(-1, 3, 1), persistent=False)
        self.register_buffer("primes", torch.tensor(_PRIMES, dtype=torch.int64).view(1, 3, 1), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], cfg.features).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.cfg.levels * self.cfg.features

    def corner_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices (N, L, 8) into the table and trilinear weights (N, L, 8)."""
        pos = x.clamp(0.0, 1.0)[:, None, :] * self.resolutions[None, :, None]  # (N, L, 3)
        coords, w = _axis_terms(pos)
        d = self.n_dense
        parts = []
        if d:
            parts.append(_combine(coords[:, :d] * self.strides[None], torch.add))
        if d < self.cfg.levels:
            hashed = _combine(coords[:, d:] * self.primes[None], torch.bitwise_xor)
            parts.append(hashed & (self.sizes[None, d:, None] - 1))
        idx = torch.cat(parts, dim=1) + self.offsets[None, :, None]
        return idx, _combine(w, torch.mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        idx, w = self.corner_indices(x)
        L = self.cfg.levels
        out = _GatherSum.apply(self.table, idx.view(n * L, 8), w.view(n * L, 8))
        return out.view(n, L * self.cfg.features)
