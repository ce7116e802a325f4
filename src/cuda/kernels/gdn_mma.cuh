#pragma once
// Fragment helpers of the chunked delta rule on top of kernels/mma.cuh: operand packing and
// the ldmatrix addresses of the tile shapes used here.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels/gdn_common.cuh"

namespace mlxn::kernels::gdn {

// c[n] += a . b over one 16 x 32 slab of B: n-tiles 0, 1 from b0 (one ldsm_x4) and 2, 3 from b1.
template <class CT>
__device__ __forceinline__ void mma_16x32(float (&c)[4][4], const uint32_t (&a)[4], const uint32_t (&b0)[4],
                                          const uint32_t (&b1)[4]) {
  mma_16816<CT>(c[0], a, b0[0], b0[1]);
  mma_16816<CT>(c[1], a, b0[2], b0[3]);
  mma_16816<CT>(c[2], a, b1[0], b1[1]);
  mma_16816<CT>(c[3], a, b1[2], b1[3]);
}

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

// ldmatrix addresses (per lane) for the operand shapes used here; `ld` is the row stride of
// the shared tile in elements.
// A fragment of rows m0.., columns k0.. of a row-major [m][k] tile.
template <class CT>
__device__ __forceinline__ const CT* a_rows(const CT* tile, int ld, int m0, int k0, int lane) {
  return tile + (m0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8;
}
// A fragment (rows m0.., cols k0..) of a tile stored transposed, [k][m].
template <class CT>
__device__ __forceinline__ const CT* a_trans(const CT* tile, int ld, int m0, int k0, int lane) {
  const int mat = lane >> 3;
  return tile + (k0 + (lane & 7) + (mat >> 1) * 8) * ld + m0 + (mat & 1) * 8;
}
// B fragments of n-tiles n0 and n0 + 8 at k0.. from a tile stored [n][k] (k contiguous).
template <class CT>
__device__ __forceinline__ const CT* b_nk(const CT* tile, int ld, int n0, int k0, int lane) {
  return tile + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
}
// B fragments of n-tiles n0 and n0 + 8 at k0.. from a tile stored [k][n] (n contiguous).
template <class CT>
__device__ __forceinline__ const CT* b_kn(const CT* tile, int ld, int n0, int k0, int lane) {
  return tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
}

}  // namespace mlxn::kernels::gdn
