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

import torch
import torch.nn.functional as F
from nrconvert.bake import neural as N
from nrconvert.export.neural import N_FEATURES


def equirect_uv(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """glTF object frame (+Y up): u from atan2(x, -z) (wraps), v = 0 looking straight up."""
    u = torch.atan2(d[:, 0], -d[:, 2]) / (2 * math.pi) + 0.5
    return u, torch.acos(d[:, 1].clamp(-1, 1)) / math.pi


class EnvDecoder(N.Decoder):
    """Features (8-bit) + n . v -> hidden -> 6 linear outputs; colour = sigmoid(a + b * env(mirror)).

    The features, their dequantisation and lookup are `bake.neural.Decoder`'s. `with_sh` also
    feeds SH2 of the mirrored direction; the samples must come from `sh2_reflected_nv`:
    view = (mirror, n . v, normal)."""

    def __init__(self, size: int, hidden: tuple[int, ...] = (12, 12), env_width: int = 128,
                 with_sh: bool = False, seed: int = 0) -> None:
        super().__init__(size, hidden, seed=seed, encoding="sh2_reflected_nv")
        g = torch.Generator().manual_seed(seed + 1)
        self.env = torch.nn.Parameter(0.5 + 0.05 * torch.randn(1, 3, env_width // 2, env_width, generator=g))
        self.env_scale, self.env_offset = torch.nn.Parameter(4 * torch.ones(3)), torch.nn.Parameter(-2 * torch.ones(3))
        self.with_sh = with_sh
        dims = (N_FEATURES + 1 + (9 if with_sh else 0),) + tuple(hidden) + (6,)
        torch.manual_seed(seed)
        self.mlp = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def environment(self, d: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup, wrapping in u (a column copied to each side), clamped in v."""
        e = N.quantise_8bit(self.env)
        e = torch.cat([e[..., -1:], e, e[..., :1]], -1)
        w = e.shape[-1] - 2
        u, v = equirect_uv(d)
        grid = torch.stack([(u * w + 1) / (w + 2) * 2 - 1, v * 2 - 1], -1)[None, :, None, :]
        s = F.grid_sample(e, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return s[0, :, :, 0].t() * self.env_scale + self.env_offset

    def forward(self, uv: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        parts = [self.sample_features(uv), view[:, 3:4]]
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
    """The pipeline's fit (`bake.neural.fit`: cosine-decayed Adam, the MLP at a third of the
    texels' rate, TV on the features) with the environment learnt beside the features."""
    dec = EnvDecoder(size, hidden, env_width, with_sh, seed)
    mlp = [*dec.mlp.parameters(), dec.scale, dec.offset, dec.env_scale, dec.env_offset]
    groups = [{"params": [dec.features, dec.env], "lr": lr}, {"params": mlp, "lr": lr / 3}]
    N.fit(dec, groups, samples, steps, batch=batch, seed=seed,
          prior=lambda: tv * N._tv(dec.features) + env_tv * N._tv(dec.env))
    return dec.eval()


def flops_per_pixel(hidden: tuple[int, ...], with_sh: bool) -> int:
    """Counted as `NeuralMaterial.flops_per_pixel` counts: dequantisation (16), mirror and n . v
    (21 + 3), SH (25), multiply-adds, activations (sigmoid 4 each); plus the equirect angles
    (atan2 and acos, ~20 each as a GPU's polynomial), the environment's dequantisation (6) and
    a + b * e (6)."""
    dims = (N_FEATURES + 1 + (9 if with_sh else 0),) + tuple(hidden) + (6,)
    macs = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))
    return 16 + 24 + (25 if with_sh else 0) + macs + sum(hidden) + 3 * 4 + 40 + 6 + 6
