#pragma once
// CPU backend toolkit: dtype dispatch, float conversion, and parallel loops over rows.
// Kernels are plain loops over float accumulators that the compiler vectorises; OpenMP
// spreads rows over every core.
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "mlxn/dtype.h"
#include "mlxn/error.h"

namespace mlxn::cpu {

// Calls f.template operator()<T>() with T = float, Half or BFloat16 for the given dtype.
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
      return f.template operator()<float>();
    case DType::f16:
      return f.template operator()<Half>();
    case DType::bf16:
      return f.template operator()<BFloat16>();
    default:
      throw_error<Unsupported>(op, "cpu: dtype ", name(t), " is not a float type");
  }
}

template <class T>
inline float to_float(T v) {
  return float(v);
}
template <class T>
inline T from_float(float v) {
  return T(v);
}

// Whole-row conversions between storage types and f32, written so the compiler vectorises
// them (branch-free bit arithmetic for bf16, F16C instructions for f16 where present).
template <class T>
inline void load_row(const T* src, float* dst, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    const auto* b = reinterpret_cast<const uint16_t*>(src);
    auto* d = reinterpret_cast<uint32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = uint32_t(b[i]) << 16;
  } else {
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
    for (; i < n; ++i) dst[i] = float(src[i]);
  }
}

template <class T>
inline void store_row(const float* src, T* dst, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    const auto* u = reinterpret_cast<const uint32_t*>(src);
    auto* d = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t x = u[i];
      const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
      const uint32_t nan = (x >> 16) | 0x40u;
      d[i] = uint16_t((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
    }
  } else {
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < n; ++i) dst[i] = T(src[i]);
  }
}

// Sums of a row for the statistics of norms and softmax. 32 independent f32 partial sums
// (four 8-lane vector accumulators: no serial dependency chain, unlike one accumulator),
// each over n/32 values, combined in double: about as accurate as the GPU's tree reduction.
inline double row_sum(const float* v, int64_t n) {
  float acc[32] = {};
  const int64_t body = n / 32 * 32;
  for (int64_t i = 0; i < body; i += 32)
    for (int j = 0; j < 32; ++j) acc[j] += v[i + j];
  double total = 0;
  for (int64_t i = body; i < n; ++i) total += double(v[i]);
  for (float a : acc) total += double(a);
  return total;
}

// sum((v[i] - center)^2), the same way.
inline double row_sum_sq(const float* v, int64_t n, float center) {
  float acc[32] = {};
  const int64_t body = n / 32 * 32;
  for (int64_t i = 0; i < body; i += 32)
    for (int j = 0; j < 32; ++j) {
      const float d = v[i + j] - center;
      acc[j] += d * d;
    }
  double total = 0;
  for (int64_t i = body; i < n; ++i) {
    const double d = double(v[i]) - double(center);
    total += d * d;
  }
  for (float a : acc) total += double(a);
  return total;
}

// Runs body(begin, end) over [0, n) split in contiguous chunks across threads; small jobs
// stay on the calling thread (a parallel region costs a few microseconds).
template <class F>
void parallel_for(int64_t n, int64_t work_per_item, F&& body) {
  constexpr int64_t kSerialWork = 1 << 15;
  if (n <= 0) return;
  if (n == 1 || n * work_per_item < kSerialWork || omp_get_max_threads() == 1) {
    body(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = tid * chunk, e = b + chunk < n ? b + chunk : n;
    if (b < e) body(b, e);
  }
}

}  // namespace mlxn::cpu
