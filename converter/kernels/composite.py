"""Volume-rendering compositing of packed samples: compiled op and its pure-torch reference.

Samples are packed per ray: ray r owns samples ray_offsets[r]:ray_offsets[r + 1] (int64 (R + 1,),
non-decreasing, ray_offsets[0] == 0 and ray_offsets[-1] == S, on the samples' device). Per sample:
tau = sigma * dt >= 0 (S,), rgb (S, 3), t distance along the ray (S,), all float32 or all float64.

alpha_i = 1 - exp(-tau_i); T_i = exp(-sum of tau before i on its ray) (exclusive, summed in
float64); w_i = alpha_i T_i. A sample with T_i < min_transmittance contributes nothing: since tau is
non-negative, T never rises again, so the compiled op simply stops the ray there. Outputs:
rgb = sum w_i rgb_i (premultiplied, over nothing), opacity = sum w_i, depth = sum w_i t_i, and on
request the weights w (S,) (distortion losses, median depth). Gradients flow to tau and rgb, not t.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .loader import backend


def ray_ids(ray_offsets: torch.Tensor, samples: int) -> torch.Tensor:
    rays = ray_offsets.numel() - 1
    counts = ray_offsets[1:] - ray_offsets[:-1]
    ids = torch.arange(rays, device=ray_offsets.device)
    return torch.repeat_interleave(ids, counts, output_size=samples)


def composite_ref(tau: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, ray_offsets: torch.Tensor,
                  min_transmittance: float = 0.0, *, return_weights: bool = False):
    """Pure-torch compositing (see the module docstring), vectorised with a segmented cumsum."""
    rays = ray_offsets.numel() - 1
    ids = ray_ids(ray_offsets, tau.numel())
    tau64 = tau.double()
    before = torch.cumsum(tau64, 0) - tau64  # exclusive, over all rays
    optical = (before - before[ray_offsets[ids]]).to(tau.dtype)  # restarted at each ray's first sample
    trans = torch.exp(-optical)
    w = (1.0 - torch.exp(-tau)) * trans
    w = torch.where(trans >= min_transmittance, w, torch.zeros_like(w))
    zeros = tau.new_zeros(rays)
    out_rgb = tau.new_zeros(rays, 3).index_add(0, ids, w[:, None] * rgb)
    opacity = zeros.index_add(0, ids, w)
    depth = zeros.index_add(0, ids, w * t)
    return (out_rgb, opacity, depth, w) if return_weights else (out_rgb, opacity, depth)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tau, rgb, t, ray_offsets, min_transmittance: float):
        ctx.set_materialize_grads(False)
        ctx.min_transmittance = min_transmittance
        ctx.save_for_backward(tau, rgb, t, ray_offsets)
        return torch.ops.nrc.composite_forward(tau, rgb, t, ray_offsets, min_transmittance)

    @staticmethod
    @once_differentiable  # a second derivative must fail loudly, not come out as zero
    def backward(ctx, g_rgb, g_opacity, g_depth, g_weights):
        tau, rgb, t, ray_offsets = ctx.saved_tensors
        rays = ray_offsets.numel() - 1
        g_rgb = tau.new_zeros(rays, 3) if g_rgb is None else g_rgb
        g_opacity = tau.new_zeros(rays) if g_opacity is None else g_opacity
        g_depth = tau.new_zeros(rays) if g_depth is None else g_depth
        d_tau, d_rgb = torch.ops.nrc.composite_backward(g_rgb, g_opacity, g_depth, g_weights, tau, rgb, t,
                                                        ray_offsets, ctx.min_transmittance)
        return d_tau, d_rgb, None, None, None


def check_args(tau: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, ray_offsets: torch.Tensor) -> None:
    """Raises ValueError on arguments outside the module docstring's contract (see hashgrid.check_args
    for why not only in C++). Offsets are checked only on the CPU: on a GPU that would cost a sync."""
    s = tau.shape[0]
    if tau.dim() != 1 or rgb.shape != (s, 3) or t.shape != (s,):
        raise ValueError(f"composite: need tau (S,), rgb (S, 3), t (S,), got {tuple(tau.shape)}, "
                         f"{tuple(rgb.shape)}, {tuple(t.shape)}")
    if not (tau.dtype == rgb.dtype == t.dtype) or tau.dtype not in (torch.float32, torch.float64):
        raise ValueError("composite: tau, rgb and t must all be float32 or all float64")
    if ray_offsets.dtype != torch.int64 or ray_offsets.dim() != 1 or ray_offsets.numel() < 1:
        raise ValueError("composite: ray_offsets must be int64 (R + 1,)")
    if len({tau.device, rgb.device, t.device, ray_offsets.device}) > 1:
        raise ValueError("composite: all inputs must be on one device")
    if ray_offsets.device.type == "cpu" and (
            int(ray_offsets[0]) != 0 or int(ray_offsets[-1]) != s or bool((ray_offsets.diff() < 0).any())):
        raise ValueError("composite: ray_offsets must be non-decreasing from 0 to S")


def composite(tau: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, ray_offsets: torch.Tensor,
              min_transmittance: float = 0.0, *, return_weights: bool = False):
    """(rgb (R, 3), opacity (R,), depth (R,)[, weights (S,)]) of packed samples.

    Compiled kernels when available for the samples' device, else `composite_ref`.
    """
    check_args(tau, rgb, t, ray_offsets)
    if backend(tau.device) == "torch":
        return composite_ref(tau, rgb, t, ray_offsets, min_transmittance, return_weights=return_weights)
    out = _Composite.apply(tau, rgb, t, ray_offsets, float(min_transmittance))
    return out if return_weights else out[:3]
