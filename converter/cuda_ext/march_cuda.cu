// CUDA side of occupancy-grid marching: one thread per (ray, span of samples). A thread per ray
// leaves the GPU mostly idle for a few thousand rays of hundreds of steps (measured on an H200:
// slower than the torch reference); spans give every SM work. The count and fill passes run the
// same nrc::march_span, so a span writes exactly as many samples as it counted.
#include <cuda_runtime.h>

#include "nrc/march.h"

namespace {

constexpr int kThreads = 128;

struct Span {
  int64_t ray;
  int k0, k1;
};

__device__ Span span_of(int64_t id, int span_len, int spans, int max_samples) {
  Span s;
  s.ray = id / spans;
  s.k0 = (int)(id % spans) * span_len;
  s.k1 = s.k0 + span_len < max_samples ? s.k0 + span_len : max_samples;
  return s;
}

__global__ void march_count_kernel(nrc::MarchGrid g, const float* o, const float* d, const float* near,
                                   const float* far, const float* offset, float dt, int max_samples, int span_len,
                                   int spans, int64_t n, int64_t* counts) {
  int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (id >= n) return;
  Span s = span_of(id, span_len, spans, max_samples);
  int64_t r = s.ray;
  counts[id] = nrc::march_span(g, o + 3 * r, d + 3 * r, near[r], far[r], offset[r], dt, s.k0, s.k1, nullptr);
}

__global__ void march_fill_kernel(nrc::MarchGrid g, const float* o, const float* d, const float* near,
                                  const float* far, const float* offset, float dt, int max_samples, int span_len,
                                  int spans, int64_t n, const int64_t* offsets, float* t_out) {
  int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (id >= n) return;
  Span s = span_of(id, span_len, spans, max_samples);
  int64_t r = s.ray;
  nrc::march_span(g, o + 3 * r, d + 3 * r, near[r], far[r], offset[r], dt, s.k0, s.k1, t_out + offsets[id]);
}

unsigned blocks_for(int64_t n) { return (unsigned)((n + kThreads - 1) / kThreads); }

}  // namespace

void nrc_march_count_cuda(const nrc::MarchGrid& g, const float* o, const float* d, const float* near,
                          const float* far, const float* offset, float dt, int max_samples, int span_len,
                          int spans, int64_t rays, int64_t* counts, cudaStream_t stream) {
  const int64_t n = rays * spans;
  if (n == 0) return;
  march_count_kernel<<<blocks_for(n), kThreads, 0, stream>>>(g, o, d, near, far, offset, dt, max_samples, span_len,
                                                             spans, n, counts);
}

void nrc_march_fill_cuda(const nrc::MarchGrid& g, const float* o, const float* d, const float* near,
                         const float* far, const float* offset, float dt, int max_samples, int span_len,
                         int spans, int64_t rays, const int64_t* offsets, float* t_out, cudaStream_t stream) {
  const int64_t n = rays * spans;
  if (n == 0) return;
  march_fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(g, o, d, near, far, offset, dt, max_samples, span_len,
                                                            spans, n, offsets, t_out);
}
