"""Environment light as a mixture of spherical Gaussians, with closed-form shading.

Why spherical Gaussians (PhySG, Zhang et al. 2021): the cosine lobe and the GGX lobe are close to
SGs too, and the product integral of two SGs has a closed form, so a pixel's diffuse and specular
radiance under the whole environment costs a few exponentials per lobe: no Monte Carlo noise, no
prefiltered mip chain, and exact gradients for the joint fit of light and material. 32 lobes
hold the low and mid frequencies that matte and moderately glossy surfaces reveal; the photos
cannot pin down more.

Conventions: directions are capture-frame unit vectors; radiance is linear. Roughness is the
perceptual one (glTF, Blender): alpha = roughness^2.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def fibonacci_sphere(n: int) -> np.ndarray:
    """n unit vectors spread evenly over the sphere (golden spiral)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1).astype(np.float32)


class SGLight(nn.Module):
    """Sum of K SGs with fixed, evenly spread axes and learnt sharpness and RGB amplitude."""

    def __init__(self, lobes: int = 32, radiance: float = 1.0, sharpness: float = 8.0):
        super().__init__()
        self.register_buffer("axes", torch.from_numpy(fibonacci_sphere(lobes)))
        self.log_sharpness = nn.Parameter(torch.full((lobes,), math.log(sharpness)))
        # start as a uniform environment of the given radiance: sum_k mu_k * integral = 4 pi L
        lobe_integral = 2 * math.pi / sharpness * (1 - math.exp(-2 * sharpness))
        amp = radiance * 4 * math.pi / (lobes * lobe_integral)
        self.log_amplitude = nn.Parameter(torch.full((lobes, 3), math.log(amp)))

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.axes, self.log_sharpness.exp(), self.log_amplitude.exp()

    def whiteness(self) -> torch.Tensor:
        """Mean squared chromatic deviation of the lobes, relative to their brightness."""
        amp = self.log_amplitude.exp()
        return ((amp - amp.mean(-1, keepdim=True)) ** 2).sum(-1).div(amp.mean(-1) ** 2 + 1e-8).mean()

    def smoothness(self) -> torch.Tensor:
        return torch.zeros(())

    def radiance(self, d: torch.Tensor) -> torch.Tensor:
        """L(d) for unit directions (N, 3) -> (N, 3)."""
        axes, sharp, amp = self.params()
        return torch.exp(sharp * (d @ axes.t() - 1.0)) @ amp

    def _convolve(self, axis: torch.Tensor, sharp: torch.Tensor, amp: torch.Tensor,
                  vis: torch.Tensor | None = None) -> torch.Tensor:
        """sum_k V_k <light_k, SG(axis, sharp, amp)> for per-point lobes (N, 3), (N,), (N,) -> (N, 3);
        `vis` (N, K) is each point's visibility of each light lobe (1 without it)."""
        axes, ls, la = self.params()
        # |ls a_k + s axis| from the cosine (both unit vectors): an (N, K) matmul instead of an
        # (N, K, 3) tensor and its norm, forward and backward (a third of the material fit's time)
        cos = (axis @ axes.t()).clamp(-1, 1)
        ls2, s2 = ls[None], sharp[:, None]
        lm = (ls2 * ls2 + s2 * s2 + 2 * ls2 * s2 * cos).clamp(min=1e-12).sqrt().clamp(min=1e-6)
        total = ls2 + s2
        scale = 2 * math.pi / lm * (torch.exp(lm - total) - torch.exp(-lm - total))  # (N, K)
        if vis is not None:
            scale = scale * vis
        return (scale * amp[:, None]) @ la

    def irradiance(self, n: torch.Tensor, vis: torch.Tensor | None = None) -> torch.Tensor:
        """E(n) = integral of V(l) L(l) max(n.l, 0) dl, (N, 3), per lobe by Hill's fitted formula
        (Pettineo, "SG series" 2016). The cosine-as-one-SG product integral is 25 % off at 45
        degrees from a small source, which the albedo then has to absorb."""
        axes, sharp, amp = self.params()
        mu_n = n @ axes.t()  # (N, K)
        lam = sharp[None]
        eml = torch.exp(-lam)
        em2l = eml * eml
        scale = 1 + 2 * em2l - 1 / lam
        bias = (eml - em2l) / lam - em2l
        x = (1 - scale).clamp(min=1e-8).sqrt()
        x0, x1 = 0.36 * mu_n, x / (4 * 0.36)
        y = torch.where(x0.abs() <= x1, (x0 + x1) ** 2 / x, mu_n.clamp(0, 1))
        integral = 2 * math.pi / lam * (1 - em2l)  # of each lobe (exact; Hill drops the e^-2l)
        weight = (scale * y + bias).clamp(min=0) * integral
        if vis is not None:
            weight = weight * vis
        return weight @ amp

    def specular(self, n: torch.Tensor, v: torch.Tensor, roughness: torch.Tensor, f0: torch.Tensor,
                 vis: torch.Tensor | None = None) -> torch.Tensor:
        """GGX specular radiance towards v (Cook-Torrance, Schlick Fresnel, Smith-Schlick G),
        the NDF as an SG warped into the reflection direction (Wang et al. 2009)."""
        alpha = (roughness * roughness).clamp(min=1e-3)
        a2 = alpha * alpha
        nv = (n * v).sum(-1).clamp(min=1e-4)
        refl = 2 * nv[:, None] * n - v
        refl = refl / refl.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        sharp = 2.0 / a2 / (4.0 * nv)
        amp = 1.0 / (math.pi * a2)
        lit = self._convolve(refl, sharp, amp, vis)
        h = refl + v
        h = h / h.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        vh = (v * h).sum(-1).clamp(min=0.0)
        fresnel = f0 + (1 - f0) * ((1 - vh) ** 5)[:, None]
        nl = (n * refl).sum(-1).clamp(min=1e-4)
        k = alpha / 2
        g = (nv / (nv * (1 - k) + k)) * (nl / (nl * (1 - k) + k))
        # BRDF x cosine = D F G / (4 nv nl) x nl: the cosines of the light side cancel
        return lit * fresnel * (g / (4 * nv))[:, None]


