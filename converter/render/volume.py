"""Volume rendering of the field through the occupancy grid, on packed samples, in two passes.

Samples come from the occupancy-grid marcher (kernels.march): only occupied cells are sampled,
packed per ray. Pass 1 evaluates density only, without autograd; pass 2 re-evaluates with gradients
only the samples that still see the camera (transmittance > `min_transmittance`) and composites
them (kernels.composite). On an opaque surface this drops everything behind the first crossing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fields.occupancy import OccupancyGrid
from ..kernels.composite import composite
from ..kernels.march import march_rays
from .rays import Box, intersect_box


@dataclass
class RenderOut:
    rgb: torch.Tensor  # (R, 3) composited over nothing (premultiplied)
    opacity: torch.Tensor  # (R,)
    depth: torch.Tensor  # (R,) expected distance, 0 where empty
    samples: int  # samples evaluated with gradients


def _ray_ids(offsets: torch.Tensor, n: int) -> torch.Tensor:
    counts = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=offsets.device), counts, output_size=n)


def _transmittance(tau: torch.Tensor, offsets: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Transmittance before each packed sample (segmented exclusive cumsum, float64 sums)."""
    tau64 = tau.double()
    before = torch.cumsum(tau64, 0) - tau64
    return torch.exp(-(before - before[offsets[ids]])).float()


def _offsets(ids: torch.Tensor, rays: int) -> torch.Tensor:
    counts = torch.bincount(ids, minlength=rays)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def render_rays(field, occ: OccupancyGrid, o: torch.Tensor, d: torch.Tensor, box: Box,
                dt: float, *, jitter: bool = False, min_transmittance: float = 1e-3,
                max_distance: float | None = None) -> RenderOut:
    """Colour, opacity and depth of rays; `max_distance` caps how far they march (short probes)."""
    rays = o.shape[0]
    near, far = intersect_box(o, d, box)
    length = box.diagonal if max_distance is None else min(box.diagonal, max_distance)
    if max_distance is not None:
        far = torch.minimum(far, near + max_distance)
    offset = torch.rand(rays, device=o.device) if jitter else 0.5
    t, offsets = march_rays(o, d, near, far, occ.mask, box.lo, box.hi, dt, int(length / dt) + 2, offset)
    ids = _ray_ids(offsets, t.numel())
    pts = box.to_unit(o[ids] + t[:, None] * d[ids]).clamp(0.0, 1.0)
    with torch.no_grad():
        trans = _transmittance(field.density(pts)[0] * dt, offsets, ids) if t.numel() else t
    keep = trans > min_transmittance
    ids, t, pts = ids[keep], t[keep], pts[keep]
    offsets = _offsets(ids, rays)
    if t.numel() == 0:
        z = o.new_zeros(rays)
        return RenderOut(o.new_zeros(rays, 3), z, z, 0)
    sigma, geo = field.density(pts)
    rgb_s = field.color(geo, d[ids])
    rgb, opacity, depth = composite(sigma * dt, rgb_s, t, offsets)
    return RenderOut(rgb, opacity, depth, int(t.numel()))


def render_chunked(field, occ, o, d, box, dt, chunk: int = 8192, max_distance: float | None = None) -> RenderOut:
    """Inference over many rays without autograd."""
    outs = []
    with torch.no_grad():
        for a in range(0, o.shape[0], chunk):
            outs.append(render_rays(field, occ, o[a:a + chunk], d[a:a + chunk], box, dt,
                                    max_distance=max_distance))
    return RenderOut(torch.cat([x.rgb for x in outs]), torch.cat([x.opacity for x in outs]),
                     torch.cat([x.depth for x in outs]), sum(x.samples for x in outs))
