"""Multiresolution hash-grid encoding (instant-ngp): compiled op and its pure-torch reference.

Arguments shared by `hash_encode` and `hash_encode_ref`:

- `x`: (N, 3) positions, float32 or float64; clamped to [0, 1]^3 (gradients pass on the closed cube).
- `table`: (T, F) features of every level stacked row-wise, the same dtype as x; F in {1, 2, 4, 8}.
- `resolutions`: int32 (L,) cells per axis of each level (1 <= L <= 32). Keep it on the CPU: the
  op reads it on the host.
- `offsets`: int64 (L + 1,) cumulative table rows: level l owns rows offsets[l]:offsets[l + 1]. A
  level whose (res + 1)^3 vertices fit its rows is indexed densely (x + y (r+1) + z (r+1)^2); a
  smaller level is hashed (primes 1, 2654435761, 805459861, xor) and its row count must be a power
  of two. Keep it on the CPU too.

Per level: pos = x * res, base = min(floor(pos), res - 1), frac = pos - base; the 8 corners of the
cell are blended trilinearly. The `res - 1` cap keeps x == 1 inside the grid (on the far face of the
last cell, weight 1 on the corner at res): same value as an uncapped floor, and no corner outside
the level. Returns (N, L * F), level-major per point.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .loader import backend

_PRIMES = (1, 2654435761, 805459861)


class _GatherSum(torch.autograd.Function):
    """out[m] = sum_k w[m, k] * table[idx[m, k]], with a flat scatter-add backward.

    The stock embedding_bag backward sorts the indices; a 1-D `scatter_add_` into the flattened
    table is ~5x faster on CPU for the 8-corner access pattern.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table, idx, w)
        return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        table, idx, w = ctx.saved_tensors
        grad_table = grad_w = None
        feats = table.shape[1]
        if ctx.needs_input_grad[0]:
            vals = (grad_out[:, None, :] * w[..., None]).reshape(-1)
            flat = (idx[..., None] * feats + torch.arange(feats, device=idx.device)).reshape(-1)
            grad_table = torch.zeros(table.numel(), dtype=table.dtype, device=table.device)
            grad_table.scatter_add_(0, flat, vals)
            grad_table = grad_table.view_as(table)
        if ctx.needs_input_grad[2]:
            grad_w = (F.embedding(idx, table) * grad_out[:, None, :]).sum(-1)
        return grad_table, None, grad_w


def _combine(t: torch.Tensor, op) -> torch.Tensor:
    """Per-axis terms (N, L, 3, 2) to the 8 corners (N, L, 8), x slowest: op(op(x, y), z)."""
    x, y, z = t[:, :, 0], t[:, :, 1], t[:, :, 2]
    out = op(op(x[:, :, :, None, None], y[:, :, None, :, None]), z[:, :, None, None, :])
    return out.reshape(t.shape[0], t.shape[1], 8)


def _level_tables(resolutions: torch.Tensor, offsets: torch.Tensor) -> tuple[list[int], list[int], list[bool]]:
    res = [int(r) for r in resolutions.tolist()]
    offs = [int(o) for o in offsets.tolist()]
    sizes = [b - a for a, b in itertools.pairwise(offs)]
    dense = [(r + 1) ** 3 <= s for r, s in zip(res, sizes)]
    return res, offs, dense


