// Multiresolution hash-grid encoding (instant-ngp): the per-(point, level) math shared by the CPU
// loops in hashgrid.cpp and the CUDA kernels in hashgrid_cuda.cu.
//
// Semantics (must match nrconvert.kernels.hashgrid.hash_encode_ref): x in [0,1]^3 is clamped, the
// level position is pos = x * res, the cell corner is base = min(floor(pos), res - 1) (so x == 1
// lands on the far face of the last cell, never outside the grid) and frac = pos - base. A level
// of `size` rows is indexed densely when (res + 1)^3 <= size, else by the instant-ngp spatial hash
// masked with size - 1. Corner k has offsets (k >> 2 & 1, k >> 1 & 1, k & 1): x slowest.
#pragma once

#include "common.h"

#include <type_traits>

// Host-side: calls fn(std::integral_constant<int, F>{}) for F in {1, 2, 4, 8} so inner loops
// unroll; false for any other feature count (callers report it their own way).
template <typename Fn>
inline bool nrc_dispatch_features(int features, Fn&& fn) {
    switch (features) {
        case 1: fn(std::integral_constant<int, 1>{}); return true;
        case 2: fn(std::integral_constant<int, 2>{}); return true;
        case 4: fn(std::integral_constant<int, 4>{}); return true;
        case 8: fn(std::integral_constant<int, 8>{}); return true;
        default: return false;
    }
}


namespace nrc {

constexpr int kMaxLevels = 32;

struct HashLevel {
    int64_t offset;  // first table row of the level
    int64_t size;    // rows of the level
    int32_t res;     // cells per axis
    int32_t dense;   // 1: dense indexing, 0: hashed
};

// Passed by value to the CUDA kernels (about 800 bytes, well under the 4 KB parameter limit).
struct HashGridParams {
    int32_t levels;
    int32_t features;
    HashLevel level[kMaxLevels];
};

// Host-side: per-level parameters from resolutions (L,) and cumulative row offsets (L + 1,).
inline HashGridParams make_hash_params(const int32_t* res, const int64_t* offsets, int levels, int features) {
    HashGridParams p{};
    p.levels = levels;
    p.features = features;
    for (int l = 0; l < levels; ++l) {
        HashLevel& lv = p.level[l];
        lv.offset = offsets[l];
        lv.size = offsets[l + 1] - offsets[l];
        lv.res = res[l];
        const int64_t side = int64_t(res[l]) + 1;
        lv.dense = side * side * side <= lv.size ? 1 : 0;
    }
    return p;
}

template <typename T>
struct HashCell {
    int64_t idx[8];     // table rows of the 8 corners
    T wa[3][2];         // per-axis linear weights (1 - frac, frac)
    bool passes[3];     // d pos / d x = res here (clamp passes gradients on the closed [0, 1])
};

NRC_HD int64_t hash_corner_row(const HashLevel& lv, int ix, int iy, int iz) {
    if (lv.dense) {
        const int64_t side = int64_t(lv.res) + 1;
        return lv.offset + ix + (iy + iz * side) * side;
    }
    const uint32_t h = uint32_t(ix) ^ (uint32_t(iy) * 2654435761u) ^ (uint32_t(iz) * 805459861u);
    return lv.offset + int64_t(h & uint32_t(lv.size - 1));
}

template <typename T>
NRC_HD void hash_cell(const T* x, const HashLevel& lv, HashCell<T>& c) {
    int base[3];
    const T top = T(lv.res - 1);
    for (int a = 0; a < 3; ++a) {
        const T pos = clamp01(x[a]) * T(lv.res);
        T fl = nrc_floor(pos);
        fl = fl > top ? top : fl;
        base[a] = int(fl);
        const T frac = pos - fl;
        c.wa[a][0] = T(1) - frac;
        c.wa[a][1] = frac;
        c.passes[a] = x[a] >= T(0) && x[a] <= T(1);
    }
    for (int k = 0; k < 8; ++k)
        c.idx[k] = hash_corner_row(lv, base[0] + (k >> 2 & 1), base[1] + (k >> 1 & 1), base[2] + (k & 1));
}

// Trilinear weight of corner k, multiplied in the reference's order: (wx * wy) * wz.
template <typename T>
NRC_HD T hash_weight(const HashCell<T>& c, int k) {
    return c.wa[0][k >> 2 & 1] * c.wa[1][k >> 1 & 1] * c.wa[2][k & 1];
}

template <typename T, int F>
NRC_HD void hash_level_forward(const HashCell<T>& c, const T* table, T* out) {
    T acc[F];
    for (int f = 0; f < F; ++f) acc[f] = T(0);
    for (int k = 0; k < 8; ++k) {
        const T w = hash_weight(c, k);
        const T* row = table + c.idx[k] * F;
        for (int f = 0; f < F; ++f) acc[f] += w * row[f];
    }
    for (int f = 0; f < F; ++f) out[f] = acc[f];
}

// grad_table[corner] += w * g; `Add` is a plain add on the CPU (levels own disjoint rows) and an
// atomicAdd on the GPU.
template <typename T, int F, typename Add>
NRC_HD void hash_level_backward_table(const HashCell<T>& c, const T* g, T* grad_table, const Add& add) {
    for (int k = 0; k < 8; ++k) {
        const T w = hash_weight(c, k);
        T* row = grad_table + c.idx[k] * F;
        for (int f = 0; f < F; ++f) add(row + f, w * g[f]);
    }
}

// Adds this level's d(out . g)/dx to gx[3]: the trilinear weights are the only x-dependent terms.
template <typename T, int F>
NRC_HD void hash_level_grad_x(const HashCell<T>& c, const T* table, const T* g, T res, T* gx) {
    T gv[8];
    for (int k = 0; k < 8; ++k) {
        const T* row = table + c.idx[k] * F;
        T s = T(0);
        for (int f = 0; f < F; ++f) s += g[f] * row[f];
        gv[k] = s;
    }
    for (int a = 0; a < 3; ++a) {
        if (!c.passes[a]) continue;
        const int b = a == 0 ? 1 : 0, d = a == 2 ? 1 : 2;  // the two other axes
        T acc = T(0);
        for (int k = 0; k < 8; ++k) {
            const int bit_a = k >> (2 - a) & 1;
            const T other = c.wa[b][k >> (2 - b) & 1] * c.wa[d][k >> (2 - d) & 1];
            acc += (bit_a ? other : -other) * gv[k];
        }
        gx[a] += acc * res;
    }
}

}  // namespace nrc

#if defined(NRC_WITH_CUDA) || defined(__CUDACC__)
#include <cuda_runtime.h>

namespace nrc {

// Launchers (hashgrid_cuda.cu); pointers are device pointers, row-major and contiguous.
// Instantiated for float and double; F in {1, 2, 4, 8}.
template <typename T>
void hash_encode_forward_cuda(const T* x, const T* table, T* out, int64_t n, const HashGridParams& p,
                              cudaStream_t stream);

// grad_table (zeroed by the caller) and/or grad_x (written) may be null to skip them.
template <typename T>
void hash_encode_backward_cuda(const T* grad_out, const T* x, const T* table, T* grad_table, T* grad_x,
                               int64_t n, const HashGridParams& p, cudaStream_t stream);

}  // namespace nrc
#endif
