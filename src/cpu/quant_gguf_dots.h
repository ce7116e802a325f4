#pragma once
// The CPU's GGUF dot products for the common block types (q4_0, q8_0, q4_k, q6_k): a weight
// row against one or two rows of x, each 32-value unit decoded straight into four 8-lane
// vectors (the same arithmetic as the traits' decode32, so the same values) and multiplied
// into the accumulators while it is in registers. In these types a unit's quants lie in byte
// order (value i in byte i of its field, or in the high nibbles of bytes i - 16 for q4_0),
// so x is read as it is, with no rearrangement. Other types decode rows through the traits.
#include <cstdint>
#include <type_traits>

#include "cpu/simd8.h"
#include "ops/quant_gguf_blocks.h"

namespace mlxn::cpu::gdot {

using simd8::lanes_sum;
using simd8::load8f;
using simd8::load8i8;
using simd8::load8u8;
using simd8::to_f32;
using simd8::v8f;
using simd8::v8i;

template <class B>
constexpr bool kVectorised = std::is_same_v<B, gguf::BlockQ4_0> || std::is_same_v<B, gguf::BlockQ8_0> ||
                             std::is_same_v<B, gguf::BlockQ4_K> || std::is_same_v<B, gguf::BlockQ6_K>;

// Unit u of block b as values w[0..3] (8 each, in value order).
template <class B>
inline void decode_unit8(const uint8_t* b, int u, v8f (&w)[4]) {
  if constexpr (std::is_same_v<B, gguf::BlockQ4_0>) {
    const float d = gguf::f16_to_f32(gguf::ld_u16(b));
    const v8i lo = load8u8(b + 2), hi = load8u8(b + 10);
    w[0] = (to_f32(lo & 15) - 8.f) * d;
    w[1] = (to_f32(hi & 15) - 8.f) * d;
    w[2] = (to_f32(lo >> 4) - 8.f) * d;
    w[3] = (to_f32(hi >> 4) - 8.f) * d;
  } else if constexpr (std::is_same_v<B, gguf::BlockQ8_0>) {
    const float d = gguf::f16_to_f32(gguf::ld_u16(b));
    for (int j = 0; j < 4; ++j) w[j] = to_f32(load8i8(b + 2 + 8 * j)) * d;
  } else if constexpr (std::is_same_v<B, gguf::BlockQ4_K>) {
    const uint32_t dd = gguf::ld_u32<true>(b);
    uint32_t sc, mn;
    gguf::k_scale_min(b + 4, u, sc, mn);
    const float dl = gguf::f16_to_f32(dd & 0xffffu) * float(sc), ml = gguf::f16_to_f32(dd >> 16) * float(mn);
    const uint8_t* qs = b + 16 + 32 * (u >> 1);
    const int shift = 4 * (u & 1);
    for (int j = 0; j < 4; ++j) w[j] = dl * to_f32((load8u8(qs + 8 * j) >> shift) & 15) - ml;
  } else {
    static_assert(std::is_same_v<B, gguf::BlockQ6_K>);
    const float d = gguf::f16_to_f32(gguf::ld_u16(b + 208));
    const int h = u >> 2, s = u & 3;
    const uint8_t* ql = b + 64 * h + 32 * (s & 1);
    const uint8_t* qh = b + 128 + 32 * h;
    const int lshift = 4 * (s >> 1), hshift = 2 * s;
    for (int j = 0; j < 4; ++j) {
      const float dl = d * float(int8_t(b[192 + 2 * u + j / 2]));  // a scale per 16 values
      const v8i q = ((load8u8(ql + 8 * j) >> lshift) & 15) | ((load8u8(qh + 8 * j) >> hshift) & 3) << 4;
      w[j] = dl * (to_f32(q) - 32.f);
    }
  }
}

// out[r] = dot(W row, x row r) for r < R (R = 1 or 2); the row holds k / 32 units.
template <class B, int R>
void row_dots(const uint8_t* row, int64_t k, const float* const* x, float* out) {
  static_assert(kVectorised<B> && (R == 1 || R == 2));
  constexpr int kUnits = B::kElems / 32;
  v8f acc[R][4] = {};
  for (int64_t blk = 0; blk < k / B::kElems; ++blk) {
    const uint8_t* b = row + blk * B::kBytes;
    // Unrolled over a block's units, so that their shared header (the f16 scales) is
    // converted once per block.
#pragma GCC unroll 8
    for (int u = 0; u < kUnits; ++u) {
      v8f w[4];
      decode_unit8<B>(b, u, w);
      const int64_t x0 = blk * B::kElems + 32 * u;
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < 4; ++j) acc[r][j] += w[j] * load8f(x[r] + x0 + 8 * j);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = lanes_sum((acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3]));
}

}  // namespace mlxn::cpu::gdot
