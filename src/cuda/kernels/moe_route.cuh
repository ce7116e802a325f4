#pragma once
// MoE routing kernels and parts: scores, top-k, weights (moe_route, and the kernels that route
// for themselves: moe_layer's). Framework-free.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

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

// Top-k of one token by a whole block, for kernels that route for themselves (moe_layer's):
// every thread owns experts, and expert e's rank is the number of keys that beat its own (the
// packed keys are distinct), so slot r gets the r-th best, as k rounds of an argmax would give
// it. The softmax's max and normaliser are taken as route_warp_kernel takes them (lane l over
// experts l, l + 32, ..., then a butterfly) and the weights computed as it computes them, so
// for E <= 256 they are its bits. l: the token's logits (final: read through L2); s_logit: E
// floats and s_key: E words of shared memory; ids, w: top_k <= 32 entries, written for the
// whole block (it ends with a barrier).
template <class T>
__device__ void route_token_block(const RouteParams& p, const T* l, float* s_logit, uint64_t* s_key, int* ids,
                                  float* w) {
  static_assert(sizeof(T) == 2, "16-bit logits");
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, E = p.experts, k = p.top_k;
  const auto* bits = reinterpret_cast<const unsigned short*>(l);
  for (int e = tid; e < E; e += nt) {
    const unsigned short b = __ldcg(bits + e);
    if constexpr (std::is_same_v<T, __half>)
      s_logit[e] = __half2float(__ushort_as_half(b));
    else
      s_logit[e] = __bfloat162float(__ushort_as_bfloat16(b));
  }
  __syncthreads();
  float mx = -INFINITY, inv_z = 1.f;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, s_logit[e]);
  if (!p.sigmoid) {
    mx = warp_max(mx);
    float z = 0.f;
    for (int e = lane; e < E; e += 32) z += expf(s_logit[e] - mx);
    inv_z = 1.f / warp_sum(z);
  }
  auto score_of = [&](float lg) { return p.sigmoid ? 1.f / (1.f + expf(-lg)) : expf(lg - mx) * inv_z; };
  for (int e = tid; e < E; e += nt) {
    const float lg = s_logit[e];
    s_key[e] = route_pack(route_key(lg, p.bias ? score_of(lg) : 0.f, p.bias, e), e);
  }
  __syncthreads();
  for (int e = tid; e < E; e += nt) {
    const uint64_t key = s_key[e];
    int rank = 0;
    for (int j = 0; j < E; ++j) rank += s_key[j] > key ? 1 : 0;
    if (rank < k) ids[rank] = e;
  }
  __syncthreads();
  if (tid < 32) {
    const float sc = lane < k ? score_of(s_logit[ids[lane]]) : 0.f;
    const float norm = p.renormalize ? 1.f / warp_sum(sc) : 1.f;
    if (lane < k) w[lane] = p.scale ? sc * norm * p.scale[ids[lane]] : sc * norm;
  }
  __syncthreads();
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

}  // namespace mlxn::kernels
