#pragma once
// Decode-sized GGUF mat-vec (plain matmul, at most 8 input rows), built for memory-level
// parallelism: a block owns one 16-row tile and its 4 warps split K. Each warp streams its
// quarter through its own ring of shared-memory stages filled with 16-byte cp.async, so the
// K loop has no block barrier (only __syncwarp) and every warp keeps Depth - 1 stages in
// flight while it decodes one. The decode and the tensor-core product are those of
// gguf_matvec_kernel (quant_gguf.cuh): same fragment mapping, same packed decoders. The one
// block barrier is the final sum of the 4 warps' partial products.
#include <algorithm>

#include "cuda/kernels/quant_gguf.cuh"

namespace mlxn::kernels {

inline constexpr int kSplitkWarps = 4;
// Shared-memory budget of one block's rings: small enough for 7-8 blocks per SM, so that a
// [14336, K] matrix (896 tiles) is resident in one wave on 132 SMs.
inline constexpr int kSplitkRingBudget = 28 * 1024;

template <class B>
struct SplitkStage {
  // Blocks per stage: one superblock, or 128-256 values of the 32-value types (4 or 8 units:
  // the lanes of a quad take one unit each per macro step).
  static constexpr int kBlocks = B::kElems == 256 ? 1 : (B::kBytes > 24 ? 4 : 8);
  static constexpr int kUnits = kBlocks * (B::kElems / 32);
  static constexpr int kBytes = kBlocks * B::kBytes;
  // A stage is copied as whole 16-byte chunks from the 16-byte boundary at or before its first
  // byte, so it starts up to 14 bytes into its shared row unless every stage is aligned.
  static constexpr int kSpan = kBytes % 16 == 0 ? kBytes : (kBytes + 14 + 15) / 16 * 16;
  // An odd number of 16-byte chunks per row: the 8 rows of a fragment fall in different banks.
  static constexpr int kPitch = (kSpan / 16) % 2 == 1 ? kSpan : kSpan + 16;
  static constexpr int kStageSmem = 16 * kPitch;
  static constexpr int kDepth = std::max(2, std::min(4, kSplitkRingBudget / (kSplitkWarps * kStageSmem)));
  static constexpr int kWarpSmem = kDepth * kStageSmem;
  static constexpr int kSmem = kSplitkWarps * kWarpSmem;
  // Blocks per SM the registers must allow: 8 (64 registers). q5_k, which decodes two bit
  // fields per quad of both rows, spills at 64 and gets 72 (7 blocks, still 896 tiles in one
  // wave on 132 SMs).
  static constexpr int kMinBlocks = std::is_same_v<B, gguf::BlockQ5_K> ? 7 : 8;
  static_assert(kUnits % 4 == 0, "a stage is whole macro steps");
  static_assert(kWarpSmem >= 16 * 8 * int(sizeof(float)), "the ring holds the warp's partial products");
};

// One block per 16-row tile (grid.x = tiles), 128 threads. Requires 16-byte aligned weight
// rows (p.copy16) of fewer than 2^27 bytes, p.pairs <= 8, no expert routing and a packed
// decoder for B; kXVec: 16-byte aligned input rows.
template <class B, class T, bool kXVec>
__global__ void __launch_bounds__(128, SplitkStage<B>::kMinBlocks) gguf_matvec_splitk_kernel(MatvecParams p) {
  using S = SplitkStage<B>;
  constexpr bool kF16 = std::is_same_v<T, __half>;
  constexpr int kUnitsPerBlock = B::kElems / 32;
  using D = gguf::PairDecoder<B, kF16>;
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  uint8_t* ring = smem + warp * S::kWarpSmem;
  const int n0 = int(blockIdx.x) * 16, rows = min(16, p.n - n0);
  const int kblocks = p.k / B::kElems;
  const int stages = (kblocks + S::kBlocks - 1) / S::kBlocks;
  const int per_warp = (stages + kSplitkWarps - 1) / kSplitkWarps;
  const int s_begin = min(warp * per_warp, stages), s_end = min(s_begin + per_warp, stages);
  const uint8_t* w = p.w + int64_t(n0) * p.w_row_bytes;
  const int row_bytes = int(p.w_row_bytes);  // a tile's 16 rows span < 2^31 bytes (launcher)
  auto slot = [&](int st) { return ring + (st - s_begin) % S::kDepth * S::kStageSmem; };
  auto blocks_in = [&](int st) { return min(S::kBlocks, kblocks - st * S::kBlocks); };

  // Stage st of this warp's rows into its ring slot; one commit group per call, even when
  // there is nothing to copy, so that wait_group counts stages.
  auto issue = [&](int st) {
    if (st < s_end) {
      const int first = st * S::kBytes;
      const int begin = first & ~15;
      const int end = (first + blocks_in(st) * B::kBytes + 15) & ~15;  // <= the row's (aligned) end
      const int chunks = (end - begin) / 16;
      uint8_t* dst = slot(st);
      for (int i = lane; i < rows * chunks; i += 32) {
        const int r = i / chunks, c = i - r * chunks;
        cp_async<16>(dst + r * S::kPitch + 16 * c, w + (r * row_bytes + begin + 16 * c));
      }
    }
    cp_async_commit();
  };

  // Input row of column g of the n8 operand: rows past the batch multiply as zeros.
  const T* xrow = g < p.pairs ? static_cast<const T*>(p.x) + int64_t(g) * p.x_row_stride : nullptr;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int i = 0; i < S::kDepth - 1; ++i) issue(s_begin + i);
  for (int st = s_begin; st < s_end; ++st) {
    issue(st + S::kDepth - 1);
    cp_async_wait<S::kDepth - 1>();  // this lane's chunks of stage st have landed
    __syncwarp();                    // and so have the other lanes'
    const uint8_t* buf = slot(st) + (st * S::kBytes & 15);
    const int units = blocks_in(st) * kUnitsPerBlock;
    const int kst = st * S::kBlocks * B::kElems;
#pragma unroll 1
    for (int ms = 0; ms < S::kUnits / 4; ++ms) {
      // A lane past the end of a partial stage decodes a unit that is there (finite values)
      // and multiplies it by zero inputs.
      const int u = 4 * ms + q, ud = u < units ? u : 0;
      // Unit ud of weight rows g and g + 8, decoded one quad per mma step.
      const uint8_t* ra = buf + (ud / kUnitsPerBlock) * B::kBytes + g * S::kPitch;
      const uint8_t* rb = ra + 8 * S::kPitch;
      const int sub = ud % kUnitsPerBlock;
      const auto sa = D::setup(ra, sub), sb = D::setup(rb, sub);
      const bool live = u < units && xrow;
#pragma unroll
      for (int h = 0; h < 4; ++h) {  // 8 inputs per two steps, loaded as they are needed
        uint32_t x[4] = {0u, 0u, 0u, 0u};
        if (live) load_x8<T, kF16, kXVec>(xrow + kst + 32 * u + 8 * h, x);
#pragma unroll
        for (int t = 0; t < 2; ++t) {
          uint32_t a[4];  // fragment order: (row g, k lo), (row g + 8, k lo), (g, k hi), (g + 8, k hi)
          D::quad(sa, ra, sub, 2 * h + t, a[0], a[2]);
          D::quad(sb, rb, sub, 2 * h + t, a[1], a[3]);
          mma_16816<mma_operand_t<kF16>>(acc, a, x[2 * t], x[2 * t + 1]);
        }
      }
    }
    __syncwarp();  // every lane is done with this slot before the next issue refills it
  }
  cp_async_wait<0>();  // only empty groups remain; nothing lands in the ring from here on

  // Each warp's partial products [16 rows][8 columns] go to the start of its own ring.
  float* part = reinterpret_cast<float*>(ring);
  part[g * 8 + 2 * q] = acc[0];
  part[g * 8 + 2 * q + 1] = acc[1];
  part[(g + 8) * 8 + 2 * q] = acc[2];
  part[(g + 8) * 8 + 2 * q + 1] = acc[3];
  __syncthreads();
  const int r = threadIdx.x % 16, c = threadIdx.x / 16;  // 128 threads: one output each
  if (r < rows && c < p.pairs) {
    float v = 0.f;
#pragma unroll
    for (int wi = 0; wi < kSplitkWarps; ++wi) v += reinterpret_cast<const float*>(smem + wi * S::kWarpSmem)[r * 8 + c];
    static_cast<T*>(p.out)[int64_t(c) * p.out_row_stride + n0 + r] = from_f32<T>(v);
  }
}

}  // namespace mlxn::kernels
