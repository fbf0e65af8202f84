// CUDA side of triangle rasterization.
//
// Work is spread over (triangle, candidate pixel) pairs rather than one thread per triangle, so a
// single triangle covering the whole screen does not serialise on one thread: pass 1 sizes each
// triangle's bounding box, the caller scans the sizes, pass 2 finds each pair's triangle by binary
// search in the scan and atomic-mins its key into the pixel, pass 3 resolves keys per pixel.
#include <cuda_runtime.h>

#include "nrc/raster.h"

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n, int64_t cap = 65535LL * 64) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)(b < cap ? b : cap);
}

__global__ void sizes_kernel(const float* verts, int stride, const int32_t* faces, int64_t tris, int height,
                             int width, bool depth_test, int64_t* sizes) {
  int64_t f = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (f >= tris) return;
  nrc::RasterTri t;
  float z[3];
  bool ok = nrc::raster_setup_face(verts, stride, faces, f, height, width, depth_test, &t, z);
  sizes[f] = ok ? nrc::raster_box_size(t) : 0;
}

// First index whose inclusive scan value exceeds `q`: the triangle owning candidate q.
__device__ int64_t owner_of(const int64_t* scan, int64_t tris, int64_t q) {
  int64_t lo = 0, hi = tris - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi) >> 1;
    if (scan[mid] > q) hi = mid; else lo = mid + 1;
  }
  return lo;
}

__global__ void keys_kernel(const float* verts, int stride, const int32_t* faces, int64_t tris, int height,
                            int width, bool depth_test, const int64_t* scan, int64_t total,
                            unsigned long long* keys) {
  for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < total;
       q += (int64_t)gridDim.x * blockDim.x) {
    int64_t f = owner_of(scan, tris, q);
    nrc::RasterTri t;
    float z[3];
    nrc::raster_setup_face(verts, stride, faces, f, height, width, depth_test, &t, z);
    int64_t local = q - (scan[f] - nrc::raster_box_size(t));
    int bw = t.x1 - t.x0 + 1;
    int i = t.y0 + (int)(local / bw), j = t.x0 + (int)(local % bw);
    double w[3];
    if (!nrc::raster_cover(t, i, j, w)) continue;
    unsigned long long key = nrc::raster_face_key(t, w, z, depth_test, f);
    atomicMin(keys + (int64_t)i * width + j, key);
  }
}

__global__ void resolve_kernel(const float* verts, int stride, const int32_t* faces, int height, int width,
                               bool depth_test, const uint64_t* keys, int32_t* tri, float* bary, float* depth) {
  int64_t n = (int64_t)height * width;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x) {
    uint64_t key = keys[p];
    float b[3] = {0.f, 0.f, 0.f};
    int32_t id = -1;
    float zp = INFINITY;
    if (key != nrc::kRasterEmpty) {
      id = (int32_t)(uint32_t)(key & 0xffffffffu);
      nrc::RasterTri t;
      float z[3];
      double w[3];
      nrc::raster_setup_face(verts, stride, faces, id, height, width, depth_test, &t, z);
      nrc::raster_cover(t, (int)(p / width), (int)(p % width), w);
      nrc::raster_bary(t, w, b);
      zp = nrc::raster_bits_float((uint32_t)(key >> 32));
    }
    tri[p] = id;
    for (int k = 0; k < 3; ++k) bary[3 * p + k] = b[k];
    if (depth) depth[p] = zp;
  }
}

}  // namespace

void nrc_raster_sizes_cuda(const float* verts, int stride, const int32_t* faces, int64_t tris, int height,
                           int width, bool depth_test, int64_t* sizes, cudaStream_t stream) {
  if (tris == 0) return;
  unsigned blocks = (unsigned)((tris + kThreads - 1) / kThreads);
  sizes_kernel<<<blocks, kThreads, 0, stream>>>(verts, stride, faces, tris, height, width, depth_test, sizes);
}

void nrc_raster_keys_cuda(const float* verts, int stride, const int32_t* faces, int64_t tris, int height,
                          int width, bool depth_test, const int64_t* scan, int64_t total, uint64_t* keys,
                          cudaStream_t stream) {
  if (total == 0) return;
  keys_kernel<<<blocks_for(total), kThreads, 0, stream>>>(verts, stride, faces, tris, height, width, depth_test,
                                                          scan, total, (unsigned long long*)keys);
}

void nrc_raster_resolve_cuda(const float* verts, int stride, const int32_t* faces, int height, int width,
                             bool depth_test, const uint64_t* keys, int32_t* tri, float* bary, float* depth,
                             cudaStream_t stream) {
  int64_t n = (int64_t)height * width;
  if (n == 0) return;
  resolve_kernel<<<blocks_for(n), kThreads, 0, stream>>>(verts, stride, faces, height, width, depth_test, keys,
                                                         tri, bary, depth);
}
