"""The SDF field, its rendering and extraction, on an analytic sphere (no training needed)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nrconvert.bake.extract import marching
from nrconvert.config import make_config
from nrconvert.fields.sdf import hull_sdf, sphere_grid
from nrconvert.render.rays import Box
from nrconvert.render.volume import render_rays
from nrconvert.train.schedule import PlateauStop, active_levels, beta_ceiling, lr_factor
from nrconvert.train.trainer import _band, build_field

R = 0.25  # sphere radius in the unit cube


def sphere_field(beta: float = 0.004, res: int = 64):
    """A TrainedField whose SDF is exactly the prior sphere (the net outputs zero)."""
    cfg = make_config("tiny", {"device": "cpu", "occupancy_res": 32})
    tf = build_field(cfg, Box(np.zeros(3), np.ones(3)), masked=True, hull=None)
    with torch.no_grad():
        tf.field.sdf_net[-1].weight.zero_()
        tf.field.sdf_net[-1].bias.zero_()
        tf.field.set_base(sphere_grid(res, R))
        tf.field.log_beta.fill_(math.log(beta))
        tf.field.beta_max.fill_(beta)
        tf.field.beta_min = 1e-5
    tf.occupancy.update_sdf(tf.field.sdf_only, _band(tf))
    tf.dt = math.sqrt(3) / 768
    return tf


def _opacity_at_offsets(tf, offsets: list[float], neus: bool) -> np.ndarray:
    """Rays along +x passing the sphere's centre at the given distances (unit cube = world)."""
    o = torch.tensor([[-0.2, 0.5 + h, 0.5] for h in offsets], dtype=torch.float32)
    d = torch.tensor([[1.0, 0.0, 0.0]] * len(offsets))
    with torch.no_grad():
        out = render_rays(tf.field, tf.occupancy, o, d, tf.box, tf.dt, neus=neus)
    return out.opacity.numpy()


def test_neus_silhouette_is_unbiased_and_volsdf_grows():
    tf = sphere_field()
    beta = float(tf.field.beta().detach())
    neus = _opacity_at_offsets(tf, [0.0, R - 4 * beta, R, R + 4 * beta], neus=True)
    assert neus[0] > 0.99 and neus[1] > 0.9
    assert 0.3 < neus[2] < 0.7, f"NeuS opacity at the silhouette should be ~0.5, got {neus[2]:.3f}"
    assert neus[3] < 0.1
    volsdf = _opacity_at_offsets(tf, [R + 2 * beta], neus=False)
    assert volsdf[0] > 0.5, "VolSDF density makes grazing rays opaque outside the surface (why NeuS)"


def test_head_on_depth_is_at_the_surface():
    tf = sphere_field()
    o = torch.tensor([[-0.2, 0.5, 0.5]]); d = torch.tensor([[1.0, 0.0, 0.0]])
    with torch.no_grad():
        out = render_rays(tf.field, tf.occupancy, o, d, tf.box, tf.dt)
    depth = float(out.depth[0] / out.opacity[0])
    assert abs(depth - (0.2 + 0.5 - R)) < 0.01


def test_extraction_is_sub_voxel():
    tf = sphere_field()
    mesh = marching(tf, 32)
    r = np.linalg.norm(mesh.vertices - 0.5, axis=1)
    assert abs(r.mean() - R) < 0.002 and r.std() < 0.003  # a voxel is 1/32 = 0.031
    n = np.cross(*(mesh.vertices[mesh.faces[:, i]] - mesh.vertices[mesh.faces[:, 0]] for i in (1, 2)))
    centre = mesh.vertices[mesh.faces].mean(1) - 0.5
    assert (np.einsum("ij,ij->i", n, centre) > 0).mean() > 0.99, "faces must wind outwards"


def test_occupancy_holds_the_shell_only():
    tf = sphere_field()
    occ = tf.occupancy
    g = (torch.arange(occ.res) + 0.5) / occ.res
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    dist = ((x - 0.5) ** 2 + (y - 0.5) ** 2 + (z - 0.5) ** 2).sqrt() - R
    assert occ.mask[dist.abs() < 0.5 / occ.res].all()
    assert not occ.mask[dist.abs() > 4.0 / occ.res].any()


