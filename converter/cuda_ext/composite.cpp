// Volume-rendering compositing of packed samples: torch glue and the CPU (OpenMP) implementation.
// Rays are independent and sequential inside, so the CPU loop is parallel over rays (dynamic
// schedule: ray lengths vary by orders of magnitude after occupancy culling).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "nrc/composite.h"

#ifdef NRC_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace nrc {
namespace {

void check_samples(const at::Tensor& tau, const at::Tensor& rgb, const at::Tensor& t, const at::Tensor& offsets) {
    const int64_t s = tau.size(0);
    TORCH_CHECK(tau.dim() == 1, "nrc.composite: tau must be (S,)");
    TORCH_CHECK(rgb.dim() == 2 && rgb.size(0) == s && rgb.size(1) == 3, "nrc.composite: rgb must be (S, 3)");
    TORCH_CHECK(t.dim() == 1 && t.size(0) == s, "nrc.composite: t must be (S,)");
    TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1 && offsets.scalar_type() == at::kLong,
                "nrc.composite: ray_offsets must be int64 (R + 1,)");
    TORCH_CHECK(tau.scalar_type() == rgb.scalar_type() && tau.scalar_type() == t.scalar_type(),
                "nrc.composite: tau, rgb and t dtypes differ");
    TORCH_CHECK(tau.scalar_type() == at::kFloat || tau.scalar_type() == at::kDouble,
                "nrc.composite: float32 or float64 only");
    TORCH_CHECK(tau.device() == rgb.device() && tau.device() == t.device() && tau.device() == offsets.device(),
                "nrc.composite: inputs on different devices");
    if (offsets.is_cpu()) {  // on the GPU reading them would cost a sync: callers vouch for them
        const at::Tensor o = offsets.contiguous();
        const int64_t* p = o.data_ptr<int64_t>();
        bool ok = p[0] == 0 && p[o.size(0) - 1] == s;
        for (int64_t r = 0; ok && r + 1 < o.size(0); ++r) ok = p[r] <= p[r + 1];
        TORCH_CHECK(ok, "nrc.composite: ray_offsets must be non-decreasing from 0 to S");
    }
}

template <typename T>
void forward_cpu(const T* tau, const T* rgb, const T* t, const int64_t* offsets, int64_t rays, T min_trans,
                 T* out_rgb, T* out_op, T* out_depth, T* weights) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(at::get_num_threads())
    for (int64_t r = 0; r < rays; ++r)
        composite_ray_forward(tau, rgb, t, offsets[r], offsets[r + 1], min_trans, out_rgb + 3 * r, out_op + r,
                              out_depth + r, weights);
}

template <typename T>
void backward_cpu(const T* g_rgb, const T* g_op, const T* g_depth, const T* g_w, const T* tau, const T* rgb,
                  const T* t, const int64_t* offsets, int64_t rays, T min_trans, T* d_tau, T* d_rgb) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(at::get_num_threads())
    for (int64_t r = 0; r < rays; ++r)
        composite_ray_backward(g_rgb + 3 * r, g_op[r], g_depth[r], g_w, tau, rgb, t, offsets[r], offsets[r + 1],
                               min_trans, d_tau, d_rgb);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward(
    const at::Tensor& tau_in, const at::Tensor& rgb_in, const at::Tensor& t_in, const at::Tensor& offsets_in,
    double min_transmittance) {
    check_samples(tau_in, rgb_in, t_in, offsets_in);
    const at::Tensor tau = tau_in.contiguous(), rgb = rgb_in.contiguous(), t = t_in.contiguous();
    const at::Tensor offsets = offsets_in.contiguous();
    const int64_t rays = offsets.size(0) - 1;
    at::Tensor out_rgb = at::empty({rays, 3}, tau.options()), out_op = at::empty({rays}, tau.options());
    // zeros on the GPU: samples that no ray owns (offsets the GPU path cannot check) stay defined
    at::Tensor out_depth = at::empty({rays}, tau.options());
    at::Tensor weights = tau.is_cuda() ? at::zeros_like(tau) : at::empty_like(tau);
    if (tau.is_cuda()) {
#ifdef NRC_WITH_CUDA
        const c10::cuda::CUDAGuard guard(tau.device());
        AT_DISPATCH_FLOATING_TYPES(tau.scalar_type(), "composite_forward_cuda", [&] {
            composite_forward_cuda<scalar_t>(tau.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
                                             offsets.data_ptr<int64_t>(), rays, scalar_t(min_transmittance),
                                             out_rgb.data_ptr<scalar_t>(), out_op.data_ptr<scalar_t>(),
                                             out_depth.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                                             c10::cuda::getCurrentCUDAStream());
        });
        return {out_rgb, out_op, out_depth, weights};
#else
        TORCH_CHECK(false, "nrc.composite: this build of the nrconvert kernels has no CUDA support");
#endif
    }
    AT_DISPATCH_FLOATING_TYPES(tau.scalar_type(), "composite_forward_cpu", [&] {
        forward_cpu<scalar_t>(tau.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
                              offsets.data_ptr<int64_t>(), rays, scalar_t(min_transmittance),
                              out_rgb.data_ptr<scalar_t>(), out_op.data_ptr<scalar_t>(),
                              out_depth.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>());
    });
    return {out_rgb, out_op, out_depth, weights};
}

