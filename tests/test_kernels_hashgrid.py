"""Hash-grid encoding: the compiled kernels against the pure-torch reference, and both against the spec.

Tolerances: float32 outputs and table gradients agree to 1e-5 (sums of 8 products of terms <= 1,
summed in a different order); x gradients scale with the level resolution (up to ~2000 here), so
they are compared relative to their magnitude (1e-5). Row indices, as seen through which table
rows receive gradient, must agree exactly.
"""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from nrconvert.fields.hashgrid import HashGrid, HashGridConfig
from nrconvert.kernels import use_reference
from nrconvert.kernels.hashgrid import corner_rows, hash_encode, hash_encode_ref

from .kernel_utils import devices, require_ext

# Coarse levels dense, fine levels hashed into 2^10 rows: both index paths run.
SMALL = HashGridConfig(levels=6, features=2, log2_table=10, base_resolution=3, max_resolution=96)


def _grid(cfg: HashGridConfig, dtype=torch.float32, seed: int = 0) -> HashGrid:
    torch.manual_seed(seed)
    g = HashGrid(cfg)
    g.table.data = torch.empty_like(g.table, dtype=dtype).uniform_(-1.0, 1.0)
    return g


def _points(n: int, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    """Random points plus the edge cases: corners of the cube, outside it, on grid vertices."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=gen, dtype=dtype)
    edge = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.5, 0.0], [-0.3, 1.7, 0.5],
                         [0.5, 0.25, 0.75], [1 / 3, 2 / 3, 1.0], [0.999999, 1e-7, 0.5]], dtype=dtype)
    return torch.cat([edge, x])


def test_dense_level_reads_the_vertex_rows():
    """Spec check, independent of both implementations: a dense level is x + y (r+1) + z (r+1)^2."""
    g = HashGrid(HashGridConfig(levels=1, features=1, log2_table=10, base_resolution=4))
    g.table.data = torch.arange(125, dtype=torch.float32)[:, None]
    x = torch.tensor([[0.25, 0.5, 0.75], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.125, 0.0, 0.0]])
    want = torch.tensor([[1 + 2 * 5 + 3 * 25], [4 + 4 * 5 + 4 * 25], [0.0], [0.5]])
    for ref in (False, True):
        with use_reference() if ref else nullcontext():
            assert torch.equal(g(x).detach(), want)


def test_hashed_level_uses_the_instant_ngp_hash():
    res, size = 200, 1 << 10
    x = torch.tensor([[0.3, 0.6, 0.9]])
    rows, w = corner_rows(x, torch.tensor([res], dtype=torch.int32), torch.tensor([0, size]))
    base = [int(v * res) for v in (0.3, 0.6, 0.9)]
    want = []
    for k in range(8):
        c = [base[0] + (k >> 2 & 1), base[1] + (k >> 1 & 1), base[2] + (k & 1)]
        want.append((c[0] ^ (c[1] * 2654435761) ^ (c[2] * 805459861)) & (size - 1))
    assert rows[0, 0].tolist() == want
    assert torch.allclose(w.sum(-1), torch.ones(1, 1))


@devices
@pytest.mark.parametrize("features", [1, 2, 4, 8])
def test_forward_and_gradients_match_reference(device, features):
    require_ext(device)
    cfg = HashGridConfig(levels=SMALL.levels, features=features, log2_table=SMALL.log2_table,
                         base_resolution=SMALL.base_resolution, max_resolution=SMALL.max_resolution)
    g = _grid(cfg)
    table = g.table.detach().to(device)
    x = _points(3000).to(device)
    go = torch.randn(x.shape[0], cfg.levels * features, generator=torch.Generator().manual_seed(2)).to(device)
    outs, grads = [], []
    for fn in (hash_encode, hash_encode_ref):
        xi, ti = x.clone().requires_grad_(), table.clone().requires_grad_()
        out = fn(xi, ti, g.resolutions, g.offsets)
        (out * go).sum().backward()
        outs.append(out.detach())
        grads.append((ti.grad, xi.grad))
    (out_e, out_r), ((gt_e, gx_e), (gt_r, gx_r)) = outs, grads
    torch.testing.assert_close(out_e, out_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gt_e, gt_r, rtol=1e-5, atol=1e-5)
    assert torch.equal(gt_e != 0, gt_r != 0), "different table rows touched"
    scale = gx_r.abs().max()
    torch.testing.assert_close(gx_e / scale, gx_r / scale, rtol=1e-5, atol=1e-5)
    assert torch.equal(gx_e[3, :2], torch.zeros(2, device=device)), "clamped axes must get no gradient"
    assert gx_e[3, 2] != 0


@devices
def test_gradcheck_float64(device):
    require_ext(device)
    cfg = HashGridConfig(levels=3, features=2, log2_table=8, base_resolution=2, max_resolution=12)
    g = _grid(cfg, dtype=torch.float64)
    table = g.table.detach().to(device).requires_grad_()
    # interior points well away from cell faces, so finite differences stay inside one cell
    x = (torch.tensor([[0.13, 0.41, 0.77], [0.62, 0.29, 0.05], [0.91, 0.55, 0.38]], dtype=torch.float64)
         .to(device).requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: hash_encode(a, b, g.resolutions, g.offsets), (x, table))
    assert torch.autograd.gradcheck(lambda a, b: hash_encode_ref(a, b, g.resolutions, g.offsets), (x, table))


@devices
def test_full_size_grid_matches_reference(device):
    """instant-ngp sizes (L16, 2^19 rows per level): 32-bit hash arithmetic and int64 rows agree."""
    require_ext(device)
    g = _grid(HashGridConfig())
    x = _points(4000).to(device)
    table = g.table.detach().to(device)
    got = hash_encode(x, table, g.resolutions, g.offsets)
    torch.testing.assert_close(got, hash_encode_ref(x, table, g.resolutions, g.offsets), rtol=1e-5, atol=1e-5)


def test_no_x_gradient_requested_gives_none():
    require_ext("cpu")
    g = _grid(SMALL)
    out = hash_encode(_points(10), g.table, g.resolutions, g.offsets)
    out.sum().backward()
    assert g.table.grad is not None and g.table.grad.abs().sum() > 0


@pytest.mark.parametrize("use_ref", [False, True])
def test_rejects_bad_arguments(use_ref):
    g = _grid(SMALL)
    x = _points(4)
    bad = [((x, torch.zeros(g.table.shape[0], 3), g.resolutions, g.offsets), "features per level"),
           ((x, g.table[:10], g.resolutions, g.offsets), "offsets run past"),
           ((x.double(), g.table, g.resolutions, g.offsets), "dtype"),
           ((x[:, :2], g.table, g.resolutions, g.offsets), r"\(N, 3\)"),
           ((x, g.table, g.resolutions, torch.cat([g.offsets[:2], g.offsets[1:-1]])), "offsets must increase"),
           ((x, g.table, g.resolutions.long(), g.offsets), "int32")]
    with use_reference() if use_ref else nullcontext():
        for args, match in bad:
            with pytest.raises(ValueError, match=match):
                hash_encode(*args)


def test_table_rows_past_the_last_level_get_zero_gradient():
    """The CPU backward zeroes the gradient level by level; spare rows must be zeroed too."""
    require_ext("cpu")
    g = _grid(SMALL)
    table = torch.cat([g.table.detach(), torch.ones(7, SMALL.features)]).requires_grad_()
    hash_encode(_points(100), table, g.resolutions, g.offsets).sum().backward()
    assert torch.equal(table.grad[-7:], torch.zeros(7, SMALL.features))
    assert table.grad[: g.offsets[-1]].abs().sum() > 0


def test_module_keeps_state_dict_and_loads_old_checkpoints():
    g = _grid(SMALL)
    assert list(g.state_dict()) == ["table"]
    fresh = HashGrid(SMALL)
    fresh.load_state_dict({"table": g.table.detach().clone()})
    x = _points(50)
    torch.testing.assert_close(fresh(x), g(x))
    assert g.out_dim == SMALL.levels * SMALL.features


def test_second_derivative_fails_loudly():
    """The compiled backward is first order only: asking for more must raise, not return zeros."""
    require_ext("cpu")
    g = _grid(SMALL)
    x = _points(20).requires_grad_()
    head = torch.randn(SMALL.levels * SMALL.features, requires_grad=True)  # an MLP's part: grad_out depends on it
    (gx,) = torch.autograd.grad((hash_encode(x, g.table, g.resolutions, g.offsets) @ head).sum(), x,
                                create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.norm().backward()  # an eikonal-style loss
