"""The reflection-aware colour head (fields.reflect) on an analytic sphere."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nrconvert.config import make_config
from nrconvert.fields.reflect import DirectionGrid, reflect
from nrconvert.fields.sdf import sphere_grid
from nrconvert.render.rays import Box
from nrconvert.train.trainer import build_field

R = 0.25  # sphere radius in the unit cube, centred at 0.5


def _sphere(color_input: str):
    cfg = make_config("tiny", {"device": "cpu", "color_input": color_input})
    tf = build_field(cfg, Box(np.zeros(3), np.ones(3)), masked=True, hull=None)
    with torch.no_grad():
        tf.field.sdf_net[-1].weight.zero_()
        tf.field.sdf_net[-1].bias.zero_()
        tf.field.set_base(sphere_grid(64, R))
    return tf.field


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def test_reflect_mirrors_about_the_normal():
    d = _unit(torch.tensor([[1.0, 0.0, -1.0], [0.3, -0.2, -0.9]]))
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    w = reflect(d, n)
    assert torch.allclose(w[0], _unit(torch.tensor([1.0, 0.0, 1.0])), atol=1e-6)
    assert torch.allclose(w[:, :2], d[:, :2]) and torch.allclose(w[:, 2], -d[:, 2])
    assert torch.allclose(reflect(w, n), d, atol=1e-6)


def test_direction_grid_is_continuous_and_trainable():
    g = DirectionGrid()
    with torch.no_grad():
        for p in g.grids:
            p.normal_()
    w = _unit(torch.randn(500, 3))
    near = _unit(w + 1e-4 * torch.randn(500, 3))
    f = g(w)
    assert f.shape == (500, g.out_dim)
    # the equirect's seam (longitude +-pi) and poles are a texel wide; elsewhere it is smooth
    away = (w[:, 0] > -0.9) & (w[:, 2].abs() < 0.95)
    assert (f - g(near))[away].abs().max() < 0.05
    f.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.grids)


def test_normals_are_the_spheres():
    field = _sphere("reflect")
    n = _unit(torch.randn(400, 3))
    x = 0.5 + R * n
    cos = (field.normal(x) * n).sum(-1)
    assert float(torch.rad2deg(torch.acos(cos.clamp(max=1.0))).max()) < 2.0


def test_normal_gradients_reach_the_surface_only_when_asked():
    x = 0.5 + R * _unit(torch.randn(64, 3))
    d = _unit(torch.randn(64, 3))
    for asked in (False, True):
        field = _sphere("reflect")
        field.normal_gradients = asked
        _, geo = field.sdf(x)
        field.color(geo.detach(), d, x).sum().backward()  # geometry reached through normals only
        reached = field.sdf_net[-1].weight.grad
        assert (reached is not None and reached.abs().sum() > 0) == asked


def _mirror_fit(color_input: str, steps: int = 300) -> float:
    """Held-out PSNR of the colour head alone fitted to a mirror sphere reflecting a sky with a sharp
    horizon: the colour of a surface point depends only on the reflected direction."""
    torch.manual_seed(0)
    field = _sphere(color_input)
    params = list(field.color_net.parameters()) + list(field.grid.parameters())
    params += [] if field.reflection is None else list(field.reflection.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, eps=1e-15)

    def sample(n: int):
        normal = _unit(torch.randn(n, 3))
        d = _unit(torch.randn(n, 3))
        d = torch.where(((d * normal).sum(-1, keepdim=True) > 0), -d, d)  # rays that face the surface
        w = reflect(d, normal)
        sky = torch.where(w[:, 2:3] > 0.2, torch.tensor([0.9, 0.9, 1.0]), torch.tensor([0.25, 0.15, 0.05]))
        return 0.5 + R * normal, d, sky

    for _ in range(steps):
        x, d, target = sample(2048)
        _, geo = field.sdf(x)
        loss = torch.nn.functional.mse_loss(field.color(geo, d, x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x, d, target = sample(4096)
        mse = torch.nn.functional.mse_loss(field.color(field.sdf(x)[1], d, x), target)
    return float(-10 * torch.log10(mse))


def test_reflective_head_learns_a_mirror_the_view_head_cannot():
    mirror = _mirror_fit("reflect")
    view = _mirror_fit("view")
    assert mirror > 18.0, f"reflective head: {mirror:.1f} dB"
    assert mirror > view + 5.0, f"reflective {mirror:.1f} dB vs view {view:.1f} dB"


def test_encoding_gradients_are_finite_at_the_poles():
    """A view straight down onto a level surface reflects to the pole of the equirect grid, where
    asin's derivative is infinite: that once turned training losses into NaN."""
    from nrconvert.fields.reflect import ReflectionEncoding

    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.6, -0.8]])
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], requires_grad=True)
    ReflectionEncoding()(d, n).sum().backward()
    assert torch.isfinite(n.grad).all()


def test_reflective_colour_without_points_says_so():
    field = _sphere("reflect")
    x = 0.5 + R * _unit(torch.randn(8, 3))
    with pytest.raises(ValueError, match="needs the points"):
        field.color(field.sdf(x)[1], _unit(torch.randn(8, 3)))
