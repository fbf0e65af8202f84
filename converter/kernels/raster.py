"""Triangle rasterization: the `nrc::rasterize` / `nrc::rasterize_uv` kernels and their references.

Rules (shared with nrc/raster.h, which the reference mirrors operation for operation):
- pixel (i, j) is sampled at its centre x = j + 0.5, y = i + 0.5; edge math is in float64 on
  float32 vertex positions;
- a centre is covered when the three edge functions all have the sign of the triangle's area or
  are zero (inclusive). Each edge function is evaluated with its endpoints in a canonical order, so
  triangles sharing an edge see exactly opposite values: no cracks, and double coverage only for
  centres exactly on the edge, settled by the tie rule. Both windings are accepted; zero-area and
  non-finite triangles are skipped;
- screen space: triangles with any vertex depth <= 0 (or non-finite) are skipped, so near-plane
  clipping is the caller's job. Depth is the perspective-correct view depth 1 / sum(b_i / z_i); the
  nearest fragment wins, ties go to the smaller triangle id;
- UV space: no depth; overlapping triangles resolve to the smallest id;
- barycentrics are linear in screen space (not perspective-correct), b_i weighting vertex i.

Outputs: tri_id (H, W) int32 (-1 empty), bary (H, W, 3) float32 (0 empty), depth (H, W) float32
(inf empty). Ids, barycentrics and depths of the kernel equal the reference's bit for bit.
"""
from __future__ import annotations

import torch

from .loader import backend

EMPTY = torch.iinfo(torch.int64).max