def equirect_directions(height: int) -> np.ndarray:
    """(H, 2H, 3) unit directions of an equirect map's pixel centres (layout: bake.asset.EnvLight)."""
    w = 2 * height
    phi = 2 * math.pi * (0.5 - (np.arange(w) + 0.5) / w)
    theta = math.pi * (0.5 - (np.arange(height) + 0.5) / height)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.cos(t) * np.cos(p), np.cos(t) * np.sin(p), np.sin(t)], -1).astype(np.float32)


@torch.no_grad()
def to_equirect(light: SGLight, height: int = 64) -> np.ndarray:
    d = torch.from_numpy(equirect_directions(height).reshape(-1, 3)).to(light.axes.device)
    return light.radiance(d).reshape(height, 2 * height, 3).cpu().numpy().astype(np.float32)


def sh_basis(d: np.ndarray) -> np.ndarray:
    """Real SH, l <= 2, (N, 9), in the usual order (Y00, Y1-1, Y10, Y11, Y2-2, Y2-1, Y20, Y21, Y22)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.stack([np.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
                     1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1),
                     1.092548 * x * z, 0.546274 * (x * x - y * y)], -1)


def solid_angles(height: int) -> np.ndarray:
    """(H * 2H,) solid angle of each equirect texel (layout: bake.asset.EnvLight)."""
    theta = math.pi * (0.5 - (np.arange(height) + 0.5) / height)
    return np.repeat(np.cos(theta) * (math.pi / height) * (math.pi / height), 2 * height)


def sh9(equirect: np.ndarray) -> np.ndarray:
    """Project an equirect radiance map (layout: bake.asset.EnvLight) onto SH l <= 2: (9, 3)."""
    h, w = equirect.shape[:2]
    d = equirect_directions(h).reshape(-1, 3)
    return (sh_basis(d) * solid_angles(h)[:, None]).T @ equirect.reshape(-1, 3).astype(np.float64)
