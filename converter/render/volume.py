"""Volume rendering of the field through the occupancy grid, in two passes.

Pass 1 evaluates density only, without autograd, at every occupied sample; pass 2 re-evaluates
with gradients only the samples that still see the camera (transmittance > `min_transmittance`).
On an opaque object this drops everything behind the first surface, which is most of the cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fields.nerf import NerfField
from ..fields.occupancy import OccupancyGrid
from .rays import Box, intersect_box


@dataclass
class RenderOut:
    rgb: torch.Tensor  # (R, 3) composited over nothing (premultiplied)
    opacity: torch.Tensor  # (R,)
    depth: torch.Tensor  # (R,) expected distance, 0 where empty
    samples: int  # samples evaluated with gradients
    sparsity: torch.Tensor | float = 0.0  # mean per-sample opacity: what an emptiness prior penalises


def _sample_grid(o, d, box: Box, dt: float, max_samples: int, jitter: bool):
    """Padded sample distances (R, S) and a validity mask."""
    near, far = intersect_box(o, d, box)
    offset = torch.rand(o.shape[0], 1) if jitter else torch.full((o.shape[0], 1), 0.5)
    t = near[:, None] + (torch.arange(max_samples)[None, :] + offset) * dt
    valid = (t < far[:, None]) & (far > near)[:, None]
    return t, valid


def _composite(sigma: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and transmittance before each sample, for padded densities (R, S)."""
    tau = sigma * dt
    alpha = 1.0 - torch.exp(-tau)
    trans = torch.exp(-torch.cumsum(tau, dim=1) + tau)  # exclusive
    return alpha * trans, trans


def render_rays(field: NerfField, occ: OccupancyGrid, o: torch.Tensor, d: torch.Tensor, box: Box,
                dt: float, *, jitter: bool = False, min_transmittance: float = 1e-3,
                max_distance: float | None = None) -> RenderOut:
    """Colour, opacity and depth of rays; `max_distance` caps how far they march (short probes)."""
    length = box.diagonal if max_distance is None else min(box.diagonal, max_distance)
    max_samples = int(length / dt) + 2
    t, valid = _sample_grid(o, d, box, dt, max_samples, jitter)
    pts = box.to_unit(o[:, None, :] + t[..., None] * d[:, None, :])
    valid &= occ.lookup(pts.view(-1, 3)).view_as(valid)
    with torch.no_grad():
        sigma0 = torch.zeros_like(t)
        if valid.any():
            sigma0[valid] = field.density(pts[valid])[0]
        _, trans0 = _composite(sigma0, dt)
    keep = valid & (trans0 > min_transmittance)
    sigma = torch.zeros_like(t)
    rgb_s = torch.zeros(*t.shape, 3)
    n = int(keep.sum())
    sparsity = 0.0
    if n:
        s, geo = field.density(pts[keep])
        sparsity = (1.0 - torch.exp(-s * dt)).mean()
        dirs = d[:, None, :].expand(-1, t.shape[1], -1)[keep]
        sigma = sigma.index_put((keep,), s)
        rgb_s = rgb_s.index_put((keep,), field.color(geo, dirs))
    weights, _ = _composite(sigma, dt)
    rgb = (weights[..., None] * rgb_s).sum(1)
    opacity = weights.sum(1)
    depth = (weights * t).sum(1)
    return RenderOut(rgb, opacity, depth, n, sparsity)


def render_chunked(field, occ, o, d, box, dt, chunk: int = 8192, max_distance: float | None = None) -> RenderOut:
    """Inference over many rays without autograd."""
    outs = []
    with torch.no_grad():
        for a in range(0, o.shape[0], chunk):
            outs.append(render_rays(field, occ, o[a:a + chunk], d[a:a + chunk], box, dt,
                                    max_distance=max_distance))
    return RenderOut(torch.cat([x.rgb for x in outs]), torch.cat([x.opacity for x in outs]),
                     torch.cat([x.depth for x in outs]), sum(x.samples for x in outs))


@torch.no_grad()
def march_density(field: NerfField, occ: OccupancyGrid, o: torch.Tensor, d: torch.Tensor, box: Box,
                  dt: float, segment: int = 32, min_transmittance: float = 1e-3, level: float = 0.5):
    """Median depth (where the ray's opacity crosses 0.5, 0 if never) and opacity per ray.

    The median, not the expected depth: a NeRF surface is a few samples soft, and the mean of the
    weights lies behind where the surface becomes opaque (measured: ~2 cm on a 2.4-unit object).
    Rays leave the loop once nearly opaque, so the inside of objects is never evaluated.
    """
    near, far = intersect_box(o, d, box)
    n = o.shape[0]
    depth = torch.zeros(n)
    log_t = torch.zeros(n)
    active = torch.nonzero(far > near).squeeze(1)
    max_samples = int(box.diagonal / dt) + 2
    half = float(torch.log(torch.tensor(1.0 - level)))
    for start in range(0, max_samples, segment):
        if len(active) == 0:
            break
        t = near[active, None] + (torch.arange(start, start + segment)[None, :] + 0.5) * dt
        valid = t < far[active, None]
        pts = box.to_unit(o[active, None, :] + t[..., None] * d[active, None, :])
        valid &= occ.lookup(pts.view(-1, 3)).view_as(valid)
        sigma = torch.zeros_like(t)
        if valid.any():
            sigma[valid] = field.density(pts[valid])[0]
        tau = sigma * dt
        after = log_t[active, None] - torch.cumsum(tau, 1)  # log transmittance after each sample
        before = after + tau
        crossing = (before >= half) & (after < half)
        hit = crossing.any(1)
        k = crossing.float().argmax(1)
        rows = torch.arange(len(active))
        # linear in log-transmittance inside the crossing sample
        frac = ((before[rows, k] - half) / tau[rows, k].clamp(min=1e-12)).clamp(0, 1)
        t_hit = t[rows, k] - 0.5 * dt + frac * dt
        depth[active[hit]] = t_hit[hit]
        log_t[active] = after[:, -1]
        alive = (torch.exp(log_t[active]) > min_transmittance) & (far[active] > t[:, -1])
        active = active[alive]
    return depth, 1.0 - torch.exp(log_t)
