#pragma once
// GGUF Q4_K mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small batch),
// on the batch image with x groups of 32 (qmv_i8_batch.cuh says why and how).
//
// A Q4_K superblock (quant_gguf_qmv_i8.cuh) is a 16-byte header (d, dmin, the 6-bit scales
// and mins of its 8 sub-blocks of 32) and 4 chunks of 32 code bytes, a chunk's low nibbles
// sub-block 2c and its high nibbles sub-block 2c + 1. A 128-value step is two chunks; lane t
// takes bytes 8t .. 8t + 7 of each, and the mma for (chunk, class, part) covers one sub-block,
// whose x group of 32 is its own: 8 mma per step for all 8 rows of x, each class with its own
// accumulators, and per (sub-block, row) the float pair (d sc, dmin m):
//   row value += d sc * s_x * (256 c_h + c_l) - dmin m * sum of x   (per sub-block, x row).
//
// Block: 16 rows, 4 warps splitting K by superblocks (warp w: w, w + 4, ...), each with a
// 2-superblock shared-memory ring (cp.async; a lane copies 16-byte units of its rows g and
// g + 8, its quad's 4 lanes 64 contiguous bytes per copy). Once a superblock has landed the
// warp decodes its 16 rows' 8 (d sc, dmin m) pairs into shared memory, one row half per lane,
// instead of every lane decoding the 16 it uses.
#include "cuda/kernels/qmv_i8_batch.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

struct KQuantBatchSmem {
  // 144-byte superblock rows at a 160-byte pitch: the rows a half-warp's 8-byte loads read
  // (g = 0..3, or 4..7) fall in disjoint banks.
  static constexpr int kPitch = 160, kStage = 16 * kPitch, kRing = 2;
  // Decoded (d sc, dmin m) per row and sub-block, rows 9 float2 apart (bank-disjoint pairs).
  static constexpr int kScalePitch = 9, kScales = 16 * kScalePitch * 8;
  static constexpr int kWarp = kRing * kStage + kScales;
  static constexpr int kBytes = QmvI8BatchConfig::kWarps * kWarp;
};

