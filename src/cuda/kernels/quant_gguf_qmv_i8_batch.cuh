#pragma once
// GGUF Q4_K mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small batch),
// on the batch image in kHalves order (qmv_i8_batch.cuh says why and how). A superblock row is
// 144 bytes: d and dmin (f16), 12 bytes of the 6-bit scales and mins of its 8 sub-blocks of 32,
// then 4 chunks of 32 code bytes (chunk c: low nibbles sub-block 2c, high nibbles 2c + 1). A
// 128-value step is half a superblock, two chunks (two x groups of 64); lane t of a quad takes
// bytes 8t .. 8t + 7 of each chunk, so the low-nibble mma covers sub-block 2c and the
// high-nibble one 2c + 1. Each has its own accumulators, and the sub-blocks' 6-bit scales
// apply to the exact integer sums:
//   v = sc_lo (256 c_h + c_l)_lo + sc_hi (256 c_h + c_l)_hi        (|v| < 2^31)
//   row value += d s_x v - dmin (m_lo S_lo + m_hi S_hi)
// with S the x row's sums over the chunk's halves (the image's table), per chunk and x row.
//
// Block: 16 rows of W, 4 warps splitting K by superblocks, each streaming its steps through
// its own shared-memory ring (cp.async), as the MLX batch kernel: a superblock's first step
// brings its header (16 bytes) and 64 code bytes per row, the second 64 code bytes.
#include "cuda/kernels/qmv_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_qmv_i8.cuh"  // kquant_scales, kquant_mins
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

// Per warp a ring of kRing stages, each one step's bytes (80 or 64) of the tile's 16 rows at a
// 96-byte pitch (the 8 rows a warp load reads fall in disjoint banks).
struct KQuantBatchSmem {
  static constexpr int kPitch = 96, kStage = 16 * kPitch, kRing = 3;
  static constexpr int kBytes = QmvI8BatchConfig::kWarps * kRing * kStage;
};

// A superblock row's scales and mins as bytes (kquant_scales, kquant_mins: sub-block s is byte
// s % 4 of word s / 4) and its d and dmin, from its 16-byte header h.
struct KQuantSubScales {
  uint2 sc, m;
  float d, dmin;
  KQuantSubScales() = default;
  __device__ explicit KQuantSubScales(const uint4& h) : sc(kquant_scales(h.y, h.w)), m(kquant_mins(h.z, h.w)) {
    const float2 dd = __half22float2(*reinterpret_cast<const __half2*>(&h.x));
    d = dd.x;
    dmin = dd.y;
  }
  // Sub-block s's scale, and its min as a float.
  __device__ int scale(int s) const { return int(__byte_perm(s < 4 ? sc.x : sc.y, 0, 0x4440 | (s & 3))); }
  __device__ float min(int s) const { return float(__byte_perm(s < 4 ? m.x : m.y, 0, 0x4440 | (s & 3))); }
};

// 72 registers: 7 blocks per SM hold the 896 row tiles of N = 14336 in one wave on 132 SMs
// (at 5 blocks, 96 registers with the next headers held in registers, two waves: 21 us).
inline constexpr int kKQuantBatchMinBlocks = 7;

