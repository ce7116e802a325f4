#pragma once
// GGUF Q6_K mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small batch),
// for rows of whole 16-byte units (K % 2048 == 0). The mma's 8 columns are the 8 rows of x, so
// nothing separates values of different scales inside an mma: each covers one 16-value run of
// K, the span of one Q6_K scale (mma.m16n8k16, lane t taking values 4t .. 4t + 3 of the run).
// x's batch image in kBlocks order holds exactly those runs (qmv_i8_batch.cuh: per 32 values,
// lane t's values 4t .. of the first run and of the second), with s_x per 32 values. Codes are
// 4 (q - 32) as int8 (q6k_codes), so the s8 x s8 products need no sum of x:
//   row value += d * sum over runs j of scales[j] * (s_x / 4) * (256 c_h + c_l).
//
// Value 128 h + 32 c + 16 r + 4 t + i of a superblock (half h, class c, run r of the class) has
// its low bits in ql byte 64 h + 32 (c & 1) + 16 r + 4 t + i (nibble c >> 1) and its high bits
// in qh byte 32 h + 16 r + 4 t + i; so per half and run three words of each row give the lane
// its code words of all four classes.
//
// Block: 16 rows, 4 warps splitting K by superblocks (warp w: w, w + 4, ...), each with a ring
// of stages holding its superblock of the tile's 16 rows: one box of the weight's tensor map
// from the 16-byte unit where the superblock starts (a box's first byte must be 16-byte
// aligned: an unaligned start faults). Superblock sb starts 210 sb % 16 = 2 sb % 16 bytes into
// its unit, so warp w's are at 2 w and 2 w + 8 in turn, constants of a loop instantiated per
// warp (as in the single-row kernel); at odd offsets / 2 (warps 1 and 3) a lane's word is two
// words' halves.
#include <cuda.h>

#include <utility>

#include "cuda/kernels/bulk_copy.cuh"
#include "cuda/kernels/qmv_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_q6_k_i8.cuh"  // Q6KStage, q6k_codes
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

// Scale byte b of a word whose bytes had their top bit flipped (s + 128 for the int8 s), as a
// float: 2^23 + 128 + s through the float's bit pattern, less 2^23 + 128 (two full-rate
// instructions, where converting an int8 takes a quarter-rate one).
template <int B>
__device__ __forceinline__ float q6k_batch_scale(uint32_t flipped) {
  return __uint_as_float(__byte_perm(flipped, 0x4b000000u, 0x7650 | B)) - 8388736.f;
}

// The word at byte `at` (a multiple of 4) of a superblock staged O bytes into its row.
template <int O>
__device__ __forceinline__ uint32_t q6k_stage_word(const uint8_t* row, int at) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(row + (O & ~3) + at);
  if constexpr (O % 4 == 0) return w[0];
  return __byte_perm(w[0], w[1], 0x5432);
}