def test_occupancy_update_checks_the_same_cells_as_nonzero():
    """update_sdf picks the cells beside the occupied ones plus a random 5 % of the rest from flat
    indices now (a third of the memory): the same cells, in the same order, as with nonzero()."""
    from nrconvert.fields.occupancy import OccupancyGrid

    res = 24
    occ = OccupancyGrid(res)
    occ.mask = torch.rand((res,) * 3, generator=torch.Generator().manual_seed(1)) < 0.02
    occ.updates = 1
    seen = []

    def record(x):
        seen.append(x)
        return torch.zeros(len(x))

    torch.manual_seed(7)
    near = torch.nn.functional.max_pool3d(occ.mask[None, None].float(), 3, 1, 1)[0, 0] > 0
    rest = (~near).nonzero()
    rest = rest[torch.randperm(len(rest))[: int(0.05 * len(rest))]]
    expected = torch.cat([near.nonzero(), rest])
    torch.manual_seed(7)
    occ.update_sdf(record, band=0.1)
    cells = (torch.cat(seen) * res - 0.5).round().long()
    assert len(rest) > 100 and torch.equal(cells, expected)


def test_hull_sdf_is_a_signed_distance():
    res = 48
    g = (np.arange(res) + 0.5) / res - 0.5
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    hull = np.sqrt(x * x + y * y + z * z) < 0.3
    sdf = hull_sdf(hull).numpy()
    assert sdf[res // 2, res // 2, res // 2] == pytest.approx(-0.3, abs=0.05)
    assert sdf[0, 0, 0] == pytest.approx(np.sqrt(3) * (0.5 - 0.5 / res) - 0.3, abs=0.05)
    assert ((sdf < 0) == hull).mean() > 0.99


def _reference_hull_sdf(hull: np.ndarray) -> torch.Tensor:
    """hull_sdf as first written, with scipy's full distance transforms (the numbers to keep)."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    res = hull.shape[0]
    sdf = np.where(hull, 0.5 - distance_transform_edt(hull), distance_transform_edt(~hull) - 0.5) / res
    return torch.from_numpy(gaussian_filter(sdf, 1.0).astype("float32"))


@pytest.mark.parametrize("shape", ["sphere", "slab", "noise", "not_cubic"])
def test_hull_sdf_matches_the_full_distance_transform(shape):
    res = 40
    g = (np.arange(res) + 0.5) / res - 0.5
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    rng = np.random.default_rng(3)
    hull = {"sphere": np.sqrt(x * x + y * y + z * z) < 0.3,
            "slab": (np.abs(x) < 0.45) & (np.abs(y) < 0.1) & (np.abs(z + 0.3) < 0.15),
            "noise": rng.random((res,) * 3) < 0.3,
            "not_cubic": (rng.random((res, res // 2, 24)) < 0.8) & (np.abs(x[:, : res // 2, :24]) < 0.3)}[shape]
    assert torch.equal(hull_sdf(hull), _reference_hull_sdf(hull))


def test_schedules():
    assert lr_factor(0.0, 0.05) < lr_factor(0.02, 0.05) == pytest.approx(1.0)
    assert lr_factor(1.0, 0.05) == pytest.approx(0.05)
    assert active_levels(0.0, 4, 9, 0.4) == 4 and active_levels(0.4, 4, 9, 0.4) == 9
    assert beta_ceiling(0.0, 0.02, 0.001, 0.4) == pytest.approx(0.02)
    assert beta_ceiling(0.5, 0.02, 0.001, 0.4) == pytest.approx(0.001)
    stop = PlateauStop(patience=2, min_delta=0.1)
    assert not any(stop.update(v) for v in [20.0, 25.0, 26.0])
    assert not stop.update(26.05)
    assert stop.update(26.05)


def test_background_holds_back_its_fine_levels():
    """Held to its coarse levels, the background's colour cannot depend on the fine levels' table
    rows (so it cannot paint one photo's detail into the directions that photo sees); with every
    level active it does."""
    import torch
    from nrconvert.fields.background import Background

    torch.manual_seed(0)
    bg = Background(levels=8, log2_table=14, max_resolution=512)
    d = torch.nn.functional.normalize(torch.randn(256, 3), dim=-1)
    fine_rows = slice(int(bg.grid.offsets[3]), None)
    bg.set_active_levels(3)
    with torch.no_grad():
        before = bg(d)
        bg.grid.table[fine_rows] += torch.randn_like(bg.grid.table[fine_rows])
        assert torch.equal(bg(d), before)
        bg.set_active_levels(8)
        assert (bg(d) - before).abs().max() > 1e-3
