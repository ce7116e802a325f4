#pragma once
// The elementwise engine: one kernel template applies any functor of ops/elementwise_math.h
// to matrices [rows, cols] with unit column stride and one row stride per operand
// (contiguous tensors, row slices, the two halves of a fused [rows, 2n] buffer, a row
// broadcast with row stride 0).
//
// A thread handles packs of N consecutive columns, each moved as 16-byte accesses (N = 16 /
// the smallest element size, so the widest operand moves 32 bytes); N = 1 is the scalar
// path for rows whose starts are not 16-byte aligned. A block is a [by, bx] grid of
// threads: by rows at a time, and in each row bx * VPT packs, pack k of thread t at
// block_base + k * bx + t (coalesced). Rows and columns are both walked grid-stride, so any
// extent fits any grid. Columns past the last whole pack are done one by one by the first
// column block.
#include <cstdint>
#include <type_traits>

#include "cuda/kernels/math.cuh"
#include "ops/elementwise_math.h"

namespace mlxn::kernels {

template <class TA, class TB, class TO>
struct EwParams {
  const TA* a;
  const TB* b;             // Second::tensor; b_stride 0 = one row broadcast over every row
  const float* row_scale;  // Second::row_scalar: [rows]
  TO* out;
  int64_t a_stride, b_stride, out_stride;  // elements between rows
  int64_t rows, cols;
};

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// A pack from global memory. Vector packs (N > 1) span a multiple of 16 bytes and start
// 16-byte aligned. Cached: data reused across rows (a broadcast row) through the read-only
// cache; otherwise a read-once load (load_once).
template <bool Cached, class T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  Pack<T, N> r;
  if constexpr (N == 1) {
    r.v[0] = *p;
  } else {
    static_assert(sizeof(T) * N % 16 == 0, "vector packs are whole 16-byte units");
    const uint4* src = reinterpret_cast<const uint4*>(p);
    uint4* dst = reinterpret_cast<uint4*>(r.v);
#pragma unroll
    for (int i = 0; i < int(sizeof(T) * N / 16); ++i) dst[i] = Cached ? __ldg(src + i) : load_once(src + i);
  }
  return r;
}

// Element -> the functor's value type (float, or the integer itself for copies) and back.
template <class T>
__device__ __forceinline__ auto ew_in(T v) {
  if constexpr (std::is_integral_v<T>)
    return v;
  else
    return to_f32(v);
}

template <class T, class V>
__device__ __forceinline__ T ew_out(V v) {
  if constexpr (std::is_integral_v<T>)
    return T(v);
  else
    return from_f32<T>(v);
}

// Rounds N results to TO and stores them with 16-byte accesses (N > 1; the row is 16-byte
// aligned there), built from whole 32-bit words: converting f16/bf16 in pairs, and handing
// the store unit one 16-byte value rather than a pack it would split into narrow stores.
template <class TO, int N, class V>
__device__ __forceinline__ void store_values(TO* p, const V (&v)[N]) {
  if constexpr (N == 1) {
    *p = ew_out<TO>(v[0]);
  } else {
    static_assert(sizeof(TO) * N % 16 == 0, "vector packs are whole 16-byte units");
    constexpr int kWords = int(sizeof(TO) * N / 4);
    uint32_t w[kWords];
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      if constexpr (std::is_same_v<TO, __nv_bfloat16>) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);  // .x at the lower address
        w[i] = *reinterpret_cast<const uint32_t*>(&h);
      } else if constexpr (std::is_same_v<TO, __half>) {
        const __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
        w[i] = *reinterpret_cast<const uint32_t*>(&h);
      } else {
        static_assert(sizeof(TO) == 4, "4-byte element types");
        const TO t = ew_out<TO>(v[i]);
        w[i] = *reinterpret_cast<const uint32_t*>(&t);
      }
    }
    uint4* dst = reinterpret_cast<uint4*>(p);
#pragma unroll
    for (int i = 0; i < kWords / 4; ++i)
      __stwb(dst + i, make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]));
  }
}

template <ew::Second S, class F, class TA, class TB>
__device__ __forceinline__ auto ew_apply(const F& f, TA a, [[maybe_unused]] TB b, [[maybe_unused]] float s) {
  if constexpr (S == ew::Second::none)
    return f(ew_in(a));
  else if constexpr (S == ew::Second::tensor)
    return f(ew_in(a), ew_in(b));
  else
    return f(ew_in(a), s);
}

template <ew::Second S, int N, int VPT, class F, class TA, class TB, class TO>
__global__ void __launch_bounds__(256) elementwise_kernel(const F f, const EwParams<TA, TB, TO> p) {
  constexpr bool kTwo = S == ew::Second::tensor;
  using Value = decltype(ew_apply<S>(f, TA{}, TB{}, 0.f));  // float, or the integer of a copy
  const int64_t packs = p.cols / N;
  const int tail = int(p.cols - packs * N);  // < N; always 0 on the scalar path
  const int64_t col_step = int64_t(gridDim.x) * blockDim.x * VPT;
  const int64_t row_step = int64_t(gridDim.y) * blockDim.y;
  [[maybe_unused]] const bool b_cached = p.b_stride == 0;
  for (int64_t r = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; r < p.rows; r += row_step) {
    const TA* a = p.a + r * p.a_stride;
    TO* out = p.out + r * p.out_stride;
    [[maybe_unused]] const TB* b = kTwo ? p.b + r * p.b_stride : nullptr;
    [[maybe_unused]] float s = 0.f;
    if constexpr (S == ew::Second::row_scalar) s = p.row_scale[r];
    for (int64_t q0 = int64_t(blockIdx.x) * blockDim.x * VPT + threadIdx.x; q0 < packs; q0 += col_step) {
      // Every load of the thread is issued before the first use, so VPT packs of each
      // operand are in flight at once.
      Pack<TA, N> va[VPT];
      [[maybe_unused]] Pack<TB, N> vb[kTwo ? VPT : 1];
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        const int64_t q = q0 + int64_t(k) * blockDim.x;
        if (q < packs) {
          va[k] = load_pack<false, TA, N>(a + q * N);
          if constexpr (kTwo) vb[k] = b_cached ? load_pack<true, TB, N>(b + q * N) : load_pack<false, TB, N>(b + q * N);
        }
      }
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        const int64_t q = q0 + int64_t(k) * blockDim.x;
        if (q < packs) {
          Value res[N];
#pragma unroll
          for (int j = 0; j < N; ++j) {
            if constexpr (kTwo)
              res[j] = ew_apply<S>(f, va[k].v[j], vb[k].v[j], s);
            else
              res[j] = ew_apply<S>(f, va[k].v[j], TB{}, s);
          }
          store_values<TO, N>(out + q * N, res);
        }
      }
    }
    if (tail > 0 && blockIdx.x == 0 && int(threadIdx.x) < tail) {
      const int64_t c = packs * N + threadIdx.x;
      if constexpr (kTwo)
        out[c] = ew_out<TO>(ew_apply<S>(f, a[c], b[c], s));
      else
        out[c] = ew_out<TO>(ew_apply<S>(f, a[c], TB{}, s));
    }
  }
}

}  // namespace mlxn::kernels
