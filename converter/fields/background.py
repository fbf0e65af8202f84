"""Colour of rays that leave the object box: a hash-grid field over the ray direction.

Why a hash grid and not an equirectangular map: the background must hold the photos' own detail
(a pixel is ~0.2 degrees in a 200-px, 40-degree view); a map that fine is 2k x 4k texels, mostly
never seen, while the hash grid spends its table only where rays actually point. A background
coarser than the photos is what lets the object field paint the room onto the walls of its box.
Directions are encoded as points on the unit sphere inside [0, 1]^3, so there is no seam or pole.

Why coarse-to-fine (`set_active_levels`, driven by the same schedule as the geometry): the
background is the cheaper explanation of any pixel. With its fine levels on from the first step it
paints thin parts of the object (Suzanne's ear tips) into the directions one photo sees them in,
before the SDF has grown them, and the SDF then never has to: measured on the opaque synth capture,
the field's opacity stopped short of the ears in every view. Held back to coarse levels, the
background can only hold what many views agree on until the object's shape has settled.
"""
from __future__ import annotations

import torch
from torch import nn

from .hashgrid import HashGrid, HashGridConfig, keep_levels
from .layers import mlp


class Background(nn.Module):
    def __init__(self, levels: int = 12, log2_table: int = 17, max_resolution: int = 2048, hidden: int = 32):
        super().__init__()
        self.grid = HashGrid(HashGridConfig(levels, 2, log2_table, 8, max_resolution))
        self.net = mlp([self.grid.out_dim, hidden, 3])
        self.levels = levels
        self.register_buffer("active_levels", torch.tensor(levels), persistent=False)

    def set_active_levels(self, n: int) -> None:
        self.active_levels.fill_(max(1, min(int(n), self.levels)))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = d / d.norm(dim=-1, keepdim=True).clamp(min=1e-8) * 0.5 + 0.5
        h = self.grid(x)
        if int(self.active_levels) < self.levels:
            h = keep_levels(h, int(self.active_levels), self.grid.cfg.features)
        return torch.sigmoid(self.net(h))
