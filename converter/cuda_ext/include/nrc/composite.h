// Volume-rendering compositing of packed samples: the per-ray math shared by the CPU loop in
// composite.cpp and the CUDA kernels in composite_cuda.cu.
//
// Semantics (must match nrconvert.kernels.composite.composite_ref): a ray owns samples
// [begin, end); alpha_i = 1 - exp(-tau_i); T_i = exp(-sum_{j<i} tau_j) with the sum accumulated in
// double (what torch's CPU cumsum does); w_i = alpha_i * T_i. A sample with T_i < min_trans
// contributes nothing, and since tau >= 0 makes T non-increasing the ray stops there.
#pragma once

#include "common.h"

namespace nrc {

template <typename T>
NRC_HD T transmittance(double optical_depth) { return nrc_exp(-T(optical_depth)); }

// Writes rgb (3), opacity, depth of one ray and, when `weights` is not null, w_i of its samples.
template <typename T>
NRC_HD void composite_ray_forward(const T* tau, const T* rgb, const T* t, int64_t begin, int64_t end, T min_trans,
                                  T* out_rgb, T* out_opacity, T* out_depth, T* weights) {
    T r = T(0), g = T(0), b = T(0), op = T(0), depth = T(0);
    double s = 0.0;
    int64_t i = begin;
    for (; i < end; ++i) {
        const T trans = transmittance<T>(s);
        if (trans < min_trans) break;
        const T w = (T(1) - nrc_exp(-tau[i])) * trans;
        r += w * rgb[3 * i];
        g += w * rgb[3 * i + 1];
        b += w * rgb[3 * i + 2];
        op += w;
        depth += w * t[i];
        if (weights) weights[i] = w;
        s += double(tau[i]);
    }
    if (weights)
        for (; i < end; ++i) weights[i] = T(0);
    out_rgb[0] = r;
    out_rgb[1] = g;
    out_rgb[2] = b;
    *out_opacity = op;
    *out_depth = depth;
}

// The value a sample's weight is multiplied by in the loss: dL/dw_i.
template <typename T>
NRC_HD T composite_dloss_dweight(const T* g_rgb, T g_op, T g_depth, const T* g_w, const T* rgb, const T* t, int64_t i) {
    T v = g_rgb[0] * rgb[3 * i] + g_rgb[1] * rgb[3 * i + 1] + g_rgb[2] * rgb[3 * i + 2] + g_op + g_depth * t[i];
    return g_w ? v + g_w[i] : v;
}

// w_i = T_i - T_{i+1}, so dL/dtau_k = T_{k+1} v_k - sum_{i>k} w_i v_i (v = dL/dw over kept samples).
// Two passes: the first sums w_i v_i over the ray, the second subtracts the running prefix; both
// sums in double, since the suffix total - prefix cancels (measured 1e-4 absolute error in float).
// Writes d_tau, d_rgb for every sample of the ray (zero past the cut-off); g_w may be null.
template <typename T>
NRC_HD void composite_ray_backward(const T* g_rgb, T g_op, T g_depth, const T* g_w, const T* tau, const T* rgb,
                                   const T* t, int64_t begin, int64_t end, T min_trans, T* d_tau, T* d_rgb) {
    double total = 0.0;
    double s = 0.0;
    for (int64_t i = begin; i < end; ++i) {
        const T trans = transmittance<T>(s);
        if (trans < min_trans) break;
        total += double((T(1) - nrc_exp(-tau[i])) * trans * composite_dloss_dweight(g_rgb, g_op, g_depth, g_w, rgb, t, i));
        s += double(tau[i]);
    }
    double prefix = 0.0;
    s = 0.0;
    int64_t i = begin;
    for (; i < end; ++i) {
        const T trans = transmittance<T>(s);
        if (trans < min_trans) break;
        const T w = (T(1) - nrc_exp(-tau[i])) * trans;
        const T v = composite_dloss_dweight(g_rgb, g_op, g_depth, g_w, rgb, t, i);
        s += double(tau[i]);
        prefix += double(w * v);
        d_tau[i] = transmittance<T>(s) * v - T(total - prefix);
        for (int c = 0; c < 3; ++c) d_rgb[3 * i + c] = w * g_rgb[c];
    }
    for (; i < end; ++i) {
        d_tau[i] = T(0);
        for (int c = 0; c < 3; ++c) d_rgb[3 * i + c] = T(0);
    }
}

}  // namespace nrc

#if defined(NRC_WITH_CUDA) || defined(__CUDACC__)
#include <cuda_runtime.h>

namespace nrc {

// Launchers (composite_cuda.cu), one thread per ray; device pointers, contiguous.
// `weights` (forward) and `g_w` (backward) may be null. Instantiated for float and double.
template <typename T>
void composite_forward_cuda(const T* tau, const T* rgb, const T* t, const int64_t* ray_offsets, int64_t rays,
                            T min_trans, T* out_rgb, T* out_opacity, T* out_depth, T* weights, cudaStream_t stream);

template <typename T>
void composite_backward_cuda(const T* g_rgb, const T* g_op, const T* g_depth, const T* g_w, const T* tau,
                             const T* rgb, const T* t, const int64_t* ray_offsets, int64_t rays, T min_trans,
                             T* d_tau, T* d_rgb, cudaStream_t stream);

}  // namespace nrc
#endif
