#pragma once
// Helpers of the chunked delta rule on top of kernels/mma.cuh: element-pair packing and the
// f32-accurate tf32 products of the prepare's inverse.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels/gdn_common.cuh"

namespace mlxn::kernels::gdn {

// Two floats as one 32-bit pair of CT (the lower address holds `lo`).
template <class CT>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// f32 products of small shared matrices on the tensor cores, at about f32 accuracy: each
// operand is split into a tf32 head (its top 19 bits, a mask) and the exact f32 tail, and a . b
// is taken as a_tail b_head + a_head b_tail + a_head b_head. The mma reads the tail's top 19
// bits only, so the result is within ~2^-20 relative of the f32 product (cvt.rna to tf32 would
// gain a bit at ~6 instructions a value: it is not a single instruction on sm_90). The three
// terms accumulate apart and are summed at the end, so a k-step's three mma do not wait on
// each other (the solve is a chain of these products, latency rather than throughput).
// c (rows m0.., columns n0.. of the 16 x 8 tile) += X[m0 + i][xk + k] Y[yk + k][n0 + j] over
// k in [0, 8 ks); X and Y row-major with row strides ldx, ldy. X's fragment is one ldmatrix
// (four 8 x 4 f32 blocks read as 8 x 8 b16 ones: lane l gets row l / 4, f32 column l % 4, the
// tf32 fragment's place), so X must be 16-byte aligned and ldx a multiple of 4.
__device__ __forceinline__ void product_16x8_f32(float (&c)[4], const float* X, int ldx, int m0, int xk, const float* Y,
                                                 int ldy, int yk, int n0, int ks) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  // this lane's row address for the ldmatrix: blocks (rows 0-7 | 8-15) x (columns 0-3 | 4-7)
  const float* xl = X + (m0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * ldx + xk + 4 * (lane >> 4);
  float c_th[4] = {0.f, 0.f, 0.f, 0.f}, c_ht[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int s = 0; s < ks; ++s) {
    const float* y = Y + (yk + 8 * s + t) * ldy + n0 + g;
    uint32_t araw[4];
    ldsm_x4(araw, xl + 8 * s);
    float a[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = __uint_as_float(araw[i]);
    const float b[2] = {y[0], y[4 * ldy]};
    uint32_t ah[4], at[4], bh[2], bt[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) ah[i] = tf32_head(a[i]), at[i] = __float_as_uint(a[i] - __uint_as_float(ah[i]));
#pragma unroll
    for (int i = 0; i < 2; ++i) bh[i] = tf32_head(b[i]), bt[i] = __float_as_uint(b[i] - __uint_as_float(bh[i]));
    mma_1688_tf32(c_th, at, bh[0], bh[1]);
    mma_1688_tf32(c_ht, ah, bt[0], bt[1]);
    mma_1688_tf32(c, ah, bh[0], bh[1]);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) c[i] += c_th[i] + c_ht[i];
}

// The 16 x 8 accumulator tile c, times `factor`, into rows m0.., columns n0.. of M.
__device__ __forceinline__ void store_16x8_f32(float* M, int ld, int m0, int n0, const float (&c)[4], float factor) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float* m = M + (m0 + g) * ld + n0 + 2 * t;
  m[0] = factor * c[0], m[1] = factor * c[1];
  m[8 * ld] = factor * c[2], m[8 * ld + 1] = factor * c[3];
}

}  // namespace mlxn::kernels::gdn
