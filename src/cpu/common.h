#pragma once
// CPU backend toolkit: dtype dispatch, float conversion, and parallel loops over rows.
// Kernels are plain loops over float accumulators that the compiler vectorises; OpenMP
// spreads rows over every core.
#include <omp.h>

#include <cstdint>

#include "mlxn/dtype.h"
#include "mlxn/error.h"

namespace mlxn::cpu {

// Calls f.template operator()<T>() with T = float, Half or BFloat16 for the given dtype.
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f.template operator()<float>();
    case DType::f16: return f.template operator()<Half>();
    case DType::bf16: return f.template operator()<BFloat16>();
    default: throw_error<Unsupported>(op, "cpu: dtype ", name(t), " is not a float type");
  }
}

template <class T>
inline float to_float(T v) { return float(v); }
template <class T>
inline T from_float(float v) { return T(v); }

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