def rasterize(pix: torch.Tensor, faces: torch.Tensor, height: int,
              width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Screen-space fragments of `pix` (V, 3): pixel x, y and view depth z > 0."""
    pix, faces = _prepare(pix, faces, 3)
    if backend(pix.device) != "torch":
        return torch.ops.nrc.rasterize(pix, faces, height, width)
    return _raster_ref(pix, faces, height, width, True)


def rasterize_uv(uv: torch.Tensor, faces: torch.Tensor, height: int,
                 width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Texel fragments of `uv` (V, 2) given in texel units (uv in [0, 1] times the size)."""
    uv, faces = _prepare(uv, faces, 2)
    if backend(uv.device) != "torch":
        return torch.ops.nrc.rasterize_uv(uv, faces, height, width)
    return _raster_ref(uv, faces, height, width, False)[:2]


def rasterize_ref(pix: torch.Tensor, faces: torch.Tensor, height: int,
                  width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-torch `rasterize`."""
    return _raster_ref(*_prepare(pix, faces, 3), height, width, True)


def rasterize_uv_ref(uv: torch.Tensor, faces: torch.Tensor, height: int,
                     width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch `rasterize_uv`."""
    return _raster_ref(*_prepare(uv, faces, 2), height, width, False)[:2]


def _prepare(verts: torch.Tensor, faces: torch.Tensor, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    verts = verts.detach().to(torch.float32).contiguous()
    faces = faces.to(device=verts.device, dtype=torch.int32).contiguous()
    if verts.dim() != 2 or verts.shape[1] != cols:
        raise ValueError(f"rasterize: vertices must be (V, {cols}), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"rasterize: faces must be (T, 3), got {tuple(faces.shape)}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
        raise ValueError("rasterize: face index out of range")
    return verts, faces


def _edge(ux, uy, vx, vy, px, py) -> torch.Tensor:
    """nrc::raster_edge: the edge function with its endpoints in canonical (x, y) order."""
    swap = (vx < ux) | ((vx == ux) & (vy < uy))
    sx, sy = torch.where(swap, vx, ux), torch.where(swap, vy, uy)
    ex, ey = torch.where(swap, ux, vx), torch.where(swap, uy, vy)
    e = (ex - sx) * (py - sy) - (ey - sy) * (px - sx)
    return torch.where(swap, -e, e)


def _setup(v: torch.Tensor, height: int, width: int, depth_test: bool):
    """nrc::raster_setup_face for all triangles: corners (T, 3, 2) f64, area, bounds, sizes."""
    xy = v[..., :2].double()
    valid = torch.isfinite(xy).all(2).all(1)
    if depth_test:
        z = v[..., 2]
        valid &= (z > 0).all(1) & torch.isfinite(z).all(1)
    x, y = xy[..., 0], xy[..., 1]
    area = _edge(x[:, 0], y[:, 0], x[:, 1], y[:, 1], x[:, 2], y[:, 2])
    valid &= area != 0
    x0 = torch.ceil(x.amin(1) - 0.5).clamp(0, width)
    x1 = torch.floor(x.amax(1) - 0.5).clamp(-1, width - 1)
    y0 = torch.ceil(y.amin(1) - 0.5).clamp(0, height)
    y1 = torch.floor(y.amax(1) - 0.5).clamp(-1, height - 1)
    valid &= (x0 <= x1) & (y0 <= y1)
    zero = torch.zeros((), dtype=torch.float64, device=v.device)
    x0, x1, y0, y1 = (torch.where(valid, b, zero).long() for b in (x0, x1, y0, y1))
    sizes = torch.where(valid, (x1 - x0 + 1) * (y1 - y0 + 1), 0)
    return xy, area, (x0, y0, x1 - x0 + 1), sizes


def _weights(xy: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """nrc::raster_cover's edge functions (N, 3) at pixel centres of corners `xy` (N, 3, 2)."""
    px, py = j.double() + 0.5, i.double() + 0.5
    x, y = xy[..., 0], xy[..., 1]
    return torch.stack([_edge(x[:, 1], y[:, 1], x[:, 2], y[:, 2], px, py),
                        _edge(x[:, 2], y[:, 2], x[:, 0], y[:, 0], px, py),
                        _edge(x[:, 0], y[:, 0], x[:, 1], y[:, 1], px, py)], 1)


def _depth(w: torch.Tensor, area: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """nrc::raster_depth: 1 / sum(b_i / z_i) in float64, rounded to float32."""
    b = w / area[:, None]
    zd = z.double()
    inv = b[:, 0] / zd[:, 0] + b[:, 1] / zd[:, 1] + b[:, 2] / zd[:, 2]
    return (1.0 / inv).float()


def _raster_ref(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int, depth_test: bool,
                chunk: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keys per pixel by scatter-amin over chunks of (triangle, bbox pixel) candidates, then resolve."""
    dev = verts.device
    v = verts[faces.long()]  # (T, 3, C)
    xy, area, (x0, y0, bw), sizes = _setup(v, height, width, depth_test)
    keys = torch.full((height * width,), EMPTY, dtype=torch.int64, device=dev)
    ends = torch.cumsum(sizes, 0)
    start, total = 0, len(sizes)
    while start < total:
        base = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, base + chunk, right=True)))
        ids = torch.arange(start, min(stop, total), device=dev)
        start = stop
        owner = torch.repeat_interleave(ids, sizes[ids])
        if owner.numel() == 0:
            continue
        local = torch.arange(owner.numel(), device=dev) - torch.repeat_interleave(ends[ids] - sizes[ids] - base,
                                                                                   sizes[ids])
        i = y0[owner] + local // bw[owner]
        j = x0[owner] + local % bw[owner]
        w = _weights(xy[owner], i, j)
        a = area[owner]
        cover = torch.where(a > 0, (w >= 0).all(1), (w <= 0).all(1))
        owner, i, j, w, a = owner[cover], i[cover], j[cover], w[cover], a[cover]
        key = owner
        if depth_test:
            bits = _depth(w, a, v[owner, :, 2]).view(torch.int32).long()
            key = (bits << 32) | owner
        keys.scatter_reduce_(0, i * width + j, key, "amin")
    return _resolve(keys, xy, area, v, height, width, depth_test)


def _resolve(keys, xy, area, v, height: int, width: int, depth_test: bool):
    """Per-pixel id, barycentrics (recomputed for the winner) and depth (from the key's bits)."""
    dev = keys.device
    hit = torch.nonzero(keys != EMPTY).squeeze(1)
    tri = torch.full((height * width,), -1, dtype=torch.int32, device=dev)
    bary = torch.zeros(height * width, 3, dtype=torch.float32, device=dev)
    ids = keys[hit] & 0xFFFFFFFF
    tri[hit] = ids.int()
    w = _weights(xy[ids], hit // width, hit % width)
    bary[hit] = (w / area[ids][:, None]).float()
    depth = None
    if depth_test:
        depth = torch.full((height * width,), float("inf"), dtype=torch.float32, device=dev)
        depth[hit] = (keys[hit] >> 32).int().view(torch.float32)
        depth = depth.view(height, width)
    return tri.view(height, width), bary.view(height, width, 3), depth