def corner_rows(x: torch.Tensor, resolutions: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Table rows (N, L, 8) and trilinear weights (N, L, 8) of the cell corners around each point."""
    res, offs, dense = _level_tables(resolutions, offsets)
    dev = x.device
    res_t = torch.tensor(res, dtype=x.dtype, device=dev)
    pos = x.clamp(0.0, 1.0)[:, None, :] * res_t[None, :, None]  # (N, L, 3)
    base = torch.minimum(pos.floor(), (res_t - 1)[None, :, None]).detach()
    frac = pos - base
    coords = base.to(torch.int64)[..., None] + torch.tensor([0, 1], device=dev)  # (N, L, 3, 2)
    idx = torch.empty(x.shape[0], len(res), 8, dtype=torch.int64, device=dev)
    d_lv = [i for i, d in enumerate(dense) if d]
    h_lv = [i for i, d in enumerate(dense) if not d]
    if d_lv:
        strides = torch.tensor([[1, r + 1, (r + 1) ** 2] for r in (res[i] for i in d_lv)], device=dev)
        idx[:, d_lv] = _combine(coords[:, d_lv] * strides[None, :, :, None], torch.add)
    if h_lv:
        primes = torch.tensor(_PRIMES, dtype=torch.int64, device=dev)[None, None, :, None]
        masks = torch.tensor([offs[i + 1] - offs[i] - 1 for i in h_lv], device=dev)
        idx[:, h_lv] = _combine(coords[:, h_lv] * primes, torch.bitwise_xor) & masks[None, :, None]
    idx += torch.tensor(offs[:-1], device=dev)[None, :, None]
    return idx, _combine(torch.stack([1.0 - frac, frac], dim=-1), torch.mul)


def hash_encode_ref(x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor,
                    offsets: torch.Tensor) -> torch.Tensor:
    """Pure-torch encoding (see the module docstring); differentiable wrt table and x by autograd."""
    n, levels = x.shape[0], resolutions.shape[0]
    idx, w = corner_rows(x, resolutions, offsets)
    out = _GatherSum.apply(table, idx.view(n * levels, 8), w.view(n * levels, 8))
    return out.view(n, levels * table.shape[1])


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, table)
        ctx.levels = (resolutions, offsets)
        return torch.ops.nrc.hash_encode_forward(x, table, resolutions, offsets)

    @staticmethod
    @once_differentiable  # a second derivative must fail loudly, not come out as zero
    def backward(ctx, grad_out: torch.Tensor):
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_table, grad_x = torch.ops.nrc.hash_encode_backward(grad_out, x, table, *ctx.levels,
                                                                need_table, need_x)
        return (grad_x if need_x else None), (grad_table if need_table else None), None, None


def check_args(x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor, offsets: torch.Tensor) -> None:
    """Raises ValueError on arguments outside the contract of the module docstring.

    Why here and not only in C++: an error raised inside the extension must unwind through its
    frames, and with a toolchain that links libstdc++ statically (seen on a GPU image) that
    unwinding segfaults. The C++ checks stay as a backstop.
    """
    if x.dim() != 2 or x.shape[1] != 3 or table.dim() != 2:
        raise ValueError(f"hash_encode: x must be (N, 3) and table (T, F), got {tuple(x.shape)}, {tuple(table.shape)}")
    if x.dtype != table.dtype or x.dtype not in (torch.float32, torch.float64) or x.device != table.device:
        raise ValueError(f"hash_encode: x and table must share a float32/float64 dtype and device, got "
                         f"{x.dtype}@{x.device}, {table.dtype}@{table.device}")
    if table.shape[1] not in (1, 2, 4, 8):
        raise ValueError(f"hash_encode: features per level must be 1, 2, 4 or 8, got {table.shape[1]}")
    levels = resolutions.shape[0]
    if resolutions.dtype != torch.int32 or offsets.dtype != torch.int64 or offsets.shape != (levels + 1,):
        raise ValueError("hash_encode: resolutions must be int32 (L,) and offsets int64 (L + 1,)")
    if not 1 <= levels <= 32:
        raise ValueError(f"hash_encode: 1 to 32 levels, got {levels}")
    offs = offsets.tolist()
    if offs[0] != 0 or any(b <= a for a, b in itertools.pairwise(offs)) or min(resolutions.tolist()) < 1:
        raise ValueError("hash_encode: offsets must increase from 0 and resolutions be >= 1")
    if offs[-1] > table.shape[0]:
        raise ValueError(f"hash_encode: offsets run past the table's {table.shape[0]} rows")


def hash_encode(x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
    """(N, L * F) hash-grid features of x; compiled kernels when available for x's device.

    First-order gradients flow to `table` and `x` (the compiled backward is not itself differentiable).
    """
    check_args(x, table, resolutions, offsets)
    if backend(x.device) == "torch":
        return hash_encode_ref(x, table, resolutions, offsets)
    return _HashEncode.apply(x, table, resolutions, offsets)
