"""Lab decoder for bench/neural_lab.py: a learnt environment texture that the MLP modulates.

Why try it: the capacity sweep (bench/RESULTS.md, fourteenth session) showed the 12 x 12 decoder
underfitting the training views as much as the held-out ones, and a 64 x 64 MLP (11 k FLOP)
holding out 2 dB better: what the small MLP cannot rebuild is the environment seen in the
mirror direction, one function for every texel. Here that function is a texture (equirect,
3 channels, 8-bit, 64 x 128 texels) looked up by the mirrored direction, and the MLP only says,
per texel, how much of it shows: colour = sigmoid(a + b * e), with (a, b) the MLP's six linear
outputs and e the dequantised environment. Not in the format: this is the experiment that
decides whether it should be.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from nrconvert.bake import neural as N
from nrconvert.export.neural import N_FEATURES


def equirect_uv(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """glTF object frame (+Y up): u from atan2(x, -z) (wraps), v = 0 looking straight up."""
    u = torch.atan2(d[:, 0], -d[:, 2]) / (2 * math.pi) + 0.5
    return u, torch.acos(d[:, 1].clamp(-1, 1)) / math.pi


def quantise(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0, 1)
    return t + (torch.round(t * 255) / 255 - t).detach()


class EnvDecoder(torch.nn.Module):
    """Features (8-bit) + n . v -> hidden -> 6 linear outputs; colour = sigmoid(a + b * env(mirror)).

    `with_sh` also feeds SH2 of the mirrored direction (as `sh2_reflected`); the samples must come
    from a reflected encoding with n . v (`sh2_reflected_nv`): view = (mirror, n . v, normal)."""

    def __init__(self, size: int, hidden: tuple[int, ...] = (12, 12), env_width: int = 128,
                 with_sh: bool = False, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = torch.nn.Parameter(0.5 + 0.05 * torch.randn(1, N_FEATURES, size, size, generator=g))
        self.scale, self.offset = torch.nn.Parameter(torch.ones(N_FEATURES)), torch.nn.Parameter(torch.zeros(N_FEATURES))
        self.env = torch.nn.Parameter(0.5 + 0.05 * torch.randn(1, 3, env_width // 2, env_width, generator=g))
        self.env_scale, self.env_offset = torch.nn.Parameter(4 * torch.ones(3)), torch.nn.Parameter(-2 * torch.ones(3))
        self.with_sh = with_sh
        dims = (N_FEATURES + 1 + (9 if with_sh else 0),) + tuple(hidden) + (6,)
        torch.manual_seed(seed)
        self.mlp = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def environment(self, d: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup, wrapping in u (a column copied to each side), clamped in v."""
        e = quantise(self.env)
        e = torch.cat([e[..., -1:], e, e[..., :1]], -1)
        w = e.shape[-1] - 2
        u, v = equirect_uv(d)
        grid = torch.stack([(u * w + 1) / (w + 2) * 2 - 1, v * 2 - 1], -1)[None, :, None, :]
        s = F.grid_sample(e, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return s[0, :, :, 0].t() * self.env_scale + self.env_offset

    def forward(self, uv: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        grid = (uv * 2 - 1)[None, :, None, :]
        f = F.grid_sample(quantise(self.features), grid, mode="bilinear", padding_mode="border", align_corners=False)
        parts = [f[0, :, :, 0].t() * self.scale + self.offset, view[:, 3:4]]
        if self.with_sh:
            parts.insert(1, N.sh2_torch(view[:, :3]))
        x = torch.cat(parts, -1)
        for i, layer in enumerate(self.mlp):
            x = layer(x)
            x = torch.relu(x) if i < len(self.mlp) - 1 else x
        return torch.sigmoid(x[:, :3] + x[:, 3:] * self.environment(view[:, :3]))


def distill_env(samples: N.ViewSamples, size: int, steps: int, *, hidden: tuple[int, ...] = (12, 12),
                env_width: int = 128, with_sh: bool = False, batch: int = 16384, lr: float = 0.03,
                tv: float = 1e-2, env_tv: float = 1e-3, seed: int = 0) -> EnvDecoder:
    """The pipeline's schedule (`bake.neural.distill`: cosine-decayed Adam, MLP at a third of the
    texels' rate, TV on the features) with the environment learnt as a texture."""
    dec = EnvDecoder(size, hidden, env_width, with_sh, seed)
    mlp = [*dec.mlp.parameters(), dec.scale, dec.offset, dec.env_scale, dec.env_offset]
    opt = torch.optim.Adam([{"params": [dec.features, dec.env], "lr": lr}, {"params": mlp, "lr": lr / 3}],
                           betas=(0.9, 0.99))
    base = [g["lr"] for g in opt.param_groups]
    uv, view, rgb = (torch.from_numpy(getattr(samples, k)) for k in ("uv", "view", "rgb"))
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for grp, b in zip(opt.param_groups, base):
            grp["lr"] = b * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        idx = torch.randint(0, len(uv), (min(batch, len(uv)),), generator=g)
        loss = F.mse_loss(dec(uv[idx], view[idx]), rgb[idx]) + tv * N._tv(dec.features) + env_tv * N._tv(dec.env)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return dec.eval()


def flops_per_pixel(hidden: tuple[int, ...], with_sh: bool) -> int:
    """Counted as `NeuralMaterial.flops_per_pixel` counts: dequantisation (16), mirror and n . v
    (21 + 3), SH (25), multiply-adds, activations (sigmoid 4 each); plus the equirect angles
    (atan2 and acos, ~20 each as a GPU's polynomial), the environment's dequantisation (6) and
    a + b * e (6)."""
    dims = (N_FEATURES + 1 + (9 if with_sh else 0),) + tuple(hidden) + (6,)
    macs = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))
    return 16 + 24 + (25 if with_sh else 0) + macs + sum(hidden) + 3 * 4 + 40 + 6 + 6
