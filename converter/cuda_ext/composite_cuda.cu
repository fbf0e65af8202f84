// Volume-rendering compositing on the GPU, one thread per ray. Standalone: no torch headers.
#include <cuda_runtime.h>

#include "nrc/composite.h"

namespace nrc {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void forward_kernel(const T* __restrict__ tau, const T* __restrict__ rgb, const T* __restrict__ t,
                               const int64_t* __restrict__ offsets, int64_t rays, T min_trans, T* out_rgb,
                               T* out_op, T* out_depth, T* weights) {
    const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= rays) return;
    composite_ray_forward(tau, rgb, t, offsets[r], offsets[r + 1], min_trans, out_rgb + 3 * r, out_op + r,
                          out_depth + r, weights);
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ g_rgb, const T* __restrict__ g_op,
                                const T* __restrict__ g_depth, const T* __restrict__ g_w, const T* __restrict__ tau,
                                const T* __restrict__ rgb, const T* __restrict__ t,
                                const int64_t* __restrict__ offsets, int64_t rays, T min_trans, T* d_tau, T* d_rgb) {
    const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= rays) return;
    composite_ray_backward(g_rgb + 3 * r, g_op[r], g_depth[r], g_w, tau, rgb, t, offsets[r], offsets[r + 1],
                           min_trans, d_tau, d_rgb);
}

unsigned blocks_for(int64_t rays) { return unsigned((rays + kThreads - 1) / kThreads); }

}  // namespace

template <typename T>
void composite_forward_cuda(const T* tau, const T* rgb, const T* t, const int64_t* ray_offsets, int64_t rays,
                            T min_trans, T* out_rgb, T* out_opacity, T* out_depth, T* weights, cudaStream_t stream) {
    if (rays == 0) return;
    forward_kernel<T><<<blocks_for(rays), kThreads, 0, stream>>>(tau, rgb, t, ray_offsets, rays, min_trans, out_rgb,
                                                                 out_opacity, out_depth, weights);
}

template <typename T>
void composite_backward_cuda(const T* g_rgb, const T* g_op, const T* g_depth, const T* g_w, const T* tau,
                             const T* rgb, const T* t, const int64_t* ray_offsets, int64_t rays, T min_trans,
                             T* d_tau, T* d_rgb, cudaStream_t stream) {
    if (rays == 0) return;
    backward_kernel<T><<<blocks_for(rays), kThreads, 0, stream>>>(g_rgb, g_op, g_depth, g_w, tau, rgb, t, ray_offsets,
                                                                  rays, min_trans, d_tau, d_rgb);
}

#define NRC_INSTANTIATE(T)                                                                                          \
    template void composite_forward_cuda<T>(const T*, const T*, const T*, const int64_t*, int64_t, T, T*, T*, T*, T*, \
                                            cudaStream_t);                                                          \
    template void composite_backward_cuda<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,    \
                                             const int64_t*, int64_t, T, T*, T*, cudaStream_t);
NRC_INSTANTIATE(float)
NRC_INSTANTIATE(double)
#undef NRC_INSTANTIATE

}  // namespace nrc
