"""Building blocks shared by the fields: view-direction encoding and plain MLPs."""
from __future__ import annotations

import torch
from torch import nn


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


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
