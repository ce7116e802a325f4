#pragma once
// GGUF Q4_K and Q5_K for the batch integer mat-vec (quant_gguf_i8_batch.cuh): one m16n8k32 mma
// per 32-value sub-block and x part, so the sub-block's scale and min apply to exact integer
// sums:
//   row value += d sc s_x (256 c_h + c_l) - dmin m * sum of x over the sub-block
// with s_x and the sub-block's sum of x per x row from the image's table.
//
// A Q4_K superblock row is 144 bytes: d and dmin (f16), 12 bytes of the 6-bit scales and mins
// of its 8 sub-blocks, then 4 chunks of 32 code bytes (chunk c: low nibbles sub-block 2c, high
// nibbles 2c + 1, byte i holding value i of each). Q5_K (176 bytes) puts 32 bytes between the
// two: byte l holds bit u of value l of every sub-block u, the codes' fifth bit. Lane t takes
// bytes 4t .. 4t + 3 (the mma's k 4t..) and 16 + 4t .. (k 16 + 4t..) of each chunk and of the
// high bits, whose values are those its x runs hold.
#include "cuda/kernels/quant_gguf_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_qmv_i8.cuh"  // kquant_scales, kquant_mins

namespace mlxn::kernels {

// kFive: Q5_K.
template <bool kFive>
struct KQuantBatch {
  static constexpr int kBytes = kFive ? 176 : 144, kPitch = kBytes;
  static constexpr int kCodes = kFive ? 48 : 16;  // the first code byte of a row

  // A staged row's d, dmin, and its sub-blocks' 6-bit scales and mins (sub-block s: byte s % 4
  // of word s / 4), from its 16-byte header.
  struct Header {
    uint2 sc, m;
    float d, dmin;
    __device__ explicit Header(const uint8_t* row) {
      const uint4 h = *reinterpret_cast<const uint4*>(row);
      sc = kquant_scales(h.y, h.w), m = kquant_mins(h.z, h.w);
      const float2 dd = __half22float2(*reinterpret_cast<const __half2*>(&h.x));
      d = dd.x, dmin = dd.y;
    }
    template <int S>
    __device__ float scale() const {
      return d * byte_as_float<S % 4>(S < 4 ? sc.x : sc.y, 8388608.f);
    }
    template <int S>
    __device__ float min() const {
      return dmin * byte_as_float<S % 4>(S < 4 ? m.x : m.y, 8388608.f);
    }
  };

  template <bool kOdd>
  __device__ static void superblock(const uint8_t* row_a, const uint8_t* row_b, int t, const uint4* xf,
                                    const float4* te, float (&acc)[4]) {
    static_assert(!kOdd, "144- and 176-byte superblocks start on a unit");
    const Header ha(row_a), hb(row_b);
    const uint32_t* wa = reinterpret_cast<const uint32_t*>(row_a) + t;
    const uint32_t* wb = reinterpret_cast<const uint32_t*>(row_b) + t;
    [&]<int... S>(std::integer_sequence<int, S...>) {
      (
          [&] {
            constexpr int c = S / 2, shift = 4 * (S % 2);  // chunk c; low nibbles for even S
            constexpr int w0 = kCodes / 4 + 8 * c, w1 = w0 + 4;
            // The code bytes: the nibble, and at Q5_K bit S of the high-bit byte as bit 4.
            auto code = [](const uint32_t* w, int at, int high) {
              const uint32_t q = (w[at] >> shift) & 0x0f0f0f0fu;
              if constexpr (!kFive) return q;
              const uint32_t hb = w[4 + high];  // words 4 .. 11: the high bits
              return q | ((S <= 4 ? hb << (4 - S) : hb >> (S - 4)) & 0x10101010u);
            };
            const uint32_t a0 = code(wa, w0, 0), a1 = code(wb, w0, 0), a2 = code(wa, w1, 4), a3 = code(wb, w1, 4);
            const uint4 x = __ldg(xf + S * GgufBatchImage::kFragUnits);    // part h's runs, then part l's
            const float4 e = __ldg(te + S * (GgufBatchImage::kRows / 2));  // (s_x, sum) of x rows 2t, 2t + 1
            int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
            mma_u8s8(ch, a0, a1, a2, a3, x.x, x.y);
            mma_u8s8(cl, a0, a1, a2, a3, x.z, x.w);
            const float sc[2] = {ha.template scale<S>(), hb.template scale<S>()};
            const float mn[2] = {ha.template min<S>(), hb.template min<S>()};
            const float sx[2] = {e.x, e.z}, sum[2] = {e.y, e.w};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              // |256 c_h + c_l| <= 32 * 31 * (127 * 256 + 128) < 2^25: off by at most 2^-24 as a
              // float (exact at Q4_K, whose codes are < 16).
              const int v = 256 * ch[q] + cl[q];
              acc[q] = fmaf(sc[q >> 1] * sx[q & 1], float(v), fmaf(-mn[q >> 1], sum[q & 1], acc[q]));
            }
          }(),
          ...);
    }
    (std::make_integer_sequence<int, 8>{});
  }
};

}  // namespace mlxn::kernels
