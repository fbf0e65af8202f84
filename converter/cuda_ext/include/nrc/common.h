// Shared by the CPU (C++/OpenMP) and CUDA builds: one definition of the per-element math, so both
// devices compute the same numbers. No torch headers here: the .cu files compile standalone.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define NRC_HD __host__ __device__ __forceinline__
#else
#define NRC_HD inline
#endif

namespace nrc {

// Explicit float/double overloads: std:: math in device code depends on the CUDA headers' mood.
NRC_HD float nrc_floor(float v) { return floorf(v); }
NRC_HD double nrc_floor(double v) { return floor(v); }
NRC_HD float nrc_exp(float v) { return expf(v); }
NRC_HD double nrc_exp(double v) { return exp(v); }

// NaN maps to 0 (both comparisons fail), so a diverged input can never index out of bounds.
template <typename T>
NRC_HD T clamp01(T v) { return v > T(0) ? (v < T(1) ? v : T(1)) : T(0); }

template <typename T>
struct Vec3 {
    T x, y, z;
};

template <typename T>
NRC_HD Vec3<T> load3(const T* p) { return Vec3<T>{p[0], p[1], p[2]}; }

template <typename T>
NRC_HD void store3(T* p, const Vec3<T>& v) { p[0] = v.x; p[1] = v.y; p[2] = v.z; }

template <typename T>
NRC_HD Vec3<T> operator+(const Vec3<T>& a, const Vec3<T>& b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }

template <typename T>
NRC_HD Vec3<T> operator*(T s, const Vec3<T>& a) { return {s * a.x, s * a.y, s * a.z}; }

template <typename T>
NRC_HD T dot(const Vec3<T>& a, const Vec3<T>& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

}  // namespace nrc
