#pragma once
// GGUF mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small batch): the
// kernel shared by the Q4_0, Q4_K, Q5_K and Q6_K batch formats (quant_gguf_q4_0_i8_batch.cuh,
// quant_gguf_kquant_i8_batch.cuh, quant_gguf_q6_k_i8_batch.cuh), which supply only the
// products of one staged superblock.
//
// x is the batch image in kBlocks order (qmv_i8_batch.cuh): the mma's 8 columns are the 8 rows
// of x, and per 16-value run of K lane t holds values 4t .. 4t + 3 of x row g, so that one
// m16n8k32 mma covers 32 values (a Q4_0 block, a K-quant sub-block) and one m16n8k16 mma 16 (a
// Q6_K scale's run): each scale applies to the exact integer sums of its own values.
//
// Block: 16 rows of W, 4 warps splitting K by superblocks of 256 values (warp w: w, w + 4, ...).
// Each warp streams its superblocks of the tile's 16 rows through its own ring of shared-memory
// stages, one box of the weight's tensor map each (WarpBoxRing: one copy by the copy engine,
// no per-lane copy instructions, whole rows of superblocks, so no partial 32-byte sectors
// inside a warp's request). A box starts at the 16-byte unit where its superblock starts (an
// unaligned start faults). Rings 2 deep: a superblock in flight per warp while one is computed
// is enough to stream, and the shared memory left to L1 holds x's image, which every block
// reads whole (3 deep: L1 hit rate 69%, 18.5 us for Q4_0 at M = 8; 2 deep: 85%, 16.3 us;
// bench/NOTES.md run 234).
//
// A format F provides:
//   kBytes: a superblock row's bytes; kPitch: the box width (kBytes rounded up to cover any
//   start within a unit);
//   superblock<kOdd>(row_a, row_b, t, xf, te, acc): the products of one staged superblock for
//   lane (g, t), rows a = g and b = g + 8 staged from the 4-byte word at row_a / row_b (kOdd:
//   the superblock starts 2 bytes into it); xf, te: the lane's fragment unit and table entry of
//   the superblock's first 32 values (kFragUnits and kRows / 2 apart per 32 values); acc: (row a,
//   x row 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1).
#include <cuda.h>

#include <type_traits>
#include <utility>

#include "cuda/kernels/bulk_copy.cuh"
#include "cuda/kernels/qmv_i8_batch.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

using GgufBatchImage = QmvI8Batch<NibbleOrder::kBlocks>;

// Byte B of w as a float through 2^23's bit pattern (2^23 + byte), less `bias`: two
// full-rate instructions where converting an integer takes a quarter-rate one. bias 2^23 gives
// the unsigned byte; with w's top bits flipped, 2^23 + 128 gives the int8.
template <int B>
__device__ __forceinline__ float byte_as_float(uint32_t w, float bias) {
  return __uint_as_float(__byte_perm(w, 0x4b000000u, 0x7650 | B)) - bias;
}

// The 32-bit word at staged byte p: 4-byte aligned, or (kHalf) 2 bytes past a word, as in
// rows of 18-byte Q4_0 blocks or 210-byte Q6_K superblocks: then two words' halves.
template <bool kHalf>
__device__ __forceinline__ uint32_t staged_word(const uint8_t* p) {
  if constexpr (!kHalf) return *reinterpret_cast<const uint32_t*>(p);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(p - 2);
  return __byte_perm(w[0], w[1], 0x5432);
}

template <class F>
struct GgufBatchStage {
  static constexpr int kStage = 16 * F::kPitch, kRing = 2;
  static constexpr int kSmem = GgufBatchImage::kWarps * kRing * kStage;
  // 7 blocks per SM hold the 896 row tiles of N = 14336 in one wave on 132 SMs, and their
  // stages must leave L1 room for x's image (the reason for two-deep rings).
  static_assert(GgufBatchImage::kMinBlocks * kSmem <= 200 * 1024, "7 blocks' stages leave L1 its share");
};

// p (QmmParams, for its rows; no routing): packed = the weight [n, k] (k % 256 == 0, rows of
// whole 16-byte units), x = the batch image, p.m in 1..8 rows; `rows` maps the weight as a byte
// matrix [n, row bytes] in boxes of 16 rows by F::kPitch bytes. Grid: (1, row tiles of 16).
template <class F, class CT>
__global__ void __launch_bounds__(GgufBatchImage::kThreads, GgufBatchImage::kMinBlocks)
    gguf_i8_batch_kernel(qmlx::QmmParams p, const __grid_constant__ CUtensorMap rows) {
  using I = GgufBatchImage;
  using Sm = GgufBatchStage<F>;
  constexpr int NW = I::kWarps;
  static_assert(NW % 2 == 0, "a warp's superblocks share the parity of their index");
  __shared__ __align__(128) uint8_t smem[Sm::kSmem];
  __shared__ uint64_t full[NW][Sm::kRing];
  __shared__ float red[NW][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, sbs = int(p.k) / 256;

  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, I::kRows, n0, g, un, ra, rb)) return;
  const WarpBoxRing<Sm::kStage, Sm::kRing> ring(smem + warp * Sm::kRing * Sm::kStage, full[warp]);
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0;
  auto first_byte = [&](int i) { return F::kBytes * (warp + NW * i); };  // superblock i's, in its row
  auto issue = [&](int i) {
    if (i < count) ring.issue(i, &rows, first_byte(i) & ~15, n0);
  };
  for (int i = 0; i < Sm::kRing - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* xp = static_cast<const uint4*>(p.x) + lane;
  const float4* tp = reinterpret_cast<const float4*>(static_cast<const uint4*>(p.x) + I::table_unit(p.k)) + t;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  auto run = [&]<bool kOdd>(std::bool_constant<kOdd>) {
    for (int i = 0; i < count; ++i) {
      issue(i + Sm::kRing - 1);
      const uint8_t* st = ring.wait(i);
      const int word = first_byte(i) & 12;  // the word of its unit where the superblock starts
      const int64_t block0 = 8 * int64_t(warp + NW * i);
      F::template superblock<kOdd>(st + g * F::kPitch + word, st + (g + 8) * F::kPitch + word, t,
                                   xp + block0 * I::kFragUnits, tp + block0 * (I::kRows / 2), acc);
      __syncwarp();  // every lane is done with this stage before the next issue refills it
    }
  };
  // A superblock starts 2 bytes into a word when kBytes * sb % 4 == 2: odd sb of an odd kBytes
  // / 2 (Q6_K's 210), so odd warps only; one instantiation per case keeps the code small (the
  // per-offset instantiations of an earlier form missed the instruction cache, run 234).
  if constexpr (F::kBytes % 4 == 0) {
    run(std::false_type{});
  } else if (warp % 2 == 1) {
    run(std::true_type{});
  } else {
    run(std::false_type{});
  }
  store_batch_tile<CT>(acc, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, p.out_stride, n0, int(p.n),
                       un.rows);
}

}  // namespace mlxn::kernels
