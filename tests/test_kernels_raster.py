"""Triangle rasterization: the compiled kernels against the torch reference (ids, barycentrics and
depths bit-identical: both evaluate the same float64 edge functions), and the rules themselves
(no cracks, nearest wins, smallest id on ties, skipped triangles) on hand-built meshes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nrconvert.kernels.raster import (
    rasterize,
    rasterize_ref,
    rasterize_uv,
    rasterize_uv_ref,
)
from nrconvert.render import raster as render_raster

from .kernel_utils import devices, require_ext

H, W = 48, 64



def _parity(device: str, verts: torch.Tensor, faces: torch.Tensor, h: int = H, w: int = W) -> tuple:
    """Kernel == reference exactly; returns the kernel's outputs on the CPU."""
    require_ext(device)
    v, f = verts.to(device), faces.to(device)
    if verts.shape[1] == 3:
        out, ref = rasterize(v, f, h, w), rasterize_ref(v, f, h, w)
    else:
        out, ref = rasterize_uv(v, f, h, w), rasterize_uv_ref(v, f, h, w)
    assert out[0].dtype == torch.int32 and out[1].dtype == torch.float32
    for a, b in zip(out, ref):
        assert torch.equal(a.cpu(), b.cpu())
    return tuple(x.cpu() for x in out)


