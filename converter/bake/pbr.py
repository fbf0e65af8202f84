"""Inverse rendering on the mesh: environment light and PBR material from the training photos.

Why on the mesh and not in the field: the asset is what gets relit, so the material is fitted on
the very surface the renderer will shade (positions and normals of the high-detail surface, seen
through the rasterizer), under a shading model close to glTF's (Lambert + GGX, Schlick Fresnel
with F0 = 0.04 for dielectrics), with each pixel's visibility of each light lobe from shadow maps
(bake.visibility), so the albedo does not absorb the shadows that the renderer casts again.

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
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..fields.hashgrid import HashGrid, HashGridConfig
from ..fields.layers import mlp
from ..mesh import Mesh
from ..render.raster import photo_object_pixels, rasterize_view
from .envlight import SGLight, fibonacci_sphere
from .envmap import EnvMapLight
from .surface import Surface, project
from .texture import interpolate
from .visibility import visibility

MIN_ROUGHNESS = 0.08
# The light learns this many times faster than the material. Why: a metal's colour and the light
# it mirrors are only known as a product, and at one learning rate the light's scale lagged, so
# the fit settled on a metal ~0.6x too dark under a too-bright light (tests/test_envmap.py: a gold
# metal's luminance 0.62x of the truth at 1x, 0.82x at 3x; 10x overshoots the matte albedo).
LIGHT_LR_SCALE = 3.0
# The albedo smoothness while the light goes first, per light model (PbrWeights.albedo_smooth_first).
# Not for the map light (None: as after): free texel by texel, behind a smooth albedo it took up a
# metal's reflections while the metal was held off, and the metal came out 0.57x too dark
# (tests/test_envmap.py). 128 SG lobes are too broad to copy a metal's reflections: the same
# test's SG fit still finds the gold above its brightness bar (0.72x of the truth).
ALBEDO_SMOOTH_FIRST: dict[str, float | None] = {"sg": 0.3, "map": None}
LOBES = 128  # light lobes: a sun needs a few sharp ones near it, the sky many broad ones


@dataclass
class PixelSamples:
    """Object pixels of the training photos, each with its point on the surface."""

    points: np.ndarray  # (P, 3) capture frame, on the high-detail surface
    normals: np.ndarray  # (P, 3) unit
    view: np.ndarray  # (P, 3) unit, towards the camera
    rgb: np.ndarray  # (P, 3) linear
    ao: np.ndarray  # (P,) ambient occlusion, 1 = open
    vis: np.ndarray | None = None  # (P, K) float16 visibility of each light lobe's axis


@dataclass
class PbrWeights:
    light_white: float = 0.05
    albedo_smooth: float = 0.005
    # The albedo smoothness while the light goes first (`light_first`). Why 60x: the albedo's
    # coarse hash levels take up an object's shading as fast as the light's lobes learn it, and
    # once they have, nothing moves it back (light and albedo are known only as a product, the
    # loss flat along it); the fitted light then came out too even (a sun's irradiance 0.74x,
    # the ground's 2x the truth) and the old shading showed through under a new light. Held
    # smooth, the albedo leaves the shading to the light; after, the palette's borders sharpen.
    # None: the light model's own (`ALBEDO_SMOOTH_FIRST`); a number is used as given.
    albedo_smooth_first: float | None = None
    roughness_smooth: float = 0.01
    metallic_binary: float = 0.01
    # L1 between nearby points' metallic, from `binary_from` on (with the push). Why: pushed point
    # by point, a quarter to a half of a metal fell to dielectric speckles (milky under a new
    # light); real metalness is piecewise constant. Why not from the start: it spreads metallic's
    # start near 0 and no metal is found (tried: a gold torus came out metallic 0.004).
    metallic_smooth: float = 0.01
    light_smooth: float = 0.002  # neighbouring texels of a map light (bake.envmap), log space
    jitter: float = 0.01  # neighbour distance of the smoothness terms, in box units
    # Share of the steps with roughness held at 0.5 and no metal. Why: a blurry light with a glossy
    # material and a sharp light with a rough one make the same highlights; the roughness moves
    # faster than the light's lobes sharpen, so left free from the start every surface came out
    # glossy (0.18 everywhere on a 0.6-rough object) and highlights too hot under a new light.
    light_first: float = 0.4
    # Share of the steps after which metallic is pushed to 0 or 1. Why late: from the start the
    # push wins against the photos' weak early pull (metallic starts near 0) and no metal is
    # ever found; a gold sphere came out a beige dielectric (tests/test_envmap.py).
    binary_from: float = 0.7


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
                   ao: Callable[[np.ndarray], np.ndarray] | None = None, max_views: int = 60,
                   lobes: int | None = LOBES) -> PixelSamples:
    """Every object pixel the mesh covers in (up to `max_views` of) the photos.

    `ao(uv)` looks up the LOD0 occlusion map at (P, 2) uvs; without it the surface counts as open.
    With `lobes`, each pixel's visibility of the light lobes' axes is traced against `mesh`
    (shadows), which then replaces the occlusion in the fit.
    """
    if len(frames) > max_views:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_views).astype(int)]
    pos, uvs, view, rgb = [], [], [], []
    for f in frames:
        frags = rasterize_view(f, mesh.vertices, mesh.faces, downscale, cull_backfaces=True)
        colour, alpha = load_frame_image(f, downscale)
        hit = photo_object_pixels(frags.tri, alpha)
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
    vis = visibility(points, normals, mesh, fibonacci_sphere(lobes)) if lobes else None
    return PixelSamples(points, normals.astype(np.float32), np.concatenate(view).astype(np.float32),
                        np.concatenate(rgb), occl.astype(np.float32), vis)


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


Light = SGLight | EnvMapLight


def shade(light: Light, albedo, roughness, metallic, n, v, ao, vis=None) -> torch.Tensor:
    """Linear radiance towards v: Lambert + GGX under the SG environment, with each lobe's
    visibility (shadows) when given, else times the ambient occlusion."""
    diffuse = albedo * (1 - metallic)[:, None] / math.pi * light.irradiance(n, vis)
    f0 = 0.04 * (1 - metallic)[:, None] + albedo * metallic[:, None]
    out = diffuse + light.specular(n, v, roughness, f0, vis)
    return out if vis is not None else out * ao[:, None]


@dataclass
class PbrFit:
    light: Light
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
        return tuple(torch.cat([o[k] for o in outs]).cpu().numpy() for k in range(3))

    def _unit(self, p: np.ndarray) -> torch.Tensor:
        unit = torch.from_numpy(((p - self.lo) / self.scale).clip(0, 1).astype(np.float32))
        return unit.to(next(self.material.parameters()).device)


def fit_pbr(samples: PixelSamples, lo: np.ndarray, scale: float, steps: int = 1500, batch: int = 1 << 13,
            lr: float = 0.01, weights: PbrWeights = PbrWeights(), seed: int = 0, light_model: str = "sg",
            progress: Callable[[int, int], None] | None = None, device: str | torch.device = "cpu") -> PbrFit:
    """Jointly fit the light (`light_model`: "sg" or "map") and the material field to the photos
    (MSE in sRGB, as PSNR counts), on `device` (the field's: on a GPU this fit was most of the bake),
    the fit handed back on the CPU, where the maps are read from it. The batches are drawn on the
    CPU either way, so a CPU run is the same with or without a GPU around."""
    torch.manual_seed(seed)
    if weights.albedo_smooth_first is None:
        weights = replace(weights, albedo_smooth_first=ALBEDO_SMOOTH_FIRST[light_model]
                          if ALBEDO_SMOOTH_FIRST[light_model] is not None else weights.albedo_smooth)
    mean_rgb = float(samples.rgb.mean())
    # start: grey albedo 0.5 under a uniform light that reproduces the photos' mean brightness
    lobes = samples.vis.shape[1] if samples.vis is not None else LOBES
    radiance = max(mean_rgb / 0.5 / max(float(samples.ao.mean()), 0.3), 1e-3)
    light = (EnvMapLight(radiance=radiance, lobes=lobes) if light_model == "map"
             else SGLight(lobes, radiance=radiance, sharpness=16.0))
    fit = PbrFit(light.to(device), MaterialField().to(device), np.asarray(lo, np.float32), float(scale))
    data = {k: torch.from_numpy(getattr(samples, k)).to(device) for k in ("points", "normals", "view", "rgb", "ao")}
    if samples.vis is not None:
        data["vis"] = torch.from_numpy(samples.vis).to(device)
    data["unit"] = fit._unit(samples.points)
    opt = torch.optim.Adam([{"params": fit.material.grid.parameters(), "eps": 1e-15},
                            {"params": fit.material.net.parameters()},
                            {"params": light.parameters(), "scale": LIGHT_LR_SCALE}], lr=lr, betas=(0.9, 0.99), fused=True)
    target_srgb = linear_to_srgb(data["rgb"]).clamp(0, 1)
    n = len(samples.points)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.1 ** (step / steps) * g.get("scale", 1.0)
        idx = torch.randint(0, n, (min(batch, n),)).to(device)
        loss, record = _loss(fit, data, target_srgb, idx, weights, light_first=step < weights.light_first * steps,
                             binary=step >= weights.binary_from * steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            fit.history.append({"step": step + 1, **record})
        if progress:
            progress(step + 1, steps)
    fit.light, fit.material = fit.light.cpu(), fit.material.cpu()
    return fit


def _loss(fit: PbrFit, data: dict, target_srgb: torch.Tensor, idx: torch.Tensor, w: PbrWeights,
          light_first: bool = False, binary: bool = True):
    x = data["unit"][idx]
    albedo, rough, metal = fit.material(x)
    if light_first:  # a fixed, mid roughness: highlights must first be explained by the light's shape
        rough, metal = torch.full_like(rough, 0.5), torch.zeros_like(metal)
    vis = data["vis"][idx].float() if "vis" in data else None
    pred = shade(fit.light, albedo, rough, metal, data["normals"][idx], data["view"][idx], data["ao"][idx], vis)
    rgb = torch.nn.functional.mse_loss(linear_to_srgb(pred).clamp(max=1.0), target_srgb[idx])
    # the smoothness priors on a quarter of the batch: a mean over 2k pairs is as good a prior,
    # and the second material evaluation was a fifth of the fit's time
    q = max(1, len(x) // 4)
    xn = (x[:q] + torch.randn_like(x[:q]) * w.jitter).clamp(0, 1)
    a2, r2, m2 = fit.material(xn)
    white = fit.light.whiteness()
    # log-albedo differences: a prior on plain differences would pay the fit to darken the albedo
    # and brighten the light (the product, all the photos constrain, unchanged)
    log_diff = (albedo[:q].clamp(min=1e-3).log() - a2.clamp(min=1e-3).log()).abs().mean()
    a_smooth = w.albedo_smooth_first if light_first else w.albedo_smooth
    priors = (a_smooth * log_diff + w.roughness_smooth * (rough[:q] - r2).abs().mean()
              + binary * (w.metallic_binary * (metal * (1 - metal)).mean()
                          + w.metallic_smooth * (metal[:q] - m2).abs().mean()) + w.light_white * white
              + w.light_smooth * fit.light.smoothness())
    psnr = -10 * math.log10(max(float(rgb.detach()), 1e-10))
    return rgb + priors, {"psnr": round(psnr, 2), "loss": float((rgb + priors).detach())}


def bake_material_maps(fit: PbrFit, points: np.ndarray, ao: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base colour (P, 3) sRGB in [0, 1] and ORM (P, 3) linear for texel points on the surface."""
    albedo, rough, metal = fit.query(points)
    orm = np.stack([ao, rough, metal], -1).astype(np.float32)
    return linear_to_srgb(albedo).clip(0, 1).astype(np.float32), orm
