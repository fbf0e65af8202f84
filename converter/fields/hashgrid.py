"""Multiresolution hash-grid encoding (instant-ngp) as a module: table layout and parameters.

The encoding itself is `nrconvert.kernels.hashgrid.hash_encode` (compiled C++/CUDA, or its
pure-torch reference when no compiler is found). Coarse levels whose dense grid fits in the table
are indexed densely (no hash collisions). The only state-dict entry is `table`, so checkpoints
written before the kernels existed still load.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..kernels.hashgrid import corner_rows, hash_encode


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
    return [math.floor(cfg.base_resolution * growth**lvl) for lvl in range(cfg.levels)]


def keep_levels(feats: torch.Tensor, active: int, features: int) -> torch.Tensor:
    """`feats` (N, levels*features, coarsest level first) with every level from `active` on
    zeroed: coarse-to-fine training holds a grid to its coarse levels this way."""
    keep = torch.arange(feats.shape[-1], device=feats.device) < active * features
    return feats * keep.to(feats.dtype)


class HashGrid(nn.Module):
    """Encodes points in [0, 1]^3 to (N, levels * features) features."""

    def __init__(self, cfg: HashGridConfig = HashGridConfig()):
        super().__init__()
        self.cfg = cfg
        table = 1 << cfg.log2_table
        res = level_resolutions(cfg)
        offsets = [0]
        for r in res:
            offsets.append(offsets[-1] + min(table, (r + 1) ** 3))
        # Plain CPU tensors, not buffers: the kernels read them on the host whatever the device.
        self.resolutions = torch.tensor(res, dtype=torch.int32)
        self.offsets = torch.tensor(offsets, dtype=torch.int64)
        self.table = nn.Parameter(torch.empty(offsets[-1], cfg.features).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.cfg.levels * self.cfg.features

    def corner_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices (N, L, 8) into the table and trilinear weights (N, L, 8)."""
        return corner_rows(x, self.resolutions, self.offsets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hash_encode(x, self.table, self.resolutions, self.offsets)