// grad_weights may be undefined or empty (no gradient flows into the weights output).
std::tuple<at::Tensor, at::Tensor> composite_backward(
    const at::Tensor& g_rgb_in, const at::Tensor& g_op_in, const at::Tensor& g_depth_in,
    const c10::optional<at::Tensor>& g_w_in, const at::Tensor& tau_in, const at::Tensor& rgb_in,
    const at::Tensor& t_in, const at::Tensor& offsets_in, double min_transmittance) {
    check_samples(tau_in, rgb_in, t_in, offsets_in);
    const at::Tensor tau = tau_in.contiguous(), rgb = rgb_in.contiguous(), t = t_in.contiguous();
    const at::Tensor offsets = offsets_in.contiguous();
    const at::Tensor g_rgb = g_rgb_in.contiguous(), g_op = g_op_in.contiguous(), g_depth = g_depth_in.contiguous();
    const int64_t rays = offsets.size(0) - 1;
    TORCH_CHECK(g_rgb.numel() == 3 * rays && g_op.numel() == rays && g_depth.numel() == rays,
                "nrc.composite: output gradients must match the outputs");
    at::Tensor g_w;
    if (g_w_in.has_value() && g_w_in->defined() && g_w_in->numel() > 0) {
        g_w = g_w_in->contiguous();
        TORCH_CHECK(g_w.numel() == tau.numel(), "nrc.composite: grad of weights must be (S,)");
    }
    at::Tensor d_tau = tau.is_cuda() ? at::zeros_like(tau) : at::empty_like(tau);
    at::Tensor d_rgb = tau.is_cuda() ? at::zeros_like(rgb) : at::empty_like(rgb);
    if (tau.is_cuda()) {
#ifdef NRC_WITH_CUDA
        const c10::cuda::CUDAGuard guard(tau.device());
        AT_DISPATCH_FLOATING_TYPES(tau.scalar_type(), "composite_backward_cuda", [&] {
            composite_backward_cuda<scalar_t>(
                g_rgb.data_ptr<scalar_t>(), g_op.data_ptr<scalar_t>(), g_depth.data_ptr<scalar_t>(),
                g_w.defined() ? g_w.data_ptr<scalar_t>() : nullptr, tau.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(),
                t.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), rays, scalar_t(min_transmittance),
                d_tau.data_ptr<scalar_t>(), d_rgb.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream());
        });
        return {d_tau, d_rgb};
#else
        TORCH_CHECK(false, "nrc.composite: this build of the nrconvert kernels has no CUDA support");
#endif
    }
    AT_DISPATCH_FLOATING_TYPES(tau.scalar_type(), "composite_backward_cpu", [&] {
        backward_cpu<scalar_t>(g_rgb.data_ptr<scalar_t>(), g_op.data_ptr<scalar_t>(), g_depth.data_ptr<scalar_t>(),
                               g_w.defined() ? g_w.data_ptr<scalar_t>() : nullptr, tau.data_ptr<scalar_t>(),
                               rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), rays,
                               scalar_t(min_transmittance), d_tau.data_ptr<scalar_t>(), d_rgb.data_ptr<scalar_t>());
    });
    return {d_tau, d_rgb};
}

}  // namespace
}  // namespace nrc

TORCH_LIBRARY_FRAGMENT(nrc, m) {
    m.def("composite_forward(Tensor tau, Tensor rgb, Tensor t, Tensor ray_offsets, float min_transmittance) "
          "-> (Tensor, Tensor, Tensor, Tensor)");
    m.def("composite_backward(Tensor grad_rgb, Tensor grad_opacity, Tensor grad_depth, Tensor? grad_weights, "
          "Tensor tau, Tensor rgb, Tensor t, Tensor ray_offsets, float min_transmittance) -> (Tensor, Tensor)");
    m.impl("composite_forward", &nrc::composite_forward);
    m.impl("composite_backward", &nrc::composite_backward);
}
