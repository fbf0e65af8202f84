// Triangle rasterization math shared by the CPU loop and the CUDA kernels.
//
// Rules (the torch reference in converter/kernels/raster.py performs the same IEEE operations):
// - pixel (i, j) is sampled at its centre (j + 0.5, i + 0.5); vertex positions are float32
//   pixel coordinates, all edge math is in double;
// - coverage: the three edge functions, each evaluated with its endpoints in a canonical order
//   (lexicographic on (x, y)), all have the sign of the triangle's area or are zero (inclusive).
//   Two triangles sharing an edge compute exactly opposite values for it, so a mesh has no cracks
//   and a pixel centre is claimed twice only when it lies exactly on the shared edge;
// - both windings are accepted; zero-area and non-finite triangles are skipped;
// - barycentrics are linear in screen space (not perspective-correct);
// - depth is the perspective-correct view depth: 1 / (sum_i b_i / z_i);
// - the winner per pixel is the minimum of the 64-bit key (depth bits << 32 | triangle id): for
//   positive floats the bit patterns order like the values, so nearest wins, then the smaller id.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "nrc/common.h"

namespace nrc {

constexpr uint64_t kRasterEmpty = ~uint64_t(0);

struct RasterTri {
  double ax, ay, bx, by, cx, cy;
  double area;         // edge function of (a, b) at c: twice the signed area
  int x0, x1, y0, y1;  // inclusive pixel bounds of the centres inside the bounding box
};

NRC_HD bool raster_finite(double x) { return fabs(x) <= 1.7976931348623157e308; }

// Edge function of the directed edge u -> v at p, evaluated with the endpoints in canonical order.
NRC_HD double raster_edge(double ux, double uy, double vx, double vy, double px, double py) {
  if (vx < ux || (vx == ux && vy < uy)) {
    return -((ux - vx) * (py - vy) - (uy - vy) * (px - vx));
  }
  return (vx - ux) * (py - uy) - (vy - uy) * (px - ux);
}

NRC_HD double raster_min3(double a, double b, double c) { return fmin(fmin(a, b), c); }
NRC_HD double raster_max3(double a, double b, double c) { return fmax(fmax(a, b), c); }

// Prepares a triangle from its 2D vertices; false when it covers no pixel centre for sure.
NRC_HD bool raster_setup(const float* a, const float* b, const float* c, int height, int width, RasterTri* t) {
  t->ax = a[0]; t->ay = a[1];
  t->bx = b[0]; t->by = b[1];
  t->cx = c[0]; t->cy = c[1];
  if (!(raster_finite(t->ax) && raster_finite(t->ay) && raster_finite(t->bx) && raster_finite(t->by) &&
        raster_finite(t->cx) && raster_finite(t->cy))) {
    return false;
  }
  t->area = raster_edge(t->ax, t->ay, t->bx, t->by, t->cx, t->cy);
  if (t->area == 0.0) return false;
  double x0 = fmin(fmax(ceil(raster_min3(t->ax, t->bx, t->cx) - 0.5), 0.0), (double)width);
  double x1 = fmax(fmin(floor(raster_max3(t->ax, t->bx, t->cx) - 0.5), width - 1.0), -1.0);
  double y0 = fmin(fmax(ceil(raster_min3(t->ay, t->by, t->cy) - 0.5), 0.0), (double)height);
  double y1 = fmax(fmin(floor(raster_max3(t->ay, t->by, t->cy) - 0.5), height - 1.0), -1.0);
  t->x0 = (int)x0; t->x1 = (int)x1;
  t->y0 = (int)y0; t->y1 = (int)y1;
  return t->x0 <= t->x1 && t->y0 <= t->y1;
}

NRC_HD int64_t raster_box_size(const RasterTri& t) {
  return (int64_t)(t.x1 - t.x0 + 1) * (int64_t)(t.y1 - t.y0 + 1);
}

// Edge functions at the centre of pixel (i, j); true when the centre is covered.
NRC_HD bool raster_cover(const RasterTri& t, int i, int j, double* w) {
  const double px = j + 0.5, py = i + 0.5;
  w[0] = raster_edge(t.bx, t.by, t.cx, t.cy, px, py);
  w[1] = raster_edge(t.cx, t.cy, t.ax, t.ay, px, py);
  w[2] = raster_edge(t.ax, t.ay, t.bx, t.by, px, py);
  if (t.area > 0.0) return w[0] >= 0.0 && w[1] >= 0.0 && w[2] >= 0.0;
  return w[0] <= 0.0 && w[1] <= 0.0 && w[2] <= 0.0;
}

// Depth of a covered pixel: view depth interpolated as 1/z (the z-buffer orders true depths).
NRC_HD float raster_depth(const RasterTri& t, const double* w, float z0, float z1, float z2) {
  const double b0 = w[0] / t.area, b1 = w[1] / t.area, b2 = w[2] / t.area;
  const double inv = b0 / (double)z0 + b1 / (double)z1 + b2 / (double)z2;
  return (float)(1.0 / inv);
}

NRC_HD void raster_bary(const RasterTri& t, const double* w, float* out) {
  for (int k = 0; k < 3; ++k) out[k] = (float)(w[k] / t.area);
}

NRC_HD bool raster_depths_valid(float z0, float z1, float z2) {
  return z0 > 0.f && z1 > 0.f && z2 > 0.f && raster_finite(z0) && raster_finite(z1) && raster_finite(z2);
}

NRC_HD uint32_t raster_float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

NRC_HD float raster_bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

NRC_HD uint64_t raster_key(float depth, int32_t tri) {
  return ((uint64_t)raster_float_bits(depth) << 32) | (uint32_t)tri;
}

// Sets up triangle `f` of an indexed mesh; `verts` rows have x, y (and z when depth-tested).
// Screen-space triangles need all three depths positive and finite (clipping is the caller's job).
NRC_HD bool raster_setup_face(const float* verts, int stride, const int32_t* faces, int64_t f, int height,
                              int width, bool depth_test, RasterTri* t, float* z) {
  const float* a = verts + (int64_t)faces[3 * f] * stride;
  const float* b = verts + (int64_t)faces[3 * f + 1] * stride;
  const float* c = verts + (int64_t)faces[3 * f + 2] * stride;
  if (depth_test) {
    z[0] = a[2]; z[1] = b[2]; z[2] = c[2];
    if (!raster_depths_valid(z[0], z[1], z[2])) return false;
  }
  return raster_setup(a, b, c, height, width, t);
}

// Key of triangle `f` at a covered pixel: depth first when depth-tested, else the id alone.
NRC_HD uint64_t raster_face_key(const RasterTri& t, const double* w, const float* z, bool depth_test, int64_t f) {
  return depth_test ? raster_key(raster_depth(t, w, z[0], z[1], z[2]), (int32_t)f) : (uint64_t)f;
}

}  // namespace nrc

