#pragma once
// MoE kernels: routing (scores, top-k, weights), weighted sum of expert outputs, gated
// activations, and the key/offset steps of grouping pairs by expert. Framework-free.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "cuda/kernels/math.cuh"
#include "ops/elementwise_math.h"

namespace mlxn::kernels {

// ---- routing -------------------------------------------------------------------------------

struct RouteParams {
  const void* logits;  // [T, E], rows row_stride apart
  int64_t row_stride;
  int tokens, experts, top_k;
  bool sigmoid, renormalize;
  const float* scale;  // [E] or null
  const float* bias;   // [E] or null
  uint32_t* ids;       // [T, top_k]
  float* weights;      // [T, top_k]
};

// (v, i) beats (bv, bi): larger value, or equal value and lower index. NaN never beats.
__device__ __forceinline__ bool route_better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (route_better(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

// Selection key of a valid expert: the logit (monotonic in the score, exact) or the biased
// score; NaN becomes -inf so that it is selected last rather than never.
__device__ __forceinline__ float route_key(float logit, float score, const float* bias, int e) {
  const float k = bias ? score + bias[e] : logit;
  return k != k ? -INFINITY : k;
}

// A candidate as one orderable 64-bit word: the key's bits mapped so that unsigned order is
// float order in the high half, the complemented expert index in the low half (equal keys:
// the lower index is larger). 0 is below every candidate and marks "not a candidate".
__device__ __forceinline__ uint64_t route_pack(float key, int e) {
  uint32_t u = __float_as_uint(key);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (uint64_t(u) << 32) | uint64_t(~uint32_t(e));
}
__device__ __forceinline__ int route_unpack_index(uint64_t packed) { return int(~uint32_t(packed)); }

// One warp per token, E <= 32 * V: lane l holds experts l, l + 32, ... in registers. Top-k
// by k rounds of a warp max over packed (key, index) words, one shuffle chain per round;
// slot r is kept by lane r % 32, which then recomputes its expert's score.
template <class T, int V>
__global__ void __launch_bounds__(128) route_warp_kernel(RouteParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int token = int((blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5), lane = threadIdx.x & 31;
  if (token >= p.tokens) return;
  const T* l = static_cast<const T*>(p.logits) + int64_t(token) * p.row_stride;
  float logit[V];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int e = lane + 32 * j;
    logit[j] = e < p.experts ? to_f32(l[e]) : -INFINITY;
    mx = fmaxf(mx, logit[j]);
  }
  float inv_z = 1.f;
  if (!p.sigmoid) {
    mx = warp_max(mx);
    float z = 0.f;
#pragma unroll
    for (int j = 0; j < V; ++j) z += lane + 32 * j < p.experts ? expf(logit[j] - mx) : 0.f;
    inv_z = 1.f / warp_sum(z);
  }
  auto score_of = [&](float lg) { return p.sigmoid ? 1.f / (1.f + expf(-lg)) : expf(lg - mx) * inv_z; };
  uint64_t key[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int e = lane + 32 * j;
    key[j] = e < p.experts ? route_pack(route_key(logit[j], p.bias ? score_of(logit[j]) : 0.f, p.bias, e), e) : 0;
  }
  int my_id[V];
#pragma unroll
  for (int q = 0; q < V; ++q) my_id[q] = 0;
  for (int r = 0; r < p.top_k; ++r) {
    uint64_t best = key[0];
#pragma unroll
    for (int j = 1; j < V; ++j) best = key[j] > best ? key[j] : best;
    const int bi = route_unpack_index(warp_max_u64(best));
#pragma unroll
    for (int j = 0; j < V; ++j)
      if (lane + 32 * j == bi) key[j] = 0;  // the owner retires the winner
#pragma unroll
    for (int q = 0; q < V; ++q)
      if (q == (r >> 5) && lane == (r & 31)) my_id[q] = bi;
  }
  float my_w[V];
  float sum = 0.f;
#pragma unroll
  for (int q = 0; q < V; ++q) {
    my_w[q] = q * 32 + lane < p.top_k ? score_of(to_f32(l[my_id[q]])) : 0.f;
    sum += my_w[q];
  }
  const float norm = p.renormalize ? 1.f / warp_sum(sum) : 1.f;
#pragma unroll
  for (int q = 0; q < V; ++q) {
    const int r = q * 32 + lane;
    if (r < p.top_k) {
      float w = my_w[q] * norm;
      if (p.scale) w *= p.scale[my_id[q]];
      p.ids[int64_t(token) * p.top_k + r] = uint32_t(my_id[q]);
      p.weights[int64_t(token) * p.top_k + r] = w;
    }
  }
}

// One block per token for large E: the keys in shared memory (E floats), top-k by k rounds
// of a block argmax.
template <class T>
__global__ void __launch_bounds__(256) route_block_kernel(RouteParams p) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float keys[];
  __shared__ float scratch[32];
  __shared__ float red_v[32];
  __shared__ int red_i[32];
  const int token = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int nwarps = blockDim.x >> 5;
  const T* l = static_cast<const T*>(p.logits) + int64_t(token) * p.row_stride;
  float mx = -INFINITY;
  for (int e = tid; e < p.experts; e += blockDim.x) mx = fmaxf(mx, to_f32(l[e]));
  mx = block_max(mx, scratch);
  float inv_z = 1.f;
  if (!p.sigmoid) {
    float z = 0.f;
    for (int e = tid; e < p.experts; e += blockDim.x) z += expf(to_f32(l[e]) - mx);
    inv_z = 1.f / block_sum(z, scratch);
  }
  auto score_of = [&](float logit) { return p.sigmoid ? 1.f / (1.f + expf(-logit)) : expf(logit - mx) * inv_z; };
  for (int e = tid; e < p.experts; e += blockDim.x) {
    const float lg = to_f32(l[e]);
    keys[e] = route_key(lg, score_of(lg), p.bias, e);
  }
  __syncthreads();
  uint32_t* ids = p.ids + int64_t(token) * p.top_k;
  float* w = p.weights + int64_t(token) * p.top_k;
  float sum = 0.f;  // meaningful in thread 0
  for (int r = 0; r < p.top_k; ++r) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int e = tid; e < p.experts; e += blockDim.x)
      if (route_better(keys[e], e, bv, bi)) {
        bv = keys[e];
        bi = e;
      }
    warp_argmax(bv, bi);
    if (lane == 0) {
      red_v[warp] = bv;
      red_i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
      bv = lane < nwarps ? red_v[lane] : -INFINITY;
      bi = lane < nwarps ? red_i[lane] : INT_MAX;
      warp_argmax(bv, bi);
      if (lane == 0) {
        keys[bi] = NAN;
        const float s = score_of(to_f32(l[bi]));
        ids[r] = uint32_t(bi);
        w[r] = s;
        sum += s;
      }
    }
    __syncthreads();
  }
  if (tid == 0) {
    const float norm = p.renormalize ? 1.f / sum : 1.f;
    for (int r = 0; r < p.top_k; ++r) {
      float v = w[r] * norm;
      if (p.scale) v *= p.scale[ids[r]];
      w[r] = v;
    }
  }
}

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
