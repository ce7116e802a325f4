#pragma once
// GGUF Q4_0 for the batch integer mat-vec (quant_gguf_i8_batch.cuh): one m16n8k32 mma per
// 32-value block and x part, so the block's d applies to the exact integer sums:
//   row value += d (s_x (256 c_h + c_l) - 8 * sum of x over the block)
// with s_x and the block's sum of x per x row from the image's table.
//
// A block is 18 bytes (d as f16, then 16 code bytes: low nibbles values 0..15, high 16..31), so
// for K % 256 == 0 eight blocks are a 144-byte "superblock" of nine 16-byte units and every row
// is whole units. Lane t takes code bytes 4t .. 4t + 3 of each block: the mma's k 4t.. (low
// nibbles, values 4t..) and 16 + 4t.. (high nibbles). At the stage's 144-byte pitch the 32 lanes'
// words fall in 32 banks.
#include <utility>

#include "cuda/kernels/quant_gguf_i8_batch.cuh"

namespace mlxn::kernels {

struct Q4_0Batch {
  static constexpr int kBytes = 144, kPitch = 144;

  // Lane t's code bytes 4t .. 4t + 3 of block B of a staged row. An odd block's codes start
  // 4-byte aligned (18 B + 2 = 18 (B - 1) + 20); an even block's two bytes past.
  template <int B>
  __device__ static uint32_t codes(const uint8_t* row, int t) {
    return staged_word<B % 2 == 0>(row + 18 * B + 2 + 4 * t);
  }

  template <bool kOdd>
  __device__ static void superblock(const uint8_t* row_a, const uint8_t* row_b, int t, const uint4* xf,
                                    const float4* te, float (&acc)[4]) {
    static_assert(!kOdd, "144-byte superblocks start on a unit");
    [&]<int... B>(std::integer_sequence<int, B...>) {
      (
          [&] {
            const uint4 x = __ldg(xf + B * GgufBatchImage::kFragUnits);    // part h's runs, then part l's
            const float4 e = __ldg(te + B * (GgufBatchImage::kRows / 2));  // (s_x, sum) of x rows 2t, 2t + 1
            const uint32_t ca = codes<B>(row_a, t), cb = codes<B>(row_b, t);
            constexpr uint32_t kLow = 0x0f0f0f0fu;
            const uint32_t a0 = ca & kLow, a1 = cb & kLow, a2 = (ca >> 4) & kLow, a3 = (cb >> 4) & kLow;
            int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
            mma_u8s8(ch, a0, a1, a2, a3, x.x, x.y);
            mma_u8s8(cl, a0, a1, a2, a3, x.z, x.w);
            const float d[2] = {__half2float(*reinterpret_cast<const __half*>(row_a + 18 * B)),
                                __half2float(*reinterpret_cast<const __half*>(row_b + 18 * B))};
            const float sx[2] = {e.x, e.z}, off[2] = {-8.f * e.y, -8.f * e.w};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              // |256 c_h + c_l| <= 32 * 15 * (127 * 256 + 128) < 2^24: exact as a float.
              const int v = 256 * ch[q] + cl[q];
              acc[q] = fmaf(d[q >> 1], fmaf(sx[q & 1], float(v), off[q & 1]), acc[q]);
            }
          }(),
          ...);
    }
    (std::make_integer_sequence<int, 8>{});
  }
};

}  // namespace mlxn::kernels
