"""Reflection-aware inputs for the colour head (Ref-NeRF, Verbin et al. 2022; Ref-NeuS).

Why: a colour head fed the *view* direction must learn a glossy surface's reflections anew at every
point, because the same mirrored sky shows up under a different view direction wherever the
normal turns. It cannot (a 64-wide MLP on degree-3 harmonics is far too smooth for that), so
training bends the surface instead, until the reflections sit still on it: the glossy parts of
the mixed-materials scene came out wavy, and their relit PSNR was capped by those normals even
with the true material (docs/design.md). Fed the view direction *mirrored about the surface
normal*, the reflections of one environment are one function of one direction for every point,
which the head can learn once: the surface no longer has to move to explain them.

The normal is the SDF's own (`SdfField.normal`: finite differences on a tetrahedron, four field
evaluations per sample instead of central differences' six, since the hash-grid kernel has first
derivatives only); with `normal_gradients` the colour loss reaches the surface through it
(Ref-NeuS). The reflected direction is encoded twice:
degree-3 harmonics for the smooth part, and a small multi-resolution equirectangular feature grid
for what is sharper than harmonics can hold (a near-mirror cube reflects the sky's edges).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import sh_encode


def reflect(d: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Incoming ray directions d (N, 3) mirrored about unit normals n (N, 3)."""
    return d - 2.0 * (d * n).sum(-1, keepdim=True) * n


class DirectionGrid(nn.Module):
    """Features of unit directions from equirectangular grids at several resolutions."""

    def __init__(self, levels: int = 4, features: int = 4, base_height: int = 8):
        super().__init__()
        self.grids = nn.ParameterList(
            nn.Parameter(torch.empty(1, features, base_height << i, 2 * (base_height << i)).uniform_(-1e-4, 1e-4))
            for i in range(levels))

    @property
    def out_dim(self) -> int:
        return sum(g.shape[1] for g in self.grids)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # Looked up at a detached direction: asin's derivative is infinite at the poles (NaN
        # losses once the normals carried gradients), and a bilinear lookup's derivative in its
        # coordinates is a noisy, texel-wise step; the harmonics carry the direction's gradient.
        w = w.detach()
        # longitude on x, latitude on y, both to [-1, 1]; the seam at +-pi is one texel wide
        lon = torch.atan2(w[:, 1], w[:, 0]) / math.pi
        lat = torch.asin(w[:, 2].clamp(-1.0, 1.0)) / (0.5 * math.pi)
        uv = torch.stack([lon, lat], -1).view(1, -1, 1, 2)
        return torch.cat([F.grid_sample(g, uv, mode="bilinear", padding_mode="border", align_corners=False)
                          .view(g.shape[1], -1).t() for g in self.grids], dim=1)


class ReflectionEncoding(nn.Module):
    """(N, out_dim) colour-head inputs from ray directions and surface normals."""

    def __init__(self):
        super().__init__()
        self.grid = DirectionGrid()

    @property
    def out_dim(self) -> int:
        return 16 + self.grid.out_dim + 1

    def forward(self, d: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        w = reflect(d, n)
        cos = -(d * n).sum(-1, keepdim=True)  # how grazing the view is: Fresnel, in effect
        return torch.cat([sh_encode(w), self.grid(w), cos], dim=-1)
