"""Inverse rendering on the mesh: environment light and PBR material from the training photos.

Why on the mesh and not in the field: the asset is what gets relit, so the material is fitted on
the very surface the renderer will shade (positions and normals of the high-detail surface, seen
through the rasterizer), under a shading model close to glTF's (Lambert + GGX, Schlick Fresnel
with F0 = 0.04 for dielectrics). What the model leaves out, shadowing, is put back with the
baked ambient occlusion, so the albedo does not absorb the darkening that the renderer adds again.

Why a 3D material field (hash grid + tiny MLP) rather than texels: one fit serves every LOD
(each LOD's texels look it up at their point on the surface), and the hash grid's coarse levels
share evidence between neighbouring points that few photos see.

Light and albedo are only known up to their product; the priors keep them apart: the light is
pulled towards white (most light is), albedo and roughness are smooth across the surface except
where the photos insist (L1 differences between nearby points), metallic is pushed to 0 or 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..fields.hashgrid import HashGrid, HashGridConfig
from ..fields.layers import mlp
from ..mesh import Mesh
from ..render.raster import rasterize_view
from .envlight import SGLight
from .surface import Surface, project
from .texture import interpolate

MIN_ROUGHNESS = 0.08


@dataclass
class PixelSamples:
    """Object pixels of the training photos, each with its point on the surface."""

    points: np.ndarray  # (P, 3) capture frame, on the high-detail surface
    normals: np.ndarray  # (P, 3) unit
    view: np.ndarray  # (P, 3) unit, towards the camera
    rgb: np.ndarray  # (P, 3) linear
    ao: np.ndarray  # (P,) ambient occlusion, 1 = open


@dataclass
class PbrWeights:
    light_white: float = 0.05
    albedo_smooth: float = 0.02
    roughness_smooth: float = 0.05
    metallic_binary: float = 0.01
    jitter: float = 0.01  # neighbour distance of the smoothness terms, in box units


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c):
    """Works on numpy arrays and torch tensors (differentiable)."""
    if isinstance(c, torch.Tensor):
        c = c.clamp(min=0.0)
        return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp(min=1e-8) ** (1 / 2.4) - 0.055)
    c = np.maximum(c, 0.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.maximum(c, 1e-8), 1 / 2.4) - 0.055)


def gather_samples(mesh: Mesh, frames: list[Frame], surface: Surface, downscale: int = 1,
                   ao: Callable[[np.ndarray], np.ndarray] | None = None, max_views: int = 60) -> PixelSamples:
    """Every object pixel the mesh covers in (up to `max_views` of) the photos.

    `ao(uv)` looks up the LOD0 occlusion map at (P, 2) uvs; without it the surface counts as open.
    """
    if len(frames) > max_views:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_views).astype(int)]
    pos, uvs, view, rgb = [], [], [], []
    for f in frames:
        frags = rasterize_view(f, mesh.vertices, mesh.faces, downscale, cull_backfaces=True)
        colour, alpha = load_frame_image(f, downscale)
        hit = frags.tri >= 0
        if alpha is not None:
            hit &= alpha > 0.5
        p = interpolate(mesh.vertices, mesh.faces, frags)[hit]
        pos.append(p)
        uvs.append(interpolate(mesh.uvs, mesh.faces, frags)[hit] if mesh.uvs is not None else np.zeros((len(p), 2)))
        d = f.c2w[:3, 3][None].astype(np.float32) - p
        view.append(d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-8))
        rgb.append(srgb_to_linear(colour[hit]))
    p = np.concatenate(pos).astype(np.float32)
    points, normals = project(surface, p, iterations=2)
    uv = np.concatenate(uvs).astype(np.float32)
    occl = ao(uv) if ao is not None else np.ones(len(p), np.float32)
    return PixelSamples(points, normals.astype(np.float32), np.concatenate(view).astype(np.float32),
                        np.concatenate(rgb), occl.astype(np.float32))


class MaterialField(nn.Module):
    """Albedo (linear), roughness, metallic at points of the unit cube."""

    def __init__(self, grid: HashGridConfig = HashGridConfig(12, 2, 17, 16, 1024)):
        super().__init__()
        self.grid = HashGrid(grid)
        self.net = mlp([self.grid.out_dim, 32, 5])
        with torch.no_grad():  # start grey, half rough, dielectric
            self.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -3.0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.net(self.grid(x))
        albedo = torch.sigmoid(h[:, :3])
        roughness = MIN_ROUGHNESS + (1 - MIN_ROUGHNESS) * torch.sigmoid(h[:, 3])
        return albedo, roughness, torch.sigmoid(h[:, 4])


def shade(light: SGLight, albedo, roughness, metallic, n, v, ao) -> torch.Tensor:
    """Linear radiance towards v: Lambert + GGX under the SG environment, times occlusion."""
    diffuse = albedo * (1 - metallic)[:, None] / math.pi * light.irradiance(n)
    f0 = 0.04 * (1 - metallic)[:, None] + albedo * metallic[:, None]
    return (diffuse + light.specular(n, v, roughness, f0)) * ao[:, None]


@dataclass
class PbrFit:
    light: SGLight
    material: MaterialField
    lo: np.ndarray  # box corner: unit = (x - lo) / scale
    scale: float
    history: list[dict] = field(default_factory=list)

    @torch.no_grad()
    def query(self, points: np.ndarray, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Albedo (P, 3) linear, roughness (P,), metallic (P,) at capture-frame points."""
        outs = [self.material(self._unit(points[i:i + chunk])) for i in range(0, len(points), chunk)]
        if not outs:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)
        return tuple(torch.cat([o[k] for o in outs]).numpy() for k in range(3))

    def _unit(self, p: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((p - self.lo) / self.scale).clip(0, 1).astype(np.float32))


