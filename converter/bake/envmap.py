"""Environment light as an equirect radiance map, shaded by split sum (Karis 2013).

Why a map and not only spherical Gaussians (bake.envlight): a mirror-like surface shows the
environment itself. 128 SG lobes ~18 degrees apart hold no detail finer than that, so the
material fit could only explain a glossy cube's sharp reflections or a metal's tinted ones by a
rough surface and a bright albedo: the asset then looked matte under any new light. A 64 x 128
map (2.8 degrees a texel) holds what a 0.2-rough lobe sees; rougher lobes read prefiltered
copies, each a fixed linear map of the texels, so the fit stays exact and differentiable with
no Monte Carlo noise.

Not the default (`pbr_light = "map"` selects it): measured, it fits the photos better and
relights worse than the SGs, on the matte suzanne and on the mixed-materials scene; how sharp
the light and how glossy the surface is are only known together, and the map's freedom goes to
the light (docs/design.md). It is kept for glossy captures whose geometry is good enough to
pin the light down; its light terms took ~4x less time per step than the SGs (one
measurement, on a busy machine).

Shadows keep working as with the SGs: each pixel's visibility of the 128 fibonacci directions
(bake.visibility) weighs the diffuse light per direction cell, and the specular light by its
visibility around the reflected direction.

Conventions as bake.envlight: capture-frame unit vectors, linear radiance, perceptual roughness
(alpha = roughness^2); layout of bake.asset.EnvLight's equirect.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .envlight import equirect_directions, fibonacci_sphere, solid_angles

LEVEL_ROUGHNESS = (0.25, 0.4, 0.55, 0.7, 0.85, 1.0)  # prefiltered levels above the raw map
VIS_SHARPNESS = 16.0  # softness of the visibility lookup between the fibonacci directions


def prefilter_matrix(height_in: int, height_out: int, roughness: float) -> np.ndarray:
    """(out texels, in texels): the lobe-weighted mean radiance around each output direction.

    The GGX lobe of `roughness` as an SG of sharpness 2 / alpha^2 about the reflected direction
    (the split-sum assumption n = v = r)."""
    alpha = roughness * roughness
    sharp = 2.0 / (alpha * alpha)
    d_in = equirect_directions(height_in).reshape(-1, 3).astype(np.float64)
    d_out = equirect_directions(height_out).reshape(-1, 3).astype(np.float64)
    w = np.exp(sharp * (d_out @ d_in.T - 1.0)) * solid_angles(height_in)[None]
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def env_brdf(nv: torch.Tensor, roughness: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Split sum's second factor, the GGX BRDF integrated over the hemisphere, by Karis' analytic
    fit ("Physically based shading on mobile", 2014): F0 * A + B."""
    c0 = torch.tensor([-1.0, -0.0275, -0.572, 0.022], device=roughness.device)
    c1 = torch.tensor([1.0, 0.0425, 1.04, -0.04], device=roughness.device)
    r = roughness[:, None] * c0 + c1
    a004 = torch.minimum(r[:, 0] * r[:, 0], torch.exp2(-9.28 * nv)) * r[:, 0] + r[:, 1]
    a = -1.04 * a004 + r[:, 2]
    b = 1.04 * a004 + r[:, 3]
    return f0 * a[:, None] + b[:, None]


