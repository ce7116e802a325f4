#pragma once
// MoE kernels: routing (moe_route.cuh), weighted sum of expert outputs, gated
// activations, and the key/offset steps of grouping pairs by expert. Framework-free.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "cuda/kernels/math.cuh"
#include "cuda/kernels/moe_route.cuh"
#include "ops/elementwise_math.h"

namespace mlxn::kernels {

// ---- vector helpers ------------------------------------------------------------------------

// N consecutive elements at c as floats: one 16-byte load on the vector path (N = Vec<T>::N),
// N bounds-checked scalar loads otherwise (N = 1 there).
template <bool kVec, class T, int N>
__device__ __forceinline__ void moe_load(const T* row, int64_t c, float (&dst)[N]) {
  if constexpr (kVec) {
    const Vec<T> v = load_vec(row + c);
#pragma unroll
    for (int j = 0; j < N; ++j) dst[j] = to_f32(v.v[j]);
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) dst[j] = to_f32(row[c + j]);
  }
}

template <bool kVec, class T, int N>
__device__ __forceinline__ void moe_store(T* row, int64_t c, const float (&src)[N]) {
  if constexpr (kVec) {
    Vec<T> v;
#pragma unroll
    for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(src[j]);
    store_vec(row + c, v);
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) row[c + j] = from_f32<T>(src[j]);
  }
}

template <class T>
struct RowsPtr {
  T* data;
  int64_t stride;
};

// ---- weighted sum --------------------------------------------------------------------------

template <class T, class G>
struct WeightedSumParams {
  RowsPtr<const T> y;    // row t * top_k + j
  const float* weights;  // [T, top_k]
  RowsPtr<T> out;
  RowsPtr<const T> shared;    // data may be null
  RowsPtr<const T> residual;  // data may be null
  const G* gate;              // may be null
  int64_t gate_stride;
  int tokens, top_k;
  int64_t dim;
};

// grid: (tokens, column chunks); each thread N columns of one token.
template <class T, class G, bool kVec>
__global__ void __launch_bounds__(256) weighted_sum_kernel(WeightedSumParams<T, G> p) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int N = kVec ? Vec<T>::N : 1;
  const int t = blockIdx.x;
  const int64_t c = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * N;
  if (c >= p.dim) return;
  float acc[N], v[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = 0.f;
  for (int s = 0; s < p.top_k; ++s) {
    const float w = p.weights[int64_t(t) * p.top_k + s];
    moe_load<kVec>(p.y.data + (int64_t(t) * p.top_k + s) * p.y.stride, c, v);
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] += w * v[j];
  }
  if (p.shared.data) {
    const float g = p.gate ? sigmoidf_(to_f32(p.gate[t * p.gate_stride])) : 1.f;
    moe_load<kVec>(p.shared.data + t * p.shared.stride, c, v);
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] += g * v[j];
  }
  if (p.residual.data) {
    moe_load<kVec>(p.residual.data + t * p.residual.stride, c, v);
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] += v[j];
  }
  moe_store<kVec>(p.out.data + t * p.out.stride, c, acc);
}

// ---- gated activation ----------------------------------------------------------------------

template <class T>
struct GluParams {
  RowsPtr<const T> gate_up;  // [rows, 2I]
  RowsPtr<T> out;            // [rows, I]
  int64_t width;             // I
};

// grid: (rows, column chunks).
template <class T, bool kGelu, bool kVec>
__global__ void __launch_bounds__(256) glu_kernel(GluParams<T> p) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int N = kVec ? Vec<T>::N : 1;
  const int64_t r = blockIdx.x;
  const int64_t c = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * N;
  if (c >= p.width) return;
  const T* row = p.gate_up.data + r * p.gate_up.stride;
  float g[N], u[N], o[N];
  moe_load<kVec>(row, c, g);
  moe_load<kVec>(row + p.width, c, u);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    o[j] = ew::GluAct<kGelu>{}(g[j]) * u[j];
  }
  moe_store<kVec>(p.out.data + r * p.out.stride, c, o);
}

// ---- grouping pairs by expert --------------------------------------------------------------

// keys[p] = the expert of pair p (E for ids outside [0, E)), vals[p] = p.
__global__ void group_keys_kernel(const uint32_t* ids, int pairs, uint32_t experts, uint32_t* keys, uint32_t* vals) {
  pdl_wait();
  pdl_launch_dependents();
  const int p = int(blockIdx.x * int64_t(blockDim.x) + threadIdx.x);
  if (p >= pairs) return;
  const uint32_t e = ids[p];
  keys[p] = e < experts ? e : experts;
  vals[p] = uint32_t(p);
}

// offsets[e] = the number of sorted keys below e, for e in [0, E].
__global__ void group_offsets_kernel(const uint32_t* sorted_keys, int pairs, int experts, uint32_t* offsets) {
  pdl_wait();
  pdl_launch_dependents();
  const int e = int(blockIdx.x * int64_t(blockDim.x) + threadIdx.x);
  if (e > experts) return;
  int lo = 0, hi = pairs;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (sorted_keys[mid] < uint32_t(e))
      lo = mid + 1;
    else
      hi = mid;
  }
  offsets[e] = uint32_t(lo);
}

}  // namespace mlxn::kernels