def fit_pbr(samples: PixelSamples, lo: np.ndarray, scale: float, steps: int = 1500, batch: int = 1 << 13,
            lr: float = 0.01, weights: PbrWeights = PbrWeights(), seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> PbrFit:
    """Jointly fit the SG light and the material field to the photos (MSE in sRGB, as PSNR counts)."""
    torch.manual_seed(seed)
    mean_rgb = float(samples.rgb.mean())
    # start: grey albedo 0.5 under a uniform light that reproduces the photos' mean brightness
    light = SGLight(radiance=max(mean_rgb / 0.5 / max(float(samples.ao.mean()), 0.3), 1e-3))
    fit = PbrFit(light, MaterialField(), np.asarray(lo, np.float32), float(scale))
    data = {k: torch.from_numpy(getattr(samples, k)) for k in ("points", "normals", "view", "rgb", "ao")}
    data["unit"] = fit._unit(samples.points)
    opt = torch.optim.Adam([{"params": fit.material.grid.parameters(), "eps": 1e-15},
                            {"params": fit.material.net.parameters()},
                            {"params": light.parameters(), "lr": lr * 0.5}], lr=lr, betas=(0.9, 0.99))
    target_srgb = linear_to_srgb(data["rgb"]).clamp(0, 1)
    n = len(samples.points)
    for step in range(steps):
        for g, base in zip(opt.param_groups, (lr, lr, lr * 0.5)):
            g["lr"] = base * 0.1 ** (step / steps)
        idx = torch.randint(0, n, (min(batch, n),))
        loss, record = _loss(fit, data, target_srgb, idx, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            fit.history.append({"step": step + 1, **record})
        if progress:
            progress(step + 1, steps)
    return fit


def _loss(fit: PbrFit, data: dict, target_srgb: torch.Tensor, idx: torch.Tensor, w: PbrWeights):
    x = data["unit"][idx]
    albedo, rough, metal = fit.material(x)
    pred = shade(fit.light, albedo, rough, metal, data["normals"][idx], data["view"][idx], data["ao"][idx])
    rgb = torch.nn.functional.mse_loss(linear_to_srgb(pred).clamp(max=1.0), target_srgb[idx])
    xn = (x + torch.randn_like(x) * w.jitter).clamp(0, 1)
    a2, r2, _ = fit.material(xn)
    amp = fit.light.log_amplitude.exp()
    white = ((amp - amp.mean(-1, keepdim=True)) ** 2).sum(-1).div(amp.mean(-1) ** 2 + 1e-8).mean()
    # log-albedo differences: a prior on plain differences would pay the fit to darken the albedo
    # and brighten the light (the product, all the photos constrain, unchanged)
    log_diff = (albedo.clamp(min=1e-3).log() - a2.clamp(min=1e-3).log()).abs().mean()
    priors = (w.albedo_smooth * log_diff + w.roughness_smooth * (rough - r2).abs().mean()
              + w.metallic_binary * (metal * (1 - metal)).mean() + w.light_white * white)
    psnr = -10 * math.log10(max(float(rgb.detach()), 1e-10))
    return rgb + priors, {"psnr": round(psnr, 2), "loss": float((rgb + priors).detach())}


def bake_material_maps(fit: PbrFit, points: np.ndarray, ao: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base colour (P, 3) sRGB in [0, 1] and ORM (P, 3) linear for texel points on the surface."""
    albedo, rough, metal = fit.query(points)
    orm = np.stack([ao, rough, metal], -1).astype(np.float32)
    return linear_to_srgb(albedo).clip(0, 1).astype(np.float32), orm
