"""Occupancy-grid marching: the compiled kernel against the torch reference, and the reference
against hand-worked answers.

Parity is exact (t bit-identical, offsets equal): both sides perform the same float32 operations in
the same order, and a sample next to a cell boundary flips in or out on one ulp, so anything looser
than bit equality would already show up as differing counts.
"""
from __future__ import annotations

import torch
from nrconvert.kernels.march import march_rays, march_rays_ref

from .kernel_utils import devices, require_ext

UNIT = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])



def _assert_parity(device: str, o, d, near, far, grid, box, dt, max_samples, offset) -> tuple:
    require_ext(device)
    args = [x.to(device) if torch.is_tensor(x) else x for x in (o, d, near, far, grid, *box, dt, max_samples, offset)]
    t, off = march_rays(*args)
    t_ref, off_ref = march_rays_ref(*args)
    assert off.dtype == torch.int64 and t.dtype == torch.float32
    assert torch.equal(off.cpu(), off_ref.cpu())
    assert torch.equal(t.cpu(), t_ref.cpu())
    return t.cpu(), off.cpu()


def _rays(n: int, seed: int, spread: float = 2.0):
    """Rays from around the box towards points inside it, with their box entry/exit distances."""
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, generator=g) * (2 * spread + 1) - spread
    d = torch.nn.functional.normalize(torch.rand(n, 3, generator=g) * 0.8 + 0.1 - o, dim=1)
    inv = 1.0 / d
    t0, t1 = (0.0 - o) * inv, (1.0 - o) * inv
    near = torch.minimum(t0, t1).amax(1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(1)
    return o, d, near, far, torch.rand(n, generator=g)


@devices
def test_random_rays_random_grid(device):
    o, d, near, far, offset = _rays(2000, 0)
    grid = torch.rand(24, 24, 24, generator=torch.Generator().manual_seed(1)) < 0.3
    for dt in (0.004, 0.0015):  # ~10 and ~28 steps per cell: the kernel steps, then skips empty cells
        t, off = _assert_parity(device, o, d, near, far, grid, UNIT, dt, 700, offset)
        assert len(t) > 10_000
        for r in range(0, 2000, 97):  # sorted per ray, inside [near, far)
            seg = t[off[r]:off[r + 1]]
            assert torch.all(seg[1:] > seg[:-1]) and torch.all(seg >= near[r]) and torch.all(seg < far[r])


@devices
def test_sparse_grid_long_rays(device):
    """Mostly empty cells: the kernel skips them, and must still land on the same samples."""
    o, d, near, far, offset = _rays(1500, 2, spread=0.2)
    grid = torch.rand(64, 64, 64, generator=torch.Generator().manual_seed(3)) < 0.01
    t, _ = _assert_parity(device, o, d, near, far, grid, UNIT, 0.0007, 4096, offset)
    assert len(t) > 0


@devices
def test_empty_and_full_grid(device):
    o, d, near, far, offset = _rays(500, 4)
    empty = torch.zeros(16, 16, 16, dtype=torch.bool)
    t, off = _assert_parity(device, o, d, near, far, empty, UNIT, 0.01, 512, offset)
    assert len(t) == 0 and torch.all(off == 0)
    full = torch.ones(16, 16, 16, dtype=torch.uint8)
    t, off = _assert_parity(device, o, d, near, far, full, UNIT, 0.01, 512, offset)
    k = torch.arange(512, dtype=torch.float32)
    expected = ((near[:, None] + (k + offset[:, None]) * 0.01) < far[:, None]).sum(1)
    assert torch.equal(off.diff(), expected)


@devices
def test_max_samples_cap(device):
    o, d, near, far, offset = _rays(300, 5)
    grid = torch.ones(8, 8, 8, dtype=torch.bool)
    _, off = _assert_parity(device, o, d, near, far, grid, UNIT, 0.001, 100, offset)
    assert off.diff().max() == 100  # long rays hit the cap
    _, off = _assert_parity(device, o, d, near, far, grid, UNIT, 0.001, 0, offset)
    assert torch.all(off == 0)


@devices
def test_rays_missing_the_box(device):
    """The caller's near > far for a miss: no samples, offsets stay flat."""
    n = 64
    o = torch.tensor([[-1.0, 2.0, 0.5]]).repeat(n, 1)
    d = torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)
    near, far = torch.full((n,), 3.0), torch.full((n,), 1.0)
    grid = torch.ones(4, 4, 4, dtype=torch.bool)
    t, off = _assert_parity(device, o, d, near, far, grid, UNIT, 0.01, 512, 0.5)
    assert len(t) == 0 and off.shape == (n + 1,)


