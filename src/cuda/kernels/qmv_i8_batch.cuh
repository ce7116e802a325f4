#pragma once
// The integer tensor-core mat-vec for 2..8 rows of x (decode of a small batch), the parts that
// do not depend on the weight's scale layout: x's batch image, the kernel that writes it, and
// the block's final sum. Its users: the MLX affine 4-bit kernel (quant_mlx_qmv_i8_batch.cuh)
// and the GGUF batch kernel (quant_gguf_i8_batch.cuh).
//
// The products are the single-row kernel's (qmv_i8.cuh: codes by 15-bit fixed-point x in two
// int8 parts, each group's scales applied once to the exact integer sums), but the mma's 8
// columns are the 8 rows of x. The single-row kernel's columns keep apart the x groups that an
// mma's k mixes (k runs over the four lanes of a quad); here nothing is left to separate them,
// so every mma is group-pure: its k covers values of one scale only.
//
// The batch image is x in the B operand's order, so that each of a lane's loads is one
// coalesced 512-byte warp access (reading the single-row image, 64 bytes apart per lane,
// saturated L1: bench/NOTES.md, run 88): "fragments" of 32 16-byte units, unit g * 4 + t for
// B lane (g, t) holding x row g's part bytes for lane t's values. Rows past the call's are
// zeros. Which values a lane holds follows the codes' NibbleOrder:
// - kPairs (MLX, x groups of 64): per 128-value step, group G and part p a fragment; lane t
//   takes code bytes 8t .. 8t + 7 of the group, values 16t .. 16t + 15 (byte j: 2j low, 2j + 1
//   high), four words: the low class's b0, b1 and the high class's b0, b1. The table after the
//   fragments: per (step, group) and x row a float2 (s_x, sum of x over the group).
// - kBlocks (GGUF, x groups of 32): per 16-value run of K lane t takes values 4t .. 4t + 3,
//   what an m16n8k16 mma's k 4t.. holds; per 32 values a fragment, whose unit holds part h of
//   both runs, then part l's, so that an m16n8k32 mma covers 32 values (a Q4_0 block: code
//   bytes 4t .. 4t + 3, low nibbles the first run, high the second). The table: per 32 values
//   and x row a float2 (s_x, sum of x over them).
#include "cuda/kernels/mma.cuh"
#include "cuda/kernels/qmv_i8.cuh"

