// torch glue and CPU implementation of nrc::rasterize (screen space, z-buffered) and
// nrc::rasterize_uv (UV space, smallest triangle id wins). Rules: see nrc/raster.h.
//
// CPU: OpenMP over triangles, each walking its clipped bounding box and atomic-minning a 64-bit
// key per covered pixel (CAS loop), then a per-pixel pass recomputing the winner's barycentrics.
#include <ATen/ATen.h>
#include <ATen/DeviceGuard.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "nrc/raster.h"

#ifdef NRC_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace {

using at::Tensor;

// Inputs of one rasterization, as raw pointers (verts rows: x, y[, z]).
struct Mesh2D {
  const float* verts;
  int stride;
  const int32_t* faces;
  int64_t tris;
  int height, width;
  bool depth_test;
};

inline void atomic_min_u64(uint64_t* p, uint64_t v) {
  uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

void keys_cpu(const Mesh2D& m, uint64_t* keys) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(at::get_num_threads())
  for (int64_t f = 0; f < m.tris; ++f) {
    nrc::RasterTri t;
    float z[3];
    if (!nrc::raster_setup_face(m.verts, m.stride, m.faces, f, m.height, m.width, m.depth_test, &t, z)) continue;
    for (int i = t.y0; i <= t.y1; ++i) {
      for (int j = t.x0; j <= t.x1; ++j) {
        double w[3];
        if (!nrc::raster_cover(t, i, j, w)) continue;
        atomic_min_u64(keys + (int64_t)i * m.width + j, nrc::raster_face_key(t, w, z, m.depth_test, f));
      }
    }
  }
}

void resolve_cpu(const Mesh2D& m, const uint64_t* keys, int32_t* tri, float* bary, float* depth) {
  const int64_t n = (int64_t)m.height * m.width;
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t p = 0; p < n; ++p) {
    float b[3] = {0.f, 0.f, 0.f};
    int32_t id = -1;
    float zp = INFINITY;
    if (keys[p] != nrc::kRasterEmpty) {
      id = (int32_t)(uint32_t)(keys[p] & 0xffffffffu);
      nrc::RasterTri t;
      float z[3];
      double w[3];
      nrc::raster_setup_face(m.verts, m.stride, m.faces, id, m.height, m.width, m.depth_test, &t, z);
      nrc::raster_cover(t, (int)(p / m.width), (int)(p % m.width), w);
      nrc::raster_bary(t, w, b);
      zp = nrc::raster_bits_float((uint32_t)(keys[p] >> 32));
    }
    tri[p] = id;
    for (int k = 0; k < 3; ++k) bary[3 * p + k] = b[k];
    if (depth) depth[p] = zp;
  }
}

#ifdef NRC_WITH_CUDA
void raster_cuda(const Mesh2D& m, const Tensor& like, uint64_t* keys, int32_t* tri, float* bary, float* depth) {
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  Tensor sizes = at::empty({m.tris}, like.options().dtype(at::kLong));
  nrc_raster_sizes_cuda(m.verts, m.stride, m.faces, m.tris, m.height, m.width, m.depth_test,
                        sizes.data_ptr<int64_t>(), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  Tensor scan = m.tris > 0 ? sizes.cumsum(0) : sizes;
  const int64_t total = m.tris > 0 ? scan[m.tris - 1].item<int64_t>() : 0;
  nrc_raster_keys_cuda(m.verts, m.stride, m.faces, m.tris, m.height, m.width, m.depth_test,
                       scan.data_ptr<int64_t>(), total, keys, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  nrc_raster_resolve_cuda(m.verts, m.stride, m.faces, m.height, m.width, m.depth_test, keys, tri, bary, depth,
                          stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

// Shared driver: returns (tri_id, bary, depth); depth is undefined when not depth-tested.
std::tuple<Tensor, Tensor, Tensor> raster(const Tensor& verts_in, const Tensor& faces_in, int64_t height,
                                          int64_t width, bool depth_test) {
  const char* op = depth_test ? "rasterize" : "rasterize_uv";
  const int64_t stride = depth_test ? 3 : 2;
  TORCH_CHECK(verts_in.dim() == 2 && verts_in.size(1) == stride && verts_in.scalar_type() == at::kFloat, op,
              ": vertices must be float32 (V, ", stride, ")");
  TORCH_CHECK(faces_in.dim() == 2 && faces_in.size(1) == 3 && faces_in.scalar_type() == at::kInt, op,
              ": faces must be int32 (T, 3)");
  TORCH_CHECK(faces_in.device() == verts_in.device(), op, ": vertices and faces must be on one device");
  TORCH_CHECK(height >= 0 && width >= 0 && height * width < (int64_t(1) << 31), op, ": bad image size");
  TORCH_CHECK(faces_in.size(0) < (int64_t(1) << 31), op, ": too many triangles for 32-bit ids");
  if (faces_in.numel() > 0) {
    TORCH_CHECK(faces_in.min().item<int32_t>() >= 0 && faces_in.max().item<int64_t>() < verts_in.size(0), op,
                ": face index out of range");
  }
  const at::OptionalDeviceGuard guard(at::device_of(verts_in));
  Tensor verts = verts_in.contiguous(), faces = faces_in.contiguous();
  const auto opts = verts.options();
  Tensor keys = at::full({height, width}, -1, opts.dtype(at::kLong));  // all ones = kRasterEmpty
  Tensor tri = at::empty({height, width}, opts.dtype(at::kInt));
  Tensor bary = at::empty({height, width, 3}, opts);
  Tensor depth = depth_test ? at::empty({height, width}, opts) : Tensor();
  const Mesh2D m{verts.data_ptr<float>(), (int)stride, faces.data_ptr<int32_t>(), faces.size(0),
                 (int)height, (int)width, depth_test};
  auto* k = reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>());
  float* dp = depth_test ? depth.data_ptr<float>() : nullptr;
  if (verts.is_cuda()) {
#ifdef NRC_WITH_CUDA
    raster_cuda(m, verts, k, tri.data_ptr<int32_t>(), bary.data_ptr<float>(), dp);
#else
    TORCH_CHECK(false, op, ": this build of the nrc extension has no CUDA support");
#endif
  } else {
    keys_cpu(m, k);
    resolve_cpu(m, k, tri.data_ptr<int32_t>(), bary.data_ptr<float>(), dp);
  }
  return {tri, bary, depth};
}

std::tuple<Tensor, Tensor, Tensor> rasterize(const Tensor& pix, const Tensor& faces, int64_t height,
                                             int64_t width) {
  return raster(pix, faces, height, width, true);
}

std::tuple<Tensor, Tensor> rasterize_uv(const Tensor& uv, const Tensor& faces, int64_t height, int64_t width) {
  auto out = raster(uv, faces, height, width, false);
  return {std::get<0>(out), std::get<1>(out)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(nrc, m) {
  m.def("rasterize(Tensor pix, Tensor faces, int height, int width) -> (Tensor, Tensor, Tensor)", &rasterize);
  m.def("rasterize_uv(Tensor uv, Tensor faces, int height, int width) -> (Tensor, Tensor)", &rasterize_uv);
}