#if defined(NRC_WITH_CUDA) || defined(__CUDACC__)
#include <cuda_runtime.h>
// Launchers (raster_cuda.cu); device pointers. `verts` is (V, stride) float with x, y first and z
// third when `depth_test`; `faces` is (T, 3) int32 with valid indices; `keys` is (H * W).
// Pass 1: per triangle, how many pixel centres its clipped bounding box holds (0 when skipped).
void nrc_raster_sizes_cuda(const float* verts, int stride, const int32_t* faces, int64_t tris, int height,
                           int width, bool depth_test, int64_t* sizes, cudaStream_t stream);
// Pass 2: one thread per (triangle, candidate pixel); `scan` is the inclusive scan of the sizes and
// `total` its last value; atomic-min of the keys into `keys` (which starts at kRasterEmpty).
void nrc_raster_keys_cuda(const float* verts, int stride, const int32_t* faces, int64_t tris, int height,
                          int width, bool depth_test, const int64_t* scan, int64_t total, uint64_t* keys,
                          cudaStream_t stream);
// Pass 3: per pixel, triangle id (-1 empty), barycentrics and depth (skipped when null).
void nrc_raster_resolve_cuda(const float* verts, int stride, const int32_t* faces, int height, int width,
                             bool depth_test, const uint64_t* keys, int32_t* tri, float* bary, float* depth,
                             cudaStream_t stream);
#endif
