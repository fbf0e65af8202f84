// torch glue and CPU implementation of nrc::march_rays (occupancy-grid ray marching).
//
// Two passes over the rays: count the kept samples, exclusive-scan the counts into offsets, then
// fill. Both passes run the same nrc::march_ray, so the packing cannot disagree with the counts.
#include <ATen/ATen.h>
#include <ATen/DeviceGuard.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "nrc/march.h"

#ifdef NRC_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace {

using at::Tensor;

nrc::MarchGrid make_grid(const Tensor& occ, const std::vector<double>& box_min, const std::vector<double>& box_max,
                         float dt) {
  TORCH_CHECK(box_min.size() == 3 && box_max.size() == 3, "march_rays: box_min/box_max need 3 values");
  nrc::MarchGrid g;
  g.occ = occ.data_ptr<uint8_t>();
  for (int a = 0; a < 3; ++a) {
    g.res[a] = (int)occ.size(a);
    g.lo[a] = (float)box_min[a];
    g.ext[a] = (float)box_max[a] - g.lo[a];
    TORCH_CHECK(g.ext[a] > 0.f, "march_rays: box_max must exceed box_min on every axis");
  }
  g.skip_empty = nrc::march_skip_worth(g.res, g.ext, dt);
  return g;
}

void check_inputs(const Tensor& o, const Tensor& d, const Tensor& near, const Tensor& far, const Tensor& grid,
                  const Tensor& offset, double dt, int64_t max_samples) {
  const int64_t r = o.size(0);
  TORCH_CHECK(o.dim() == 2 && o.size(1) == 3 && d.sizes() == o.sizes(), "march_rays: o and d must be (R, 3)");
  TORCH_CHECK(near.dim() == 1 && far.dim() == 1 && offset.dim() == 1 && near.size(0) == r && far.size(0) == r &&
                  offset.size(0) == r,
              "march_rays: near, far and offset must be (R,)");
  for (const Tensor* t : {&o, &d, &near, &far, &offset}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat, "march_rays: ray tensors must be float32");
    TORCH_CHECK(t->device() == o.device(), "march_rays: all tensors must be on one device");
  }
  TORCH_CHECK(grid.dim() == 3 && grid.numel() > 0, "march_rays: grid must be a non-empty (Gx, Gy, Gz) tensor");
  TORCH_CHECK(grid.device() == o.device(), "march_rays: all tensors must be on one device");
  TORCH_CHECK((float)dt > 0.f, "march_rays: dt must be positive");
  TORCH_CHECK(max_samples >= 0 && max_samples <= (int64_t(1) << 24),
              "march_rays: max_samples must lie in [0, 2^24] (k is exact in float32 up to there)");
}

// Ray tensors of one launch, as raw pointers, and how each ray is cut into spans of samples.
struct Rays {
  const float *o, *d, *near, *far, *offset;
  int64_t count;
  float dt;
  int steps, span_len, spans;
};

// CPU: one ray per iteration (two cores gain nothing from spans). CUDA: enough (ray, span) threads
// to fill the GPU, spans of at least 32 samples.
Rays make_rays(const Tensor& o, const Tensor& d, const Tensor& near, const Tensor& far, const Tensor& offset,
               double dt, int64_t max_samples) {
  Rays r{o.data_ptr<float>(), d.data_ptr<float>(), near.data_ptr<float>(), far.data_ptr<float>(),
         offset.data_ptr<float>(), o.size(0), (float)dt, (int)max_samples, (int)max_samples, 1};
  if (o.is_cuda() && r.count > 0 && r.steps > 0) {
    const int64_t want = ((int64_t(1) << 16) + r.count - 1) / r.count;
    const int64_t cap = std::max<int64_t>(1, (r.steps + 31) / 32);
    const int spans = (int)std::min(std::max<int64_t>(want, 1), cap);
    r.span_len = (r.steps + spans - 1) / spans;
    r.spans = (r.steps + r.span_len - 1) / r.span_len;
  }
  return r;
}

void march_cpu(const nrc::MarchGrid& g, const Rays& r, int64_t* counts, const int64_t* offsets, float* t_out) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(at::get_num_threads())
  for (int64_t i = 0; i < r.count; ++i) {
    float* out = offsets ? t_out + offsets[i] : nullptr;
    int n = nrc::march_span(g, r.o + 3 * i, r.d + 3 * i, r.near[i], r.far[i], r.offset[i], r.dt, 0, r.steps, out);
    if (counts) counts[i] = n;
  }
}

// Pass 1 (offsets == nullptr: counts per span) or pass 2 (t written at each span's offset).
void run_pass(const nrc::MarchGrid& g, const Rays& r, bool cuda, int64_t* counts, const int64_t* offsets,
              float* t_out) {
  if (!cuda) {
    march_cpu(g, r, counts, offsets, t_out);
    return;
  }
#ifdef NRC_WITH_CUDA
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (offsets == nullptr) {
    nrc_march_count_cuda(g, r.o, r.d, r.near, r.far, r.offset, r.dt, r.steps, r.span_len, r.spans, r.count, counts,
                         stream);
  } else {
    nrc_march_fill_cuda(g, r.o, r.d, r.near, r.far, r.offset, r.dt, r.steps, r.span_len, r.spans, r.count, offsets,
                        t_out, stream);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
#else
  TORCH_CHECK(false, "march_rays: this build of the nrc extension has no CUDA support");
#endif
}

std::tuple<Tensor, Tensor> march_rays(const Tensor& o_in, const Tensor& d_in, const Tensor& near_in,
                                      const Tensor& far_in, const Tensor& grid_in, std::vector<double> box_min,
                                      std::vector<double> box_max, double dt, int64_t max_samples,
                                      const Tensor& offset_in) {
  check_inputs(o_in, d_in, near_in, far_in, grid_in, offset_in, dt, max_samples);
  const at::OptionalDeviceGuard guard(at::device_of(o_in));
  Tensor o = o_in.contiguous(), d = d_in.contiguous(), near = near_in.contiguous(), far = far_in.contiguous();
  Tensor offset = offset_in.contiguous();
  Tensor occ = grid_in.to(at::kByte).contiguous();
  const nrc::MarchGrid g = make_grid(occ, box_min, box_max, (float)dt);
  const Rays r = make_rays(o, d, near, far, offset, dt, max_samples);
  const int64_t n = r.count * r.spans;
  Tensor counts = at::zeros({n}, o.options().dtype(at::kLong));
  run_pass(g, r, o.is_cuda(), counts.data_ptr<int64_t>(), nullptr, nullptr);
  Tensor span_end = counts.cumsum(0);
  Tensor span_start = span_end - counts;  // exclusive scan: where each span writes
  const int64_t total = n > 0 ? span_end[n - 1].item<int64_t>() : 0;
  Tensor ray_offsets = at::empty({r.count + 1}, counts.options());
  ray_offsets.narrow(0, 0, r.count).copy_(span_start.view({r.count, r.spans}).select(1, 0));
  ray_offsets[r.count].fill_(total);
  Tensor t = at::empty({total}, o.options());
  if (total > 0) run_pass(g, r, o.is_cuda(), nullptr, span_start.data_ptr<int64_t>(), t.data_ptr<float>());
  return {t, ray_offsets};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(nrc, m) {
  m.def(
      "march_rays(Tensor o, Tensor d, Tensor near, Tensor far, Tensor grid, float[] box_min, float[] box_max, "
      "float dt, int max_samples, Tensor offset) -> (Tensor, Tensor)",
      &march_rays);
}
