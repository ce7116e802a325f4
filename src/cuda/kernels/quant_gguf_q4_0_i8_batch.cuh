#pragma once
// GGUF Q4_0 mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small batch),
// on the batch image in kBlocks order (qmv_i8_batch.cuh): the mma's 8 columns are the 8 rows of
// x, and each mma covers one 32-value block of the 16-row tile, so its d applies to the exact
// integer sums:
//   row value += d (s_x (256 c_h + c_l) - 8 * sum of x over the block)
// with s_x and the block's sum of x per x row from the image's table.
//
// A Q4_0 block is 18 bytes (d as f16, then 16 code bytes: low nibbles values 0..15, high
// 16..31), so for K % 256 == 0 eight blocks are a 144-byte "superblock" of nine 16-byte units
// and every row is whole units. Block: 16 rows, 4 warps splitting K by superblocks (warp w: w,
// w + 4, ...); each warp streams its superblocks of the tile's 16 rows through its own ring
// of shared-memory stages, one box of the weight's tensor map each (16 rows of 144 bytes, one
// copy by the copy engine): whole rows of superblocks, with no partial 32-byte sectors inside
// a warp's request and no per-lane copy instructions (the K-quant kernel's 80- and 64-byte
// steps paid both: bench/NOTES.md runs 170-172). Lane (g, t) reads code bytes 4t .. 4t + 3 of
// rows g and g + 8 per block: at the stage's 144-byte pitch the 32 lanes' words fall in 32
// banks.
#include <cuda.h>

#include <utility>

#include "cuda/kernels/bulk_copy.cuh"
#include "cuda/kernels/qmv_i8_batch.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

struct Q4_0BatchStage {
  static constexpr int kSuperblock = 144, kStage = 16 * kSuperblock, kRing = 3;
  // 27 KB: 7 blocks per SM (the 896 row tiles of N = 14336 in one wave on 132 SMs), two
  // superblocks per warp in flight.
  static constexpr int kSmem = QmvI8BatchConfig::kWarps * kRing * kStage;
};

// Lane t's code bytes 4t .. 4t + 3 of block B of a staged row of eight blocks. An odd block's
// codes start 4-byte aligned (18 B + 2 = 18 (B - 1) + 20); an even block's two bytes past.
template <int B>
__device__ __forceinline__ uint32_t q4_0_codes(const uint8_t* row, int t) {
  if constexpr (B % 2 == 1) return reinterpret_cast<const uint32_t*>(row + 18 * B + 2)[t];
  const uint32_t* w = reinterpret_cast<const uint32_t*>(row + 18 * B) + t;
  return __byte_perm(w[0], w[1], 0x5432);
}

template <int B>
__device__ __forceinline__ float q4_0_d(const uint8_t* row) {
  return __half2float(*reinterpret_cast<const __half*>(row + 18 * B));
}

// p (QmmParams, for its rows; no routing): packed = the Q4_0 weight [n, k] (k % 256 == 0),
// x = the batch image (QmvI8Batch<kBlocks>), p.m in 1..8 rows; `rows` maps the weight as a
// byte matrix [n, row bytes] in boxes of 16 rows by 144 bytes. Grid: (1, row tiles of 16).
template <class CT>
__global__ void __launch_bounds__(QmvI8BatchConfig::kThreads, QmvI8BatchConfig::kMinBlocks)
    q4_0_i8_batch_kernel(qmlx::QmmParams p, const __grid_constant__ CUtensorMap rows) {
  using I = QmvI8Batch<NibbleOrder::kBlocks>;
  using Sm = Q4_0BatchStage;
  constexpr int NW = I::kWarps;
  __shared__ __align__(128) uint8_t smem[Sm::kSmem];
  __shared__ uint64_t full[NW][Sm::kRing];
  __shared__ float red[NW][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, N = int(p.n), sbs = int(p.k) / 256;

  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, I::kRows, n0, g, un, ra, rb)) return;
  const WarpBoxRing<Sm::kStage, Sm::kRing> ring(smem + warp * Sm::kRing * Sm::kStage, full[warp]);
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0;
  auto issue = [&](int i) {
    if (i < count) ring.issue(i, &rows, Sm::kSuperblock * (warp + NW * i), n0);
  };
  for (int i = 0; i < Sm::kRing - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* xp = static_cast<const uint4*>(p.x) + lane;
  // The table's float4 of x rows 2t and 2t + 1 per block: (s_x, sum) of each.
  const float4* tp = reinterpret_cast<const float4*>(static_cast<const uint4*>(p.x) + I::table_unit(p.k)) + t;

  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // (row a, x row 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1)
  for (int i = 0; i < count; ++i) {
    issue(i + Sm::kRing - 1);
    const uint8_t* st = ring.wait(i);
    const uint8_t *row_a = st + g * Sm::kSuperblock, *row_b = st + (g + 8) * Sm::kSuperblock;
    const int64_t block0 = 8 * int64_t(warp + NW * i);  // the superblock's first block in K
    [&]<int... B>(std::integer_sequence<int, B...>) {
      (
          [&] {
            const int64_t blk = block0 + B;
            const uint4 xf = __ldg(xp + blk * I::kFragUnits);  // part h's runs, then part l's
            const float4 e = __ldg(tp + blk * (I::kRows / 2));
            const uint32_t ca = q4_0_codes<B>(row_a, t), cb = q4_0_codes<B>(row_b, t);
            constexpr uint32_t kLow = 0x0f0f0f0fu;
            const uint32_t a0 = ca & kLow, a1 = cb & kLow, a2 = (ca >> 4) & kLow, a3 = (cb >> 4) & kLow;
            int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
            mma_u8s8(ch, a0, a1, a2, a3, xf.x, xf.y);
            mma_u8s8(cl, a0, a1, a2, a3, xf.z, xf.w);
            const float d[2] = {q4_0_d<B>(row_a), q4_0_d<B>(row_b)};
            const float sx[2] = {e.x, e.z}, off[2] = {-8.f * e.y, -8.f * e.w};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              // |256 c_h + c_l| <= 32 * 15 * (127 * 256 + 128) < 2^24: exact as a float.
              const int v = 256 * ch[q] + cl[q];
              acc[q] = fmaf(d[q >> 1], fmaf(sx[q & 1], float(v), off[q & 1]), acc[q]);
            }
          }(),
          ...);
    }(std::make_integer_sequence<int, 8>{});
    __syncwarp();  // every lane is done with this stage before the next issue refills it
  }
  store_batch_tile<CT>(acc, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, p.out_stride, n0, N, un.rows);
}

}  // namespace mlxn::kernels
