"""Density field (hash grid + tiny MLPs) and a background model, in a normalised unit box.

The field lives in the object box only; everything outside (the room, the sky) is explained by a
direction-only background map so that opaque-background photos train without a mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hashgrid import HashGrid, HashGridConfig, level_resolutions


class _TruncExp(torch.autograd.Function):
    """exp() whose gradient is clamped: keeps early training from blowing up (instant-ngp)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15, 15))


def sh_encode(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 3 (16 values) of unit directions (N, 3)."""
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack([
        torch.full_like(x, 0.28209479),
        -0.48860251 * y, 0.48860251 * z, -0.48860251 * x,
        1.09254843 * x * y, -1.09254843 * y * z, 0.31539157 * (2 * zz - xx - yy),
        -1.09254843 * x * z, 0.54627421 * (xx - yy),
        -0.59004359 * y * (3 * xx - yy), 2.89061144 * x * y * z, -0.45704580 * y * (4 * zz - xx - yy),
        0.37317633 * z * (2 * zz - 3 * xx - 3 * yy), -0.45704580 * x * (4 * zz - xx - yy),
        1.44530572 * z * (xx - yy), -0.59004359 * x * (xx - 3 * yy),
    ], dim=-1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class NerfField(nn.Module):
    """sigma(x) and rgb(x, d) for x in the unit box [0, 1]^3."""

    def __init__(self, grid: HashGridConfig, hidden: int = 64, geo_features: int = 15,
                 geometry_max_resolution: int = 256, density_bias: float = -1.0):
        super().__init__()
        # log-density offset: how opaque the untrained box starts (see Config.density_bias_*)
        self.density_bias = density_bias
        self.grid = HashGrid(grid)
        # Geometry sees only the levels up to `geometry_max_resolution`; the finer levels feed colour
        # alone. A density free to use every level grows bumps wherever the texture has an edge.
        coarse = sum(r <= geometry_max_resolution for r in level_resolutions(grid))
        self.geo_dim = max(coarse, 1) * grid.features
        self.density_net = _mlp([self.geo_dim, hidden, 1 + geo_features])
        self.color_net = _mlp([geo_features + self.grid.out_dim - self.geo_dim + 16, hidden, hidden, 3])

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.grid(x)
        h = self.density_net(feats[:, : self.geo_dim])
        return _TruncExp.apply(h[:, 0] + self.density_bias), torch.cat([h[:, 1:], feats[:, self.geo_dim:]], dim=1)

    def color(self, geo: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.color_net(torch.cat([geo, sh_encode(d)], dim=-1)))


class Background(nn.Module):
    """Colour of rays that leave the box: learnable equirectangular maps of the ray direction.

    A coarse and a fine map, summed before the sigmoid: the coarse one settles the sky's colours in
    a few steps, the fine one (about a pixel's footprint for typical photos) holds its detail. A
    background map too coarse for the photos' detail is what lets the field paint the background
    onto the walls of the object box.
    """

    def __init__(self, sizes: tuple[tuple[int, int], ...] = ((16, 32), (256, 512))):
        super().__init__()
        self.maps = nn.ParameterList([nn.Parameter(torch.zeros(1, 3, h, w)) for h, w in sizes])

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        u = torch.atan2(d[:, 1], d[:, 0]) / torch.pi  # [-1, 1]
        v = -torch.asin(d[:, 2].clamp(-1, 1)) / (torch.pi / 2)
        grid = torch.stack([u, v], dim=-1)[None, :, None, :]
        logit = sum(F.grid_sample(m, grid, mode="bilinear", padding_mode="border", align_corners=False)
                    for m in self.maps)
        return torch.sigmoid(logit[0, :, :, 0].t())
