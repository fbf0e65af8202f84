"""Compositing of packed samples: compiled kernels against the pure-torch reference, and the
reference against a per-ray loop written from the definition.

Tolerances: float32 outputs and gradients agree to 1e-5 (the exclusive optical depth is summed in
float64 by both; exp and the summation order differ).
"""
from __future__ import annotations

import math

import pytest
import torch
from nrconvert.kernels.composite import composite, composite_ref

from .kernel_utils import devices, require_ext


def _packed(rays: int = 60, max_len: int = 40, seed: int = 0, dtype=torch.float32):
    """Rays of 0..max_len samples, some dense enough to cross any transmittance threshold."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_len + 1, (rays,), generator=gen)
    counts[:3] = torch.tensor([0, 1, max_len])
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    s = int(offsets[-1])
    tau = torch.rand(s, generator=gen, dtype=dtype) ** 2 * 0.8
    rgb = torch.rand(s, 3, generator=gen, dtype=dtype)
    t = torch.rand(s, generator=gen, dtype=dtype) * 4.0  # distances in a unit-ish scene
    return tau, rgb, t, offsets


def _loop_oracle(tau, rgb, t, offsets, min_t):
    """The definition, one ray and one sample at a time, in float64."""
    out = []
    for r in range(offsets.numel() - 1):
        trans, acc = 1.0, [0.0] * 5
        for i in range(int(offsets[r]), int(offsets[r + 1])):
            if trans < min_t:
                break
            w = (1 - math.exp(-float(tau[i]))) * trans
            vals = [*rgb[i].tolist(), 1.0, float(t[i])]
            acc = [a + w * v for a, v in zip(acc, vals)]
            trans *= math.exp(-float(tau[i]))
        out.append(acc)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("min_t", [0.0, 1e-3, 0.3])
def test_reference_matches_definition(min_t):
    tau, rgb, t, offsets = _packed(rays=25, dtype=torch.float64)
    c, o, d = composite_ref(tau, rgb, t, offsets, min_t)
    want = _loop_oracle(tau, rgb, t, offsets, min_t)
    torch.testing.assert_close(torch.cat([c, o[:, None], d[:, None]], 1), want, rtol=1e-9, atol=1e-9)


@devices
@pytest.mark.parametrize("min_t", [0.0, 1e-3, 0.3])
def test_outputs_and_gradients_match_reference(device, min_t):
    require_ext(device)
    tau, rgb, t, offsets = (v.to(device) for v in _packed())
    gen = torch.Generator().manual_seed(5)
    ups = [torch.randn(offsets.numel() - 1, 3, generator=gen), torch.randn(offsets.numel() - 1, generator=gen),
           torch.randn(offsets.numel() - 1, generator=gen), torch.randn(tau.numel(), generator=gen)]
    ups = [u.to(device) for u in ups]
    results = []
    for fn in (composite, composite_ref):
        ta, rg = tau.clone().requires_grad_(), rgb.clone().requires_grad_()
        outs = fn(ta, rg, t, offsets, min_t, return_weights=True)
        sum((o * u).sum() for o, u in zip(outs, ups)).backward()
        results.append([o.detach() for o in outs] + [ta.grad, rg.grad])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weights = results[0][3]
    if min_t > 0:
        assert (weights == 0).any(), "threshold never reached: the test does not exercise the cut-off"


@devices
def test_unused_outputs_need_no_gradient(device):
    require_ext(device)
    tau, rgb, t, offsets = (v.to(device) for v in _packed())
    ta = tau.clone().requires_grad_()
    composite(ta, rgb, t, offsets)[1].sum().backward()  # opacity only; no grads for rgb/depth/weights
    tb = tau.clone().requires_grad_()
    composite_ref(tb, rgb, t, offsets)[1].sum().backward()
    torch.testing.assert_close(ta.grad, tb.grad, rtol=1e-5, atol=1e-5)


@devices
@pytest.mark.parametrize("min_t", [0.0, 0.05])
def test_gradcheck_float64(device, min_t):
    require_ext(device)
    tau, rgb, t, offsets = (v.to(device) for v in _packed(rays=5, max_len=6, seed=3, dtype=torch.float64))
    tau.requires_grad_()
    rgb.requires_grad_()
    fn = lambda a, b: composite(a, b, t, offsets, min_t, return_weights=True)
    assert torch.autograd.gradcheck(fn, (tau, rgb))
    ref = lambda a, b: composite_ref(a, b, t, offsets, min_t, return_weights=True)
    assert torch.autograd.gradcheck(ref, (tau, rgb))


def test_rejects_bad_arguments():
    tau, rgb, t, offsets = _packed(rays=4)
    bad_order = offsets.clone()
    bad_order[1], bad_order[2] = bad_order[2], bad_order[1] - 1
    cases = [((tau, rgb, t, offsets[:-1]), "ray_offsets"), ((tau, rgb, t, bad_order), "ray_offsets"),
             ((tau, rgb[:, :2], t, offsets), "rgb"), ((tau.double(), rgb, t, offsets), "float"),
             ((tau, rgb, t, offsets.int()), "int64")]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            composite(*args)


def test_empty_input():
    require_ext("cpu")
    tau, rgb, t = torch.zeros(0), torch.zeros(0, 3), torch.zeros(0)
    offsets = torch.zeros(4, dtype=torch.int64)
    c, o, d = composite(tau, rgb, t, offsets)
    assert c.shape == (3, 3) and torch.equal(o, torch.zeros(3)) and torch.equal(d, torch.zeros(3))