def _grid_mesh(nx: int, ny: int, lo, hi, jitter: float = 0.0, seed: int = 0):
    """A plane of (nx x ny) quads split into triangles, alternating diagonals."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.linspace(lo[0], hi[0], nx + 1), torch.linspace(lo[1], hi[1], ny + 1)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    v = torch.stack([xx, yy], -1).reshape(-1, 2)
    inner = torch.ones(ny + 1, nx + 1, dtype=torch.bool)
    inner[[0, -1]] = False
    inner[:, [0, -1]] = False
    v = v + (torch.rand(v.shape, generator=g) - 0.5) * jitter * inner.reshape(-1, 1)
    i, j = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
    a = (i * (nx + 1) + j).reshape(-1)
    b, c, e = a + 1, a + nx + 1, a + nx + 2
    flip = ((i + j) % 2 == 1).reshape(-1)
    t1 = torch.stack([a, b, torch.where(flip, c, e)], 1)
    t2 = torch.stack([torch.where(flip, b, a), e, c], 1)
    return v, torch.cat([t1, t2])


def _random_soup(n: int, seed: int, lo=-8.0, hi=72.0, size: float = 12.0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 1, 2, generator=g) * (hi - lo) + lo
    xy = centre + (torch.rand(n, 3, 2, generator=g) - 0.5) * size
    z = torch.rand(n, 1, 1, generator=g) * 4 + 0.5 + torch.rand(n, 3, 1, generator=g) * 0.5
    return torch.cat([xy, z], 2).reshape(-1, 3), torch.arange(3 * n).reshape(n, 3)


@devices
def test_random_soup_parity(device):
    verts, faces = _random_soup(600, 0)
    tri, bary, depth = _parity(device, verts, faces)
    hit = tri >= 0
    assert hit.float().mean() > 0.5
    assert torch.all(bary[hit] >= 0) and torch.allclose(bary[hit].sum(-1), torch.ones(()), atol=1e-5)
    assert torch.all(torch.isinf(depth[~hit])) and torch.all(depth[hit] > 0)
    _parity(device, verts[:, :2].contiguous(), faces)


@devices
def test_plane_has_no_cracks(device):
    """A jittered plane larger than the image: every pixel centre is claimed, by one triangle each."""
    v2, faces = _grid_mesh(13, 9, (-3.0, -2.0), (W + 3.0, H + 2.0), jitter=2.0)
    verts = torch.cat([v2, torch.full((len(v2), 1), 2.0)], 1)
    tri, _, depth = _parity(device, verts, faces)
    assert torch.all(tri >= 0)
    torch.testing.assert_close(depth, torch.full_like(depth, 2.0), rtol=1e-6, atol=0)
    tri_uv, _ = _parity(device, v2, faces)
    assert torch.all(tri_uv >= 0)
    # each centre is covered by exactly one triangle unless it lies exactly on an edge
    hits = sum((_one(v2, faces, k) >= 0).int() for k in range(len(faces)))
    assert hits.min() == 1 and (hits > 1).float().mean() < 0.02


def _one(v2, faces, k):
    return rasterize_uv_ref(v2, faces[k:k + 1], H, W)[0]


@devices
def test_vertices_on_pixel_centres(device):
    """Edges through pixel centres (the inclusive rule's ties) on a pixel-aligned grid."""
    v2, faces = _grid_mesh(8, 5, (0.5, 0.5), (56.5, 40.5))  # vertices every 7 x 8 pixels
    tri, bary = _parity(device, v2, faces)
    assert torch.all(tri[:41, :57] >= 0) and (tri >= 0).sum() == 41 * 57  # borders inclusive
    on_vertex = (bary == 1).any(-1)
    assert on_vertex.sum() == 9 * 6  # the centre under each grid vertex gets b = 1 there exactly
    verts = torch.cat([v2, 1.0 + v2[:, :1] / W], 1)
    _parity(device, verts, faces)


@devices
def test_uv_islands_touching_smallest_id_wins(device):
    """Two square islands share a column of texel centres (x = 20.5): each texel goes to the
    smallest id among the triangles covering it, whatever the face order; none is lost."""
    uv = torch.tensor([[4.5, 4.5], [20.5, 4.5], [20.5, 20.5], [4.5, 20.5], [36.5, 4.5], [36.5, 20.5]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        f = faces[perm]
        tri, _ = _parity(device, uv, f)
        alone = torch.stack([_one(uv, f, k) >= 0 for k in range(4)])  # (4, H, W) coverage per face
        ids = torch.arange(4)[:, None, None].expand_as(alone)
        expected = torch.where(alone, ids, 99).amin(0)
        assert torch.equal(tri, torch.where(expected == 99, -1, expected).int())
        assert (tri >= 0).sum() == 17 * 33 and (alone[:, 4:21, 20].sum(0) >= 2).all()


@devices
def test_z_buffer_nearest_then_smallest_id(device):
    big = torch.tensor([[-10.0, -10.0], [200.0, -10.0], [-10.0, 200.0]])
    near_z, far_z = torch.full((3, 1), 1.0), torch.full((3, 1), 3.0)
    verts = torch.cat([torch.cat([big, far_z], 1), torch.cat([big, near_z], 1), torch.cat([big, near_z], 1)])
    faces = torch.arange(9).reshape(3, 3)
    tri, _, depth = _parity(device, verts, faces)
    assert torch.all(tri == 1)  # nearer than triangle 0, tied with 2 and smaller
    tri, _, _ = _parity(device, verts, faces.flip(0))
    assert torch.all(tri == 0)  # the near pair is now ids 0 and 1
    torch.testing.assert_close(depth, torch.ones_like(depth), rtol=1e-6, atol=0)


@devices
def test_perspective_correct_depth(device):
    """Depth is 1/z-interpolated: along a tilted triangle it matches the plane's true depth."""
    verts = torch.tensor([[-10.0, -10.0, 1.0], [200.0, -10.0, 1.0], [-10.0, 200.0, 4.0]])
    _, bary, depth = _parity(device, verts, torch.tensor([[0, 1, 2]]))
    inv = bary[..., 0] / 1.0 + bary[..., 1] / 1.0 + bary[..., 2] / 4.0
    torch.testing.assert_close(depth, 1.0 / inv, rtol=1e-5, atol=0)
    assert depth[0, 0] < depth[-1, 0]  # further down the image is further away


@devices
def test_skipped_triangles(device):
    """Zero-area, non-finite and behind-the-camera (z <= 0) triangles draw nothing."""
    ok = [[5.0, 5.0, 1.0], [30.0, 5.0, 1.0], [5.0, 30.0, 1.0]]
    bad = [
        [[5.0, 5.0, 1.0], [30.0, 30.0, 1.0], [55.0, 55.0, 1.0]],  # collinear
        [[5.0, 5.0, 1.0], [5.0, 5.0, 1.0], [40.0, 5.0, 1.0]],  # repeated vertex
        [[5.0, 5.0, 1.0], [float("nan"), 5.0, 1.0], [5.0, 40.0, 1.0]],
        [[5.0, 5.0, 1.0], [float("inf"), 5.0, 1.0], [5.0, 40.0, 1.0]],
        [[0.0, 0.0, -1.0], [60.0, 0.0, 1.0], [0.0, 40.0, 1.0]],  # one vertex behind the camera
        [[0.0, 0.0, 0.0], [60.0, 0.0, 1.0], [0.0, 40.0, 1.0]],
    ]
    verts = torch.tensor([ok] + bad).reshape(-1, 3)
    faces = torch.arange(len(verts)).reshape(-1, 3)
    tri, _, _ = _parity(device, verts, faces)
    assert set(torch.unique(tri).tolist()) == {-1, 0}
    tri_uv, _ = _parity(device, verts[:, :2].contiguous(), faces)
    assert set(torch.unique(tri_uv).tolist()) == {-1, 0, 5}  # UV ignores z; 5 and 6 coincide


@devices
def test_partly_off_screen_and_huge(device):
    verts = torch.tensor([[-30.0, 10.0, 2.0], [90.0, -20.0, 2.0], [40.0, 80.0, 2.0],
                          [-1e7, -1e7, 5.0], [1e7, -1e7, 5.0], [0.0, 1e7, 5.0],
                          [-100.0, -100.0, 1.0], [-50.0, -100.0, 1.0], [-100.0, -50.0, 1.0]])
    faces = torch.arange(9).reshape(3, 3)
    tri, _, _ = _parity(device, verts, faces)
    assert torch.all(tri >= 0) and (tri == 0).any() and not (tri == 2).any()


@devices
def test_both_windings_agree(device):
    verts, faces = _random_soup(300, 1)
    tri, bary, depth = _parity(device, verts, faces)
    tri2, bary2, depth2 = _parity(device, verts, faces[:, [0, 2, 1]])
    assert torch.equal(tri, tri2)
    torch.testing.assert_close(bary2, bary[..., [0, 2, 1]], rtol=0, atol=1e-6)
    torch.testing.assert_close(depth2, depth, rtol=1e-6, atol=0)


@devices
def test_empty_inputs(device):
    tri, bary, depth = _parity(device, torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
    assert torch.all(tri == -1) and torch.all(bary == 0) and torch.all(torch.isinf(depth))
    tri, _ = _parity(device, torch.zeros(3, 2), torch.zeros(0, 3, dtype=torch.int64), 0, 5)
    assert tri.shape == (0, 5)


def test_bad_face_index_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        rasterize_uv(torch.zeros(3, 2), torch.tensor([[0, 1, 3]]), 4, 4)


def test_render_raster_numpy_face():
    """The numpy wrapper keeps its API: int64 ids, UV mode without a z-buffer."""
    v2, faces = _grid_mesh(4, 3, (0.0, 0.0), (float(W), float(H)))
    p, f = v2.numpy().astype(np.float64), faces.numpy()
    frags = render_raster.rasterize(p, f, H, W)
    assert frags.tri.dtype == np.int64 and (frags.tri >= 0).all() and (frags.depth == 0).all()
    z = np.full(len(p), 3.0)
    frags = render_raster.rasterize(p, f, H, W, z)
    np.testing.assert_allclose(frags.depth, 3.0, rtol=1e-6)
