#pragma once
// The routing's selection keys and orderings, shared by moe_route's kernels (moe.cuh) and the
// moe_layer kernel (moe_layer_i8.cuh): both select the same experts for the same logits.
#include <cstdint>

#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

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

}  // namespace mlxn::kernels
