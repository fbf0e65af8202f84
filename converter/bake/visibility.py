"""Which light directions each surface point sees: shadow maps of the high-detail mesh.

The material fit needs it because the renderer that shows the asset (Cycles, any path tracer)
casts shadows: without visibility in the fit, a shadow in the photos can only be explained by a
darker albedo, and the renderer then darkens that spot a second time.
"""
from __future__ import annotations

import numpy as np
import torch

from ..mesh import Mesh
from .ao import MIN_COS, _basis, _bounds, _projection, shadow_map


def visibility(pos: np.ndarray, nrm: np.ndarray, occluder: Mesh, directions: np.ndarray,
               map_size: int = 1024) -> np.ndarray:
    """(P, K) float16: 1 where point p sees along direction k past `occluder`, else 0.

    Same shadow-map test as bake.ao (normal offset of one map pixel, slope-scaled bias), so the
    fit and the baked occlusion agree; directions facing away from the normal count as visible
    (their shading weight is zero anyway).
    """
    centre, radius = _bounds(map_size, occluder.vertices, pos)
    pixel = 2.0 * radius / map_size
    q = pos + nrm * pixel - centre
    cols = torch.from_numpy(np.concatenate([q, nrm, np.ones((len(q), 1))], 1).T.astype(np.float32))
    verts = (occluder.vertices - centre).astype(np.float32)
    out = np.ones((len(pos), len(directions)), np.float16)
    for k, d in enumerate(np.asarray(directions, np.float64)):
        d = d / np.linalg.norm(d)
        basis = _basis(d)
        depth = torch.from_numpy(shadow_map(verts, occluder.faces, basis, radius, map_size)).reshape(-1)
        x, y, z, cos = _projection(basis, radius, map_size) @ cols
        index = y.long().clamp_(0, map_size - 1).mul_(map_size).add_(x.long().clamp_(0, map_size - 1))
        z.sub_(cos.clamp_min(MIN_COS).reciprocal_().mul_(pixel))
        seen = (depth.take(index) >= z) | (cos <= 0)
        out[:, k] = seen.numpy()
    return out