def _lookup(maps: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Bilinear radiance of (L, 3, H, 2H) equirect maps along unit directions (N, 3): (L, N, 3),
    wrapping around in longitude."""
    h, w = maps.shape[-2:]
    padded = torch.cat([maps[..., -1:], maps, maps[..., :1]], -1)
    phi = torch.atan2(d[:, 1], d[:, 0])
    theta = torch.asin(d[:, 2].clamp(-1, 1))
    x = (0.5 - phi / (2 * math.pi)) * w + 1.0  # pixel units of the padded map, edges at integers
    gx = 2 * x / (w + 2) - 1
    gy = -2 * theta / math.pi
    grid = torch.stack([gx, gy], -1)[None, :, None].expand(len(maps), -1, -1, -1)
    out = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].permute(0, 2, 1)


class EnvMapLight(nn.Module):
    """Learnt log-radiance equirect map, prefiltered by roughness for specular, cell-summed for
    diffuse against the visibility of `lobes` fibonacci directions."""

    def __init__(self, height: int = 64, radiance: float = 1.0, lobes: int = 128):
        super().__init__()
        self.height = height
        self.log_env = nn.Parameter(torch.full((height, 2 * height, 3), math.log(radiance)))
        axes = fibonacci_sphere(lobes)
        self.register_buffer("axes", torch.from_numpy(axes))
        small = self.small = height // 4  # diffuse: a 16 x 32 map is plenty for a cosine lobe
        d_small = equirect_directions(small).reshape(-1, 3)
        self.register_buffer("d_small", torch.from_numpy(d_small))
        self.register_buffer("omega_small", torch.from_numpy(solid_angles(small).astype(np.float32)))
        self.register_buffer("cell", torch.from_numpy(np.argmax(d_small @ axes.T, 1)))
        self.mid = height // 2  # the prefiltered levels read a half-size copy
        mats = [prefilter_matrix(self.mid, self.mid if r < 0.5 else small, r) for r in LEVEL_ROUGHNESS]
        for i, m in enumerate(mats):
            self.register_buffer(f"pre{i}", torch.from_numpy(m))

    def env(self) -> torch.Tensor:
        return self.log_env.exp()

    def whiteness(self) -> torch.Tensor:
        """Mean squared chromatic deviation of the texels, relative to their brightness."""
        e = self.env()
        return ((e - e.mean(-1, keepdim=True)) ** 2).sum(-1).div(e.mean(-1) ** 2 + 1e-8).mean()

    def smoothness(self) -> torch.Tensor:
        """Mean absolute log difference of neighbouring texels: directions no photo reflects are
        filled from their neighbours rather than left at their start."""
        le = self.log_env
        wrap = torch.cat([le, le[:, :1]], 1)
        return (wrap[:, 1:] - wrap[:, :-1]).abs().mean() + (le[1:] - le[:-1]).abs().mean()

    def _down(self, e: torch.Tensor, size: int) -> torch.Tensor:
        """(size, 2 size, 3) area mean of the (H, 2H, 3) map."""
        return F.adaptive_avg_pool2d(e.permute(2, 0, 1)[None], (size, 2 * size))[0].permute(1, 2, 0)

    def radiance(self, d: torch.Tensor) -> torch.Tensor:
        return _lookup(self.env().permute(2, 0, 1)[None], d)[0]

    def _vis_weights(self, d: torch.Tensor) -> torch.Tensor:
        w = torch.exp(VIS_SHARPNESS * (d @ self.axes.t() - 1.0))
        return w / w.sum(-1, keepdim=True)

    def irradiance(self, n: torch.Tensor, vis: torch.Tensor | None = None) -> torch.Tensor:
        """E(n) = sum over the 16 x 32 texels of V L max(n.l, 0) dl; V of the texel's cell."""
        small = self._down(self.env(), self.small)
        weight = (n @ self.d_small.t()).clamp(min=0) * self.omega_small  # (N, T)
        # the coarse quadrature is a few % off pi for a uniform light, depending on n: rescale
        weight = weight * (math.pi / weight.sum(-1, keepdim=True).clamp(min=1e-8))
        if vis is not None:
            weight = weight * vis[:, self.cell]
        return weight @ small.reshape(-1, 3)

    def specular(self, n: torch.Tensor, v: torch.Tensor, roughness: torch.Tensor, f0: torch.Tensor,
                 vis: torch.Tensor | None = None) -> torch.Tensor:
        nv = (n * v).sum(-1).clamp(min=1e-4)
        refl = F.normalize(2 * nv[:, None] * n - v, dim=-1)
        e = self.env()
        half = self._down(e, self.mid).reshape(-1, 3)
        levels = [_lookup(e.permute(2, 0, 1)[None], refl)[0]]
        for i, r in enumerate(LEVEL_ROUGHNESS):
            m = getattr(self, f"pre{i}") @ half
            size = int(math.sqrt(len(m) / 2))
            levels.append(_lookup(m.reshape(size, 2 * size, 3).permute(2, 0, 1)[None], refl)[0])
        stack = torch.stack(levels, 1)  # (N, L, 3)
        knots = torch.tensor((0.0,) + LEVEL_ROUGHNESS, device=roughness.device)
        r = roughness.clamp(0, 1)
        hi = torch.searchsorted(knots, r.detach().contiguous()).clamp(1, len(knots) - 1)
        t = ((r - knots[hi - 1]) / (knots[hi] - knots[hi - 1])).clamp(0, 1)[:, None]
        rows = torch.arange(len(r), device=r.device)
        lit = stack[rows, hi - 1] * (1 - t) + stack[rows, hi] * t
        if vis is not None:
            lit = lit * (self._vis_weights(refl) * vis).sum(-1, keepdim=True)
        return lit * env_brdf(nv, r, f0)


@torch.no_grad()
def envmap_equirect(light: EnvMapLight, height: int = 64) -> np.ndarray:
    e = light.env().permute(2, 0, 1)[None]
    if height != light.height:
        e = F.interpolate(e, size=(height, 2 * height), mode="area" if height < light.height else "bilinear")
    return e[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