namespace mlxn::kernels {

struct QmvI8BatchConfig {
  static constexpr int kRows = 8;                    // rows of x: the mma's columns
  static constexpr int kFragUnits = 32;              // one 16-byte unit per lane
  static constexpr int kStepUnits = 4 * kFragUnits;  // (group, part) fragments per step
  // 4 warps split a block's K, each streaming its steps through its own ring of shared-memory
  // stages (cp.async, no registers held for loads in flight); 72 registers: 7 blocks per SM
  // hold the 896 row tiles of N = 14336 in one wave on 132 SMs.
  static constexpr int kWarps = 4, kThreads = 32 * kWarps, kMinBlocks = 7;
  static constexpr int kPrepareThreads = 128;
};

// The image's layout.
template <NibbleOrder O = NibbleOrder::kPairs>
struct QmvI8Batch : QmvI8BatchConfig {
  static_assert(O != NibbleOrder::kHalves, "the batch image has no K-quant half order");
  // Per 64 values and x row (kBlocks: two float2).
  static constexpr int kTableFloats = O == NibbleOrder::kPairs ? 2 : 4;
  static constexpr int64_t table_unit(int64_t k) { return k / 128 * kStepUnits; }
  // In 16-byte units: the fragments, then K / 64 groups x 8 rows of the table's entries.
  static constexpr int64_t units(int64_t k) { return table_unit(k) + k / 64 * kRows * kTableFloats / 4; }
};

// One thread per 8 values of one x row (grid: (K / 8 / kPrepareThreads, 8 rows)); rows past
// `rows` write zeros. Releases the mat-vec first, as qmv_i8_prepare_x does (and for the same
// reason: the mat-vec reads only the weight before its own wait).
template <class CT, NibbleOrder O>
__global__ void __launch_bounds__(QmvI8BatchConfig::kPrepareThreads)
    qmv_i8_batch_prepare_x(const CT* x, int64_t x_stride, int64_t rows, int k, uint4* img) {
  pdl_launch_dependents();
  pdl_wait();
  using I = QmvI8Batch<O>;
  constexpr bool kBlocks = O == NibbleOrder::kBlocks;
  const int i = int(blockIdx.x) * I::kPrepareThreads + int(threadIdx.x), r = int(blockIdx.y);
  const bool in = i < k / 8 && r < rows;
  const uint4 raw = in ? __ldg(reinterpret_cast<const uint4*>(x + r * x_stride) + i) : make_uint4(0, 0, 0, 0);
  float v[8], amax, sum;
  unpack_f32<CT>(raw, v);
  // The lanes of one x group (K % 128 == 0: whole groups), and its sum.
  lanes_amax_sum<kBlocks ? 4 : 8, kBlocks ? 4 : 8>(v, amax, sum);
  if (i >= k / 8) return;
  const float inv = amax > 0.f ? float(QmvI8Image::kFixedMax) / amax : 0.f;
  const int k0 = 8 * i;
  if constexpr (kBlocks) {
    // Values 8i .. 8i + 7: o .. o + 7 of block b, the runs of lanes t and t + 1 (o < 16: the
    // low nibbles' run, word 0 of each part; else the high ones', word 1).
    const int b = k0 / 32, o = k0 % 32, t = (o % 16) / 4, word = o / 16;
    uint32_t* u = reinterpret_cast<uint32_t*>(img + int64_t(b) * I::kFragUnits + r * 4 + t);
    uint32_t h, l;
    fixed_point_words({v[0], v[1], v[2], v[3]}, inv, h, l);
    u[word] = h, u[2 + word] = l;
    fixed_point_words({v[4], v[5], v[6], v[7]}, inv, h, l);
    u[4 + word] = h, u[6 + word] = l;
    if (o == 0)
      reinterpret_cast<float2*>(img + I::table_unit(k))[b * I::kRows + r] =
          make_float2(amax / float(QmvI8Image::kFixedMax), sum);
    return;
  }
  const int s = k0 / 128, grp = (k0 % 128) / 64, o = k0 % 64;
  uint32_t* h0 = reinterpret_cast<uint32_t*>(img + int64_t(s) * I::kStepUnits + grp * 2 * I::kFragUnits + r * 4);
  uint32_t h_lo, l_lo, h_hi, l_hi;
  // Values 8i .. 8i + 7: lane t's (t = o / 16) half (o % 16) / 8 of group G of step s.
  const int t = o / 16, half = (o % 16) / 8;
  fixed_point_words({v[0], v[2], v[4], v[6]}, inv, h_lo, l_lo);  // low class: even values
  fixed_point_words({v[1], v[3], v[5], v[7]}, inv, h_hi, l_hi);
  uint32_t* h = h0 + 4 * t;
  uint32_t* l = h + I::kFragUnits * 4;
  h[half] = h_lo, h[2 + half] = h_hi;
  l[half] = l_lo, l[2 + half] = l_hi;
  if (o == 0)
    reinterpret_cast<float2*>(img + I::table_unit(k))[(s * 2 + grp) * I::kRows + r] =
        make_float2(amax / float(QmvI8Image::kFixedMax), sum);
}

// The block's result: lane (g, t) of each warp holds its part of K of rows g (a) and g + 8 (b)
// of the tile at n0 by x rows 2t and 2t + 1, acc = {(a, 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1)}.
// out: the first output row (N values each, out_stride apart), m rows of x.
template <class CT>
__device__ __forceinline__ void store_batch_tile(const float (&acc)[4], float (&red)[QmvI8BatchConfig::kWarps][32][4],
                                                 CT* out, int64_t out_stride, int n0, int n, int m) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane][c] = acc[c];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    const int xr = 2 * t + (c & 1), row = n0 + g + (c >> 1) * 8;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < QmvI8BatchConfig::kWarps; ++w) v += red[w][lane][c];
    if (xr < m && row < n) out[xr * out_stride + row] = from_f32<CT>(v);
  }
}

}  // namespace mlxn::kernels