// p (QmmParams, for its rows; no routing): packed = the Q6_K weight [n, k] (k % 2048 == 0),
// x = the batch image (QmvI8Batch<kBlocks>), p.m in 1..8 rows; `rows` maps the weight as a
// byte matrix [n, row bytes] in boxes of 16 rows by Q6KStage::kPitch bytes. Grid: (1, row
// tiles of 16).
template <class CT>
__global__ void __launch_bounds__(QmvI8BatchConfig::kThreads, QmvI8BatchConfig::kMinBlocks)
    q6_k_i8_batch_kernel(qmlx::QmmParams p, const __grid_constant__ CUtensorMap rows) {
  using I = QmvI8Batch<NibbleOrder::kBlocks>;
  using Sm = Q6KStage;
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
    if (i < count) ring.issue(i, &rows, (Sm::kBytes * (warp + NW * i)) & ~15, n0);
  };
  for (int i = 0; i < Sm::kRing - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* xp = static_cast<const uint4*>(p.x) + lane;
  // The table's float4 of x rows 2t and 2t + 1 per 32 values: (s_x, sum) of each.
  const float4* tp = reinterpret_cast<const float4*>(static_cast<const uint4*>(p.x) + I::table_unit(p.k)) + t;

  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // (row a, x row 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1)
  // Superblock i of this warp, O bytes into its first unit.
  auto superblock = [&]<int O>(int i, std::integral_constant<int, O>) {
    issue(i + Sm::kRing - 1);
    const uint8_t* st = ring.wait(i);
    const uint8_t *row_a = st + g * Sm::kPitch, *row_b = st + (g + 8) * Sm::kPitch;
    constexpr uint32_t kFlip = 0x80808080u;
    const uint4 sa4 = q6k_piece(row_a, 192, std::integral_constant<int, O>{});
    const uint4 sb4 = q6k_piece(row_b, 192, std::integral_constant<int, O>{});
    const uint32_t sa[4] = {sa4.x ^ kFlip, sa4.y ^ kFlip, sa4.z ^ kFlip, sa4.w ^ kFlip};
    const uint32_t sb[4] = {sb4.x ^ kFlip, sb4.y ^ kFlip, sb4.z ^ kFlip, sb4.w ^ kFlip};
    const int64_t block0 = 8 * int64_t(warp + NW * i);  // the superblock's first 32 values in K
    float sv[4] = {0.f, 0.f, 0.f, 0.f};                  // before d
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Per run r: ql at 64 h + 16 r (classes 0, 2), 32 bytes on (1, 3), qh at 128 + 32 h + 16 r.
      uint32_t l1a[2], l2a[2], hba[2], l1b[2], l2b[2], hbb[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int l1 = 64 * h + 16 * r + 4 * t, l2 = l1 + 32, hb = 128 + 32 * h + 16 * r + 4 * t;
        l1a[r] = q6k_stage_word<O>(row_a, l1), l2a[r] = q6k_stage_word<O>(row_a, l2);
        hba[r] = q6k_stage_word<O>(row_a, hb);
        l1b[r] = q6k_stage_word<O>(row_b, l1), l2b[r] = q6k_stage_word<O>(row_b, l2);
        hbb[r] = q6k_stage_word<O>(row_b, hb);
      }
      [&]<int... C>(std::integer_sequence<int, C...>) {
        (
            [&] {
              const int64_t blk = block0 + 4 * h + C;  // class C of half h: 32 values, two runs
              const uint4 xf = __ldg(xp + blk * I::kFragUnits);
              const float4 e = __ldg(tp + blk * (I::kRows / 2));
              const float sx[2] = {0.25f * e.x, 0.25f * e.z};  // the codes are 4 (q - 32)
#pragma unroll
              for (int r = 0; r < 2; ++r) {
                const uint32_t ca = q6k_codes<C>(l1a[r], l2a[r], hba[r]);
                const uint32_t cb = q6k_codes<C>(l1b[r], l2b[r], hbb[r]);
                int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
                mma_s8s8_k16(ch, ca, cb, r ? xf.y : xf.x);
                mma_s8s8_k16(cl, ca, cb, r ? xf.w : xf.z);
                // Run j = 8 h + 2 C + r: scale byte j, word j / 4 = 2 h + C / 2, byte 2 (C % 2) + r.
                constexpr int kByte = 2 * (C % 2);
                const int word = 2 * h + C / 2;
                const float f[2] = {r ? q6k_batch_scale<kByte + 1>(sa[word]) : q6k_batch_scale<kByte>(sa[word]),
                                    r ? q6k_batch_scale<kByte + 1>(sb[word]) : q6k_batch_scale<kByte>(sb[word])};
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                  // |256 c_h + c_l| <= 16 * 128 * (127 * 256 + 128) < 2^27: off by at most 2^-24 as a float.
                  sv[q] = fmaf(f[q >> 1] * sx[q & 1], float(256 * ch[q] + cl[q]), sv[q]);
                }
              }
            }(),
            ...);
      }(std::make_integer_sequence<int, 4>{});
    }
    const float d[2] = {__half2float(*reinterpret_cast<const __half*>(row_a + O + 208)),
                        __half2float(*reinterpret_cast<const __half*>(row_b + O + 208))};
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = fmaf(d[q >> 1], sv[q], acc[q]);
    __syncwarp();  // every lane is done with this stage before the next issue refills it
  };
  auto run = [&]<int O>(std::integral_constant<int, O> o) {
    for (int i = 0; i < count; i += 2) {
      superblock(i, o);
      if (i + 1 < count) superblock(i + 1, std::integral_constant<int, (O + 8) % 16>{});
    }
  };
  switch (warp) {
    case 0:
      run(std::integral_constant<int, 0>{});
      break;
    case 1:
      run(std::integral_constant<int, 2>{});
      break;
    case 2:
      run(std::integral_constant<int, 4>{});
      break;
    default:
      run(std::integral_constant<int, 6>{});
      break;
  }
  store_batch_tile<CT>(acc, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, p.out_stride, n0, N, un.rows);
}

}  // namespace mlxn::kernels
