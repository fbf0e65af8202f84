// Hash-grid encoding on the GPU. Standalone: no torch headers (nvcc -c -I include).
// Forward and table backward use one thread per (point, level) with the level in blockIdx.y, so a
// warp shares a level's table slice; the table gradient uses atomicAdd. The x gradient uses one
// thread per point looping over levels, so it needs no atomics.
#include <cuda_runtime.h>

#include <type_traits>

#include "nrc/hashgrid.h"

namespace nrc {
namespace {

constexpr int kThreads = 256;

struct AtomicAdd {
    template <typename T>
    __device__ void operator()(T* p, T v) const { atomicAdd(p, v); }
};

template <typename T, int F>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ table, T* __restrict__ out, int64_t n,
                               HashGridParams p) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int l = blockIdx.y;
    if (i >= n) return;
    HashCell<T> c;
    hash_cell(x + 3 * i, p.level[l], c);
    hash_level_forward<T, F>(c, table, out + (i * p.levels + l) * F);
}

template <typename T, int F>
__global__ void backward_table_kernel(const T* __restrict__ grad_out, const T* __restrict__ x, T* grad_table,
                                      int64_t n, HashGridParams p) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int l = blockIdx.y;
    if (i >= n) return;
    HashCell<T> c;
    hash_cell(x + 3 * i, p.level[l], c);
    hash_level_backward_table<T, F>(c, grad_out + (i * p.levels + l) * F, grad_table, AtomicAdd{});
}

template <typename T, int F>
__global__ void backward_x_kernel(const T* __restrict__ grad_out, const T* __restrict__ x,
                                  const T* __restrict__ table, T* __restrict__ grad_x, int64_t n, HashGridParams p) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T gx[3] = {T(0), T(0), T(0)};
    for (int l = 0; l < p.levels; ++l) {
        HashCell<T> c;
        hash_cell(x + 3 * i, p.level[l], c);
        hash_level_grad_x<T, F>(c, table, grad_out + (i * p.levels + l) * F, T(p.level[l].res), gx);
    }
    for (int a = 0; a < 3; ++a) grad_x[3 * i + a] = gx[a];
}

template <typename Fn>
void dispatch_features(int features, Fn&& fn) {
    nrc_dispatch_features(features, fn);  // the torch glue rejects other sizes before launching
}

dim3 level_grid(int64_t n, int levels) { return dim3(unsigned((n + kThreads - 1) / kThreads), unsigned(levels)); }

}  // namespace

template <typename T>
void hash_encode_forward_cuda(const T* x, const T* table, T* out, int64_t n, const HashGridParams& p,
                              cudaStream_t stream) {
    dispatch_features(p.features, [&](auto f) {
        forward_kernel<T, decltype(f)::value><<<level_grid(n, p.levels), kThreads, 0, stream>>>(x, table, out, n, p);
    });
}

template <typename T>
void hash_encode_backward_cuda(const T* grad_out, const T* x, const T* table, T* grad_table, T* grad_x, int64_t n,
                               const HashGridParams& p, cudaStream_t stream) {
    dispatch_features(p.features, [&](auto f) {
        constexpr int F = decltype(f)::value;
        if (grad_table)
            backward_table_kernel<T, F><<<level_grid(n, p.levels), kThreads, 0, stream>>>(grad_out, x, grad_table, n, p);
        if (grad_x) {
            const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
            backward_x_kernel<T, F><<<blocks, kThreads, 0, stream>>>(grad_out, x, table, grad_x, n, p);
        }
    });
}

template void hash_encode_forward_cuda<float>(const float*, const float*, float*, int64_t, const HashGridParams&,
                                              cudaStream_t);
template void hash_encode_forward_cuda<double>(const double*, const double*, double*, int64_t,
                                               const HashGridParams&, cudaStream_t);
template void hash_encode_backward_cuda<float>(const float*, const float*, const float*, float*, float*, int64_t,
                                               const HashGridParams&, cudaStream_t);
template void hash_encode_backward_cuda<double>(const double*, const double*, const double*, double*, double*,
                                                int64_t, const HashGridParams&, cudaStream_t);

}  // namespace nrc