// p (QmmParams, for its rows; no routing): packed = the Q4_K weight [n, k] (16-byte aligned),
// x = the batch image (QmvI8Batch<kHalves>), p.m in 1..8 rows. Grid: (1, row tiles of 16).
template <class CT>
__global__ void __launch_bounds__(QmvI8BatchConfig::kThreads, kKQuantBatchMinBlocks)
    kquant_i8_batch_kernel(qmlx::QmmParams p) {
  using I = QmvI8Batch<NibbleOrder::kHalves>;
  using Sm = KQuantBatchSmem;
  constexpr int NW = I::kWarps, S = Sm::kRing, kUnits = 9;  // 16-byte units of a superblock row
  __shared__ __align__(16) uint8_t smem[Sm::kBytes];
  __shared__ float red[NW][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, N = int(p.n), K = int(p.k), sbs = K / 256;
  uint8_t* ring = smem + warp * S * Sm::kStage;

  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, I::kRows, n0, g, un, ra, rb)) return;
  // Row a's superblocks; row b's are w_b units on. This warp's superblocks: warp, warp + NW, ...
  const uint4* wa = reinterpret_cast<const uint4*>(p.packed) + ra * (int64_t(sbs) * kUnits) + warp * kUnits;
  const int w_b = rb * sbs * kUnits;
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0, steps = 2 * count;
  // The ring's copies of the warp's step i (superblock i / 2, half i % 2): units 0..4 of the
  // superblock row (header, codes) or 5..8 (codes); lane (g, t) moves unit t of the half (and
  // lane 0 of a quad the fifth) of rows a and b. Every lane later reads only its own rows'
  // bytes, which its quad copied (so __syncwarp per stage, no block barrier).
  auto issue = [&](int i) {
    if (i < steps) {
      const int h = i & 1;
      const uint4* src = wa + (i >> 1) * NW * kUnits + 5 * h + t;
      uint8_t* st = ring + (i % S) * Sm::kStage + 16 * t;
      cp_async<16>(st + g * Sm::kPitch, src);
      cp_async<16>(st + (g + 8) * Sm::kPitch, src + w_b);
      if (h == 0 && t == 0) {
        cp_async<16>(st + g * Sm::kPitch + 64, src + 4);
        cp_async<16>(st + (g + 8) * Sm::kPitch + 64, src + 4 + w_b);
      }
    }
    cp_async_commit();  // one group per step, even empty, so that waits count steps
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* xp = static_cast<const uint4*>(p.x) + lane;
  // The table's float4s of x rows 2t and 2t + 1.
  const float4* tp = reinterpret_cast<const float4*>(static_cast<const uint4*>(p.x) + I::table_unit(K)) + 2 * t;

  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // (row a, x row 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1)
  for (int j = 0; j < count; ++j) {
    KQuantSubScales sa, sb;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = 2 * j + h, step = 2 * (warp + NW * j) + h;
      issue(i + S - 1);
      cp_async_wait<S - 1>();  // this lane's copies of step i have landed
      __syncwarp();            // and so have its quad's
      const uint8_t* st = ring + (i % S) * Sm::kStage;
      if (h == 0) {
        sa = KQuantSubScales(*reinterpret_cast<const uint4*>(st + g * Sm::kPitch));
        sb = KQuantSubScales(*reinterpret_cast<const uint4*>(st + (g + 8) * Sm::kPitch));
      }
      const uint8_t* codes = st + (h == 0 ? 16 : 0);
#pragma unroll
      for (int G = 0; G < 2; ++G) {
        constexpr uint32_t kLow = 0x0f0f0f0fu;
        const int c = 2 * h + G;  // the superblock's chunk: sub-blocks 2c (low) and 2c + 1 (high)
        const uint2 wa2 = *reinterpret_cast<const uint2*>(codes + g * Sm::kPitch + 32 * G + 8 * t);
        const uint2 wb2 = *reinterpret_cast<const uint2*>(codes + (g + 8) * Sm::kPitch + 32 * G + 8 * t);
        const uint4* xf = xp + int64_t(step) * I::kStepUnits + 2 * G * I::kFragUnits;
        const uint4 xh = __ldg(xf), xl = __ldg(xf + I::kFragUnits);
        const float4* te = tp + (int64_t(step) * 2 + G) * I::kRows;
        const float4 e[2] = {__ldg(te), __ldg(te + 1)};
        // Words x and y are k slots 4t and 16 + 4t; the high nibbles shifted down.
        const uint32_t a0 = wa2.x & kLow, a1 = wb2.x & kLow, a2 = wa2.y & kLow, a3 = wb2.y & kLow;
        const uint32_t q0 = (wa2.x >> 4) & kLow, q1 = (wb2.x >> 4) & kLow;
        const uint32_t q2 = (wa2.y >> 4) & kLow, q3 = (wb2.y >> 4) & kLow;
        int lo_h[4] = {0, 0, 0, 0}, lo_l[4] = {0, 0, 0, 0}, hi_h[4] = {0, 0, 0, 0}, hi_l[4] = {0, 0, 0, 0};
        mma_u8s8(lo_h, a0, a1, a2, a3, xh.x, xh.y);
        mma_u8s8(lo_l, a0, a1, a2, a3, xl.x, xl.y);
        mma_u8s8(hi_h, q0, q1, q2, q3, xh.z, xh.w);
        mma_u8s8(hi_l, q0, q1, q2, q3, xl.z, xl.w);
        const int sc[2][2] = {{sa.scale(2 * c), sa.scale(2 * c + 1)}, {sb.scale(2 * c), sb.scale(2 * c + 1)}};
        // dmin m of both sub-blocks, both rows (d and dmin applied per chunk: per-superblock sums
        // would hold 8 registers more, past the 72 of 7 blocks per SM, and spill).
        const float dm[2][2] = {{sa.dmin * sa.min(2 * c), sa.dmin * sa.min(2 * c + 1)},
                                {sb.dmin * sb.min(2 * c), sb.dmin * sb.min(2 * c + 1)}};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int row = q >> 1, xr = q & 1;
          // |256 c_h + c_l| < 2^24 per class (32 codes < 16, parts <= 2^7), times sc < 64.
          const int v = sc[row][0] * (256 * lo_h[q] + lo_l[q]) + sc[row][1] * (256 * hi_h[q] + hi_l[q]);
          const float d = row ? sb.d : sa.d;
          acc[q] = fmaf(d * e[xr].x, float(v), acc[q]);
          acc[q] = fmaf(-dm[row][0], e[xr].y, fmaf(-dm[row][1], e[xr].z, acc[q]));
        }
      }
      __syncwarp();  // every lane is done with this slot before the next issue refills it
    }
  }
  cp_async_wait<0>();
  store_batch_tile<CT>(acc, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, p.out_stride, n0, N, un.rows);
}

}  // namespace mlxn::kernels
