"""Colour of rays that leave the object box: a hash-grid field over the ray direction.

Why a hash grid and not an equirectangular map: the background must hold the photos' own detail
(a pixel is ~0.2 degrees in a 200-px, 40-degree view); a map that fine is 2k x 4k texels, mostly
never seen, while the hash grid spends its table only where rays actually point. A background
coarser than the photos is what lets the object field paint the room onto the walls of its box.
Directions are encoded as points on the unit sphere inside [0, 1]^3, so there is no seam or pole.
"""
from __future__ import annotations

import torch
from torch import nn

from .hashgrid import HashGrid, HashGridConfig
from .layers import mlp


class Background(nn.Module):
    def __init__(self, levels: int = 12, log2_table: int = 17, max_resolution: int = 2048, hidden: int = 32):
        super().__init__()
        self.grid = HashGrid(HashGridConfig(levels, 2, log2_table, 8, max_resolution))
        self.net = mlp([self.grid.out_dim, hidden, 3])

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = d / d.norm(dim=-1, keepdim=True).clamp(min=1e-8) * 0.5 + 0.5
        return torch.sigmoid(self.net(self.grid(x)))
