"""Signed-distance field on the hash grid, rendered with NeuS interval opacities.

Why an SDF: a density field's surface is wherever opacity happens to build up, a few samples soft,
with bumps wherever the texture has an edge. A signed distance with a unit gradient (eikonal) has
one zero crossing per surface, so the mesh is its zero level set, found with sub-voxel accuracy,
closed and free of floaters by construction.

Rendering (render.volume) turns the SDF of consecutive samples into interval opacities (NeuS),
which are unbiased at the surface for head-on and grazing rays alike. The eikonal and curvature
terms use finite differences (Neuralangelo): they need only first-order gradients, which is all
the hash-grid kernel provides.

Units: the field sees the cubic object box as [0, 1]^3 and its distances (and beta, the width of
the surface's opacity ramp) are in those units.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hashgrid import HashGrid, HashGridConfig, keep_levels, level_resolutions
from .layers import mlp, sh_encode
from .reflect import ReflectionEncoding


class SdfField(nn.Module):
    """sdf(x) and rgb(x, d) for x in the unit cube."""

    def __init__(self, grid: HashGridConfig, hidden: int = 64, geo_features: int = 15,
                 geometry_max_resolution: int = 256, init_radius: float = 0.3, init_beta: float = 0.02,
                 reflective: bool = False, normal_gradients: bool = False):
        super().__init__()
        self.normal_gradients = normal_gradients
        self.grid = HashGrid(grid)
        # the prior shape the net refines, as an SDF grid: the visual hull when there are masks
        self.register_buffer("base_grid", sphere_grid(32, init_radius), persistent=True)
        res = level_resolutions(grid)
        self.geo_levels = max(sum(r <= geometry_max_resolution for r in res), 1)
        self.level_res = res
        self.geo_dim = self.geo_levels * grid.features
        self.sdf_net = mlp([self.geo_dim + 3, hidden, 1 + geo_features])
        with torch.no_grad():  # start as a sphere: the base term carries it, the net adds detail
            self.sdf_net[-1].weight.mul_(0.01)
            self.sdf_net[-1].bias.zero_()
        # reflective: the colour head sees the view mirrored about the normal (fields.reflect)
        self.reflection = ReflectionEncoding() if reflective else None
        view_dim = 16 if self.reflection is None else self.reflection.out_dim
        self.color_net = mlp([geo_features + self.grid.out_dim - self.geo_dim + view_dim, hidden, hidden, 3])
        self.log_beta = nn.Parameter(torch.tensor(math.log(init_beta)))
        self.beta_min = 1e-4
        # annealed ceiling on beta (see train.schedule.beta_ceiling); learning alone is too slow
        self.register_buffer("beta_max", torch.tensor(init_beta), persistent=True)
        # coarse-to-fine: geometry levels above this are zeroed (Neuralangelo); colour sees all
        self.register_buffer("active_levels", torch.tensor(self.geo_levels), persistent=True)

    def beta(self) -> torch.Tensor:
        return torch.minimum(self.log_beta.exp(), self.beta_max).clamp(min=self.beta_min)

    def set_active_levels(self, n: int) -> None:
        self.active_levels.fill_(max(1, min(int(n), self.geo_levels)))

    def finest_active_resolution(self) -> int:
        return self.level_res[int(self.active_levels) - 1]

    def _geo_input(self, x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        geo = feats[:, : self.geo_dim]
        if int(self.active_levels) < self.geo_levels:
            geo = keep_levels(geo, int(self.active_levels), self.grid.cfg.features)
        return torch.cat([geo, (x - 0.5) * 2.0], dim=1)

    def set_base(self, grid: torch.Tensor) -> None:
        """Prior SDF on a regular grid over the unit cube, indexed [x, y, z] (unit-cube distances)."""
        self.base_grid = grid.to(self.base_grid.device, torch.float32).contiguous()

    def _base(self, x: torch.Tensor) -> torch.Tensor:
        g = (x * 2.0 - 1.0).flip(-1).view(1, -1, 1, 1, 3)  # grid_sample wants (z, y, x) order
        return F.grid_sample(self.base_grid[None, None], g, mode="bilinear", padding_mode="border",
                             align_corners=False).view(-1)

    def sdf(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance (unit-cube units, < 0 inside) and the feature vector colour needs."""
        feats = self.grid(x)
        h = self.sdf_net(self._geo_input(x, feats))
        return self._base(x) + h[:, 0], torch.cat([h[:, 1:], feats[:, self.geo_dim:]], dim=1)

    def sdf_only(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf(x)[0]

    def color(self, geo: torch.Tensor, d: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Colour of points with features `geo` seen along `d`; a reflective field needs the
        points `x` too, for their normals."""
        if self.reflection is None:
            return torch.sigmoid(self.color_net(torch.cat([geo, sh_encode(d)], dim=-1)))
        if x is None:
            raise ValueError("a reflective field's colour needs the points x, for their normals")
        return torch.sigmoid(self.color_net(torch.cat([geo, self.reflection(d, self.normal(x))], dim=-1)))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit outward normals (N, 3) by finite differences at the finest active level's scale.

        With `normal_gradients` (training only) the colour loss reaches the surface through them
        (Ref-NeuS): a reflection that lands wrong tilts the surface. Four evaluations on a
        tetrahedron, not six central differences: normals cost a reflective field the most.
        """
        eps = 1.0 / self.finest_active_resolution()
        with torch.set_grad_enabled(self.normal_gradients and torch.is_grad_enabled()):
            grad = tetra_gradient(self.sdf_only, x, eps)
        return grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-8)

    def gradient(self, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Central-difference gradient (N, 3) and Laplacian (N,) of the SDF at x.

        Finite differences over a step tied to the finest active level also regularise: the
        gradient sees the field at the scale it is being fitted at (Neuralangelo, §3.2).
        """
        n = x.shape[0]
        offs = torch.eye(3, dtype=x.dtype, device=x.device) * eps
        pts = torch.cat([x[None] + offs[:, None], x[None] - offs[:, None], x[None]], 0).reshape(-1, 3)
        s = self.sdf_only(pts).view(7, n)
        grad = (s[0:3] - s[3:6]).t() / (2 * eps)
        lap = (s[0:3] + s[3:6] - 2 * s[6:7]).sum(0) / (eps * eps)
        return grad, lap


TETRA = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


def tetra_gradient(f, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Gradient (N, 3) of the scalar field f at x from its values at the corners of a regular
    tetrahedron around each point: sum_k v_k v_k^T = 4 I, so sum_k v_k f(x + eps v_k) = 4 eps grad."""
    v = TETRA.to(x)
    s = f((x[None] + eps * v[:, None]).reshape(-1, 3)).view(4, -1)
    return (v[:, None, :] * s[..., None]).sum(0) / (4.0 * eps)


def sphere_grid(res: int, radius: float) -> torch.Tensor:
    g = (torch.arange(res, dtype=torch.float32) + 0.5) / res - 0.5
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    return (x * x + y * y + z * z).sqrt() - radius


def hull_sdf(hull: np.ndarray) -> torch.Tensor:
    """Signed distance (unit-cube units) of a boolean occupancy grid: < 0 inside.

    Smoothed by a cell so the prior has no stair steps for the net to undo. The same numbers as
    `0.5 - edt(hull)` inside and `edt(~hull) - 0.5` outside, but scipy's distance_transform_edt
    turns its nearest-cell indices into distances with four full-grid temporaries, per call;
    here both transforms share one index array and the distances are taken a slice at a time
    (exact: integer squared distances, so bit-identical), and the peak at 128^3 is 64 MiB
    instead of 114 MiB (tracemalloc). That transient sat in every training process's memory.
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    hull = np.asarray(hull, dtype=bool)
    res = hull.shape[0]
    sdf = np.empty(hull.shape, np.float64)
    nearest = np.empty((hull.ndim,) + hull.shape, np.int32)
    for inside in (True, False):
        distance_transform_edt(hull if inside else ~hull, return_distances=False, return_indices=True,
                               indices=nearest)
        for i in range(hull.shape[0]):
            d = np.sqrt(_squared_distance(nearest[:, i], i))
            h = hull[i]
            # cell centres sit half a cell off the boundary
            np.copyto(sdf[i], (0.5 - d if inside else d - 0.5) / res, where=h if inside else ~h)
    return torch.from_numpy(gaussian_filter(sdf, 1.0).astype("float32"))


def _squared_distance(nearest: np.ndarray, i: int) -> np.ndarray:
    """Squared distance (float64) from each cell of slice i to the cell `nearest` names."""
    rows = np.arange(nearest.shape[1])[:, None]
    cols = np.arange(nearest.shape[2])[None, :]
    d2 = (nearest[0] - i).astype(np.float64) ** 2
    d2 += (nearest[1] - rows).astype(np.float64) ** 2
    d2 += (nearest[2] - cols).astype(np.float64) ** 2
    return d2