// p (QmmParams, quant_mlx_qmv.cuh, for its rows; scales and biases unused): packed = the
// weight [n, k] (k % 256 == 0, 16-byte aligned), x = the batch image (NibbleOrder::kHalves),
// m in 1..8 rows, no routing. Grid: (1, row tiles of 16); dynamic shared memory
// KQuantBatchSmem::kBytes. A row tile spans fewer than 2^31 16-byte units (launcher).
template <class CT>
__global__ void __launch_bounds__(QmvI8BatchConfig::kThreads, QmvI8BatchConfig::kMinBlocks)
    kquant_i8_batch_kernel(qmlx::QmmParams p) {
  using I = QmvI8Batch<32>;
  using Sm = KQuantBatchSmem;
  constexpr int NW = I::kWarps, S = Sm::kRing, kUnits = 9;  // 16-byte units per superblock
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float red[NW][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, n = int(p.n), k = int(p.k), sbs = k / 256;
  uint8_t* ring = smem + warp * Sm::kWarp;
  float2* scales = reinterpret_cast<float2*>(ring + S * Sm::kStage);

  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, I::kRows, n0, g, un, ra, rb)) return;
  const int64_t row_units = int64_t(sbs) * kUnits;
  const uint4* wa = reinterpret_cast<const uint4*>(p.packed) + ra * row_units + warp * kUnits + t;
  const int w_b = int(rb * row_units);
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0;
  auto issue = [&](int i) {
    if (i < count) {
      uint8_t* st = ring + (i % S) * Sm::kStage + 16 * t;
#pragma unroll
      for (int u = 0; u < kUnits; u += 4) {
        if (u + t < kUnits) {
          cp_async<16>(st + g * Sm::kPitch + 16 * u, wa + u);
          cp_async<16>(st + (g + 8) * Sm::kPitch + 16 * u, wa + w_b + u);
        }
      }
      wa += NW * kUnits;
    }
    cp_async_commit();  // one group per superblock, even empty, so that waits count them
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  // Step s's fragments and table entries (x rows 2t, 2t + 1 as one float4 per sub-block).
  const uint4* xp = static_cast<const uint4*>(p.x) + 2 * warp * I::kStepUnits + lane;
  const float4* tp = reinterpret_cast<const float4*>(static_cast<const uint4*>(p.x) + I::table_unit(k)) +
                     2 * warp * I::kGroupsPerStep * I::kRows / 2 + t;
  const int dr = lane / 2, dj = (lane % 2) * 4;  // the row and sub-blocks this lane decodes

  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // (row a, x row 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1)
  for (int i = 0; i < count; ++i) {
    issue(i + S - 1);
    cp_async_wait<S - 1>();
    __syncwarp();
    const uint8_t* st = ring + (i % S) * Sm::kStage;
    {
      // Header words: x = d | dmin << 16, then the 12 scale bytes q: sub-block j < 4:
      // sc = q[j] & 63, m = q[j + 4] & 63; j >= 4: sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4,
      // m = (q[j + 4] >> 4) | (q[j] >> 6) << 4.
      const uint4 h = *reinterpret_cast<const uint4*>(st + dr * Sm::kPitch);
      const float2 dd = __half22float2(*reinterpret_cast<const __half2*>(&h.x));
      const uint32_t q[3] = {h.y, h.z, h.w};
      auto qb = [&](int j) { return int((q[j / 4] >> (8 * (j % 4))) & 0xffu); };
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        const int j = dj + jj;
        const int sc = j < 4 ? qb(j) & 63 : (qb(j + 4) & 15) | (qb(j - 4) >> 6) << 4;
        const int m = j < 4 ? qb(j + 4) & 63 : (qb(j + 4) >> 4) | (qb(j) >> 6) << 4;
        scales[dr * Sm::kScalePitch + j] = make_float2(dd.x * float(sc), dd.y * float(m));
      }
    }
    __syncwarp();
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the superblock's two steps
#pragma unroll
      for (int G = 0; G < 2; ++G) {  // chunk c = 2 h + G
        constexpr uint32_t kLow = 0x0f0f0f0fu;
        const int c = 2 * h + G;
        const uint2 wa2 = *reinterpret_cast<const uint2*>(st + g * Sm::kPitch + 16 + 32 * c + 8 * t);
        const uint2 wb2 = *reinterpret_cast<const uint2*>(st + (g + 8) * Sm::kPitch + 16 + 32 * c + 8 * t);
        const uint4 xh = __ldg(xp + (h * 4 + 2 * G) * I::kFragUnits);
        const uint4 xl = __ldg(xp + (h * 4 + 2 * G + 1) * I::kFragUnits);
#pragma unroll
        for (int cls = 0; cls < 2; ++cls) {  // sub-block 2 c + cls
          const int sh = 4 * cls;
          const uint32_t a0 = (wa2.x >> sh) & kLow, a1 = (wb2.x >> sh) & kLow;
          const uint32_t a2 = (wa2.y >> sh) & kLow, a3 = (wb2.y >> sh) & kLow;
          int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
          mma_u8s8(ch, a0, a1, a2, a3, cls ? xh.z : xh.x, cls ? xh.w : xh.y);
          mma_u8s8(cl, a0, a1, a2, a3, cls ? xl.z : xl.x, cls ? xl.w : xl.y);
          const float4 e = __ldg(tp + ((h * 2 + G) * 2 + cls) * I::kRows / 2);
          const float2 sa = scales[g * Sm::kScalePitch + 2 * c + cls];
          const float2 sb = scales[(g + 8) * Sm::kScalePitch + 2 * c + cls];
          // |256 c_h + c_l| < 2^24 (32 values x 15 x 2^15): exact as a float.
          auto v = [&](int q) { return float(256 * ch[q] + cl[q]); };
          acc[0] += sa.x * e.x * v(0) - sa.y * e.y;
          acc[1] += sa.x * e.z * v(1) - sa.y * e.w;
          acc[2] += sb.x * e.x * v(2) - sb.y * e.y;
          acc[3] += sb.x * e.z * v(3) - sb.y * e.w;
        }
      }
    }
    __syncwarp();  // every lane is done with this slot and the scales before they are refilled
    xp += 2 * NW * I::kStepUnits;
    tp += 2 * NW * I::kGroupsPerStep * I::kRows / 2;
  }
  cp_async_wait<0>();
  store_batch_tile<CT>(acc, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, p.out_stride, n0, n, un.rows);
}

}  // namespace mlxn::kernels