@devices
def test_axis_aligned_rays_on_cell_boundaries(device):
    """Rays along grid planes, zero direction components, samples landing on cell faces."""
    g = 8
    ticks = torch.arange(g + 1, dtype=torch.float32) / g
    ys, zs = torch.meshgrid(ticks, ticks, indexing="ij")
    n = ys.numel()
    o = torch.stack([torch.full((n,), -0.5), ys.reshape(-1), zs.reshape(-1)], 1)
    rays = []
    for axes in ([0, 1, 2], [1, 2, 0], [2, 0, 1]):
        d = torch.zeros(n, 3)
        d[:, axes[0]] = 1.0
        rays.append((o[:, axes], d))
    o = torch.cat([r[0] for r in rays])
    d = torch.cat([r[1] for r in rays])
    grid = torch.rand(g, g, g, generator=torch.Generator().manual_seed(6)) < 0.5
    near, far = torch.zeros(len(o)), torch.full((len(o),), 2.0)
    for dt in (1.0 / 64, 1.0 / 256):  # 8 and 32 steps per cell
        _assert_parity(device, o, d, near, far, grid, UNIT, dt, 600, 0.0)


@devices
def test_non_cubic_grid_and_box(device):
    o, d, near, far, offset = _rays(800, 7)
    lo, hi = torch.tensor([-1.0, -2.0, 0.5]), torch.tensor([2.0, 1.0, 3.0])
    o, near, far = lo + o * (hi - lo), near * 0.0, far * 0.0 + 8.0
    grid = torch.rand(5, 9, 17, generator=torch.Generator().manual_seed(8)) < 0.4
    _assert_parity(device, o, d, near, far, grid, (lo, hi), 0.01, 1024, offset)


def test_reference_hand_worked():
    """Only the +x half of a 2x1x1 grid is occupied: samples at 0.55 ... 0.95 remain."""
    o, d = torch.tensor([[0.0, 0.5, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
    grid = torch.tensor([False, True]).reshape(2, 1, 1)
    t, off = march_rays_ref(o, d, torch.zeros(1), torch.ones(1), grid, *UNIT, 0.1, 64, 0.5)
    assert off.tolist() == [0, 5]
    torch.testing.assert_close(t, torch.tensor([0.55, 0.65, 0.75, 0.85, 0.95]), rtol=1e-6, atol=0)


def test_reference_matches_occupancy_lookup():
    """Cells agree with OccupancyGrid.lookup, the lookup the volume renderer uses."""
    from nrconvert.fields.occupancy import OccupancyGrid

    occ = OccupancyGrid(16, torch.rand(16, 16, 16, generator=torch.Generator().manual_seed(9)) < 0.5)
    o, d, near, far, _ = _rays(400, 10)
    t, off = march_rays_ref(o, d, near, far, occ.mask, *UNIT, 0.01, 256, 0.5)
    ray = torch.repeat_interleave(torch.arange(400), off.diff())
    assert occ.lookup(o[ray] + t[:, None] * d[ray]).all()
    k = torch.arange(256, dtype=torch.float32)
    tt = near[:, None] + (k + 0.5) * 0.01
    pts = (o[:, None] + tt[..., None] * d[:, None]).reshape(-1, 3)
    kept = (tt < far[:, None]).reshape(-1) & occ.lookup(pts)
    assert int(kept.sum()) == len(t)
