#pragma once
// GGUF Q6_K for the batch integer mat-vec (quant_gguf_i8_batch.cuh), rows of whole 16-byte units
// (K % 2048 == 0, so that the weight has a tensor map). One m16n8k16 mma per 16-value run of K
// and x part: a run is the span of one scale. Codes are 4 (q - 32) as int8 (q6k_codes), so the
// s8 x s8 products need no sum of x:
//   row value += d * sum over blocks of 32 values of (s_x / 4) * sum over its two runs j of
//                scales[j] * (256 c_h + c_l).
//
// Value 128 h + 32 c + 16 r + 4 t + i of a superblock (half h, class c, run r of the class) has
// its low bits in ql byte 64 h + 32 (c & 1) + 16 r + 4 t + i (nibble c >> 1) and its high bits
// in qh byte 32 h + 16 r + 4 t + i; so per half and run three words of each row give the lane
// its code words of all four classes. A superblock is 210 bytes: in rows of whole units, odd
// superblocks start 2 bytes into a word (kOdd), and each word is two words' halves.
#include "cuda/kernels/quant_gguf_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_q6_k_i8.cuh"  // q6k_codes

namespace mlxn::kernels {

struct Q6_KBatch {
  // Boxes of 224 bytes cover a superblock at any even offset within its first unit.
  static constexpr int kBytes = 210, kPitch = 224;

  // The word at byte `at` (a multiple of 4) of a superblock staged from `row` (kOdd: 2 bytes in).
  template <bool kOdd>
  __device__ static uint32_t word(const uint8_t* row, int at) {
    return staged_word<kOdd>(row + at + (kOdd ? 2 : 0));
  }

  template <bool kOdd>
  __device__ static void superblock(const uint8_t* row_a, const uint8_t* row_b, int t, const uint4* xf,
                                    const float4* te, float (&acc)[4]) {
    // The 16 int8 scales, each byte's top bit flipped (byte_as_float's int8 form).
    constexpr uint32_t kFlip = 0x80808080u;
    uint32_t sa[4], sb[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      sa[j] = word<kOdd>(row_a, 192 + 4 * j) ^ kFlip, sb[j] = word<kOdd>(row_b, 192 + 4 * j) ^ kFlip;
    float sv[4] = {0.f, 0.f, 0.f, 0.f};  // before d
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Per run r: ql at 64 h + 16 r (classes 0, 2), 32 bytes on (1, 3), qh at 128 + 32 h + 16 r.
      uint32_t l1a[2], l2a[2], hba[2], l1b[2], l2b[2], hbb[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int l1 = 64 * h + 16 * r + 4 * t, l2 = l1 + 32, hb = 128 + 32 * h + 16 * r + 4 * t;
        l1a[r] = word<kOdd>(row_a, l1), l2a[r] = word<kOdd>(row_a, l2), hba[r] = word<kOdd>(row_a, hb);
        l1b[r] = word<kOdd>(row_b, l1), l2b[r] = word<kOdd>(row_b, l2), hbb[r] = word<kOdd>(row_b, hb);
      }
      [&]<int... C>(std::integer_sequence<int, C...>) {
        (
            [&] {
              const int blk = 4 * h + C;  // class C of half h: 32 values, two runs
              const uint4 x = __ldg(xf + blk * GgufBatchImage::kFragUnits);
              const float4 e = __ldg(te + blk * (GgufBatchImage::kRows / 2));
              float sr[4] = {0.f, 0.f, 0.f, 0.f};  // the block's, before s_x
#pragma unroll
              for (int r = 0; r < 2; ++r) {
                const uint32_t ca = q6k_codes<C>(l1a[r], l2a[r], hba[r]);
                const uint32_t cb = q6k_codes<C>(l1b[r], l2b[r], hbb[r]);
                int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
                mma_s8s8_k16(ch, ca, cb, r ? x.y : x.x);
                mma_s8s8_k16(cl, ca, cb, r ? x.w : x.z);
                // Run j = 8 h + 2 C + r: scale byte j, word j / 4 = 2 h + C / 2, byte 2 (C % 2) + r.
                constexpr int kByte = 2 * (C % 2);
                const int w = 2 * h + C / 2;
                const float f[2] = {
                    r ? byte_as_float<kByte + 1>(sa[w], 8388736.f) : byte_as_float<kByte>(sa[w], 8388736.f),
                    r ? byte_as_float<kByte + 1>(sb[w], 8388736.f) : byte_as_float<kByte>(sb[w], 8388736.f)};
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                  // |256 c_h + c_l| <= 16 * 128 * (127 * 256 + 128) < 2^27: off by at most 2^-24 as a float.
                  sr[q] = fmaf(f[q >> 1], float(256 * ch[q] + cl[q]), sr[q]);
                }
              }
              const float sx[2] = {0.25f * e.x, 0.25f * e.z};  // the codes are 4 (q - 32)
#pragma unroll
              for (int q = 0; q < 4; ++q) sv[q] = fmaf(sx[q & 1], sr[q], sv[q]);
            }(),
            ...);
      }
      (std::make_integer_sequence<int, 4>{});
    }
    const int d_at = 208 + (kOdd ? 2 : 0);
    const float d[2] = {__half2float(*reinterpret_cast<const __half*>(row_a + d_at)),
                        __half2float(*reinterpret_cast<const __half*>(row_b + d_at))};
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = fmaf(d[q >> 1], sv[q], acc[q]);
  }
};

}  // namespace mlxn::kernels
