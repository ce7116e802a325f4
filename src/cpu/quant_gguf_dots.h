#pragma once
// The CPU's GGUF dot products for every block type: a weight row against one or two rows of
// x, each 32-value unit decoded straight into four 8-lane vectors (the same arithmetic as the
// traits' decode32, so the same values) and multiplied into the accumulators while it is in
// registers. In every type a unit's quants lie in byte order (value i in byte i of its field,
// or in the high nibbles of bytes i - 16 for q4_0 / q4_1 / q5_0 / q5_1, with high bits in a
// bit field indexed by i), so x is read as it is, with no rearrangement. Float weights decode
// rows through the traits.
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

// The quantized block types (not the float types the traits also describe as blocks).
template <class B>
constexpr bool kBlockType = !std::is_same_v<B, gguf::BlockF32> && !std::is_same_v<B, gguf::BlockF16> &&
                            !std::is_same_v<B, gguf::BlockBF16>;

// Lane j of vector v of a unit is value 8 v + j: the lane numbers, for per-value bit fields.
inline v8i lane_ids(int v) { return v8i{0, 1, 2, 3, 4, 5, 6, 7} + 8 * v; }

// Quants of the 32-value types (q4_0, q4_1, q5_0, q5_1): bytes i of `qs` (16 bytes) hold
// values i (low nibble) and 16 + i (high nibble); qh (5-bit types) bit i the fifth bit of
// value i.
template <bool kHigh>
inline void nibbles(const uint8_t* qs, uint32_t qh, v8i (&q)[4]) {
  const v8i lo = load8u8(qs), hi = load8u8(qs + 8);
  q[0] = lo & 15, q[1] = hi & 15, q[2] = lo >> 4, q[3] = hi >> 4;
  if constexpr (kHigh)
    for (int v = 0; v < 4; ++v) q[v] |= ((v8i{} + int32_t(qh)) >> lane_ids(v) & 1) << 4;
}

// Unit u of block b as values w[0..3] (8 each, in value order).
template <class B>
inline void decode_unit8(const uint8_t* b, int u, v8f (&w)[4]) {
  using namespace gguf;
  if constexpr (std::is_same_v<B, BlockQ4_0> || std::is_same_v<B, BlockQ5_0>) {
    constexpr bool k5 = std::is_same_v<B, BlockQ5_0>;
    const float d = f16_to_f32(ld_u16(b));
    v8i q[4];
    nibbles<k5>(b + (k5 ? 6 : 2), k5 ? ld_u32<false>(b + 2) : 0u, q);
    for (int v = 0; v < 4; ++v) w[v] = (to_f32(q[v]) - (k5 ? 16.f : 8.f)) * d;
  } else if constexpr (std::is_same_v<B, BlockQ4_1> || std::is_same_v<B, BlockQ5_1>) {
    constexpr bool k5 = std::is_same_v<B, BlockQ5_1>;
    const uint32_t dm = ld_u32<true>(b);
    const float d = f16_to_f32(dm & 0xffffu), m = f16_to_f32(dm >> 16);
    v8i q[4];
    nibbles<k5>(b + (k5 ? 8 : 4), k5 ? ld_u32<true>(b + 4) : 0u, q);
    for (int v = 0; v < 4; ++v) w[v] = d * to_f32(q[v]) + m;
  } else if constexpr (std::is_same_v<B, BlockQ8_0>) {
    const float d = f16_to_f32(ld_u16(b));
    for (int j = 0; j < 4; ++j) w[j] = to_f32(load8i8(b + 2 + 8 * j)) * d;
  } else if constexpr (std::is_same_v<B, BlockQ4_K> || std::is_same_v<B, BlockQ5_K>) {
    constexpr bool k5 = std::is_same_v<B, BlockQ5_K>;
    const uint32_t dd = ld_u32<true>(b);
    uint32_t sc, mn;
    k_scale_min(b + 4, u, sc, mn);
    const float dl = f16_to_f32(dd & 0xffffu) * float(sc), ml = f16_to_f32(dd >> 16) * float(mn);
    const uint8_t* qs = b + (k5 ? 48 : 16) + 32 * (u >> 1);
    const int shift = 4 * (u & 1);
    for (int j = 0; j < 4; ++j) {
      v8i q = (load8u8(qs + 8 * j) >> shift) & 15;
      if constexpr (k5) q |= ((load8u8(b + 16 + 8 * j) >> u) & 1) << 4;  // qh bit u of byte i
      w[j] = dl * to_f32(q) - ml;
    }
  } else if constexpr (std::is_same_v<B, BlockQ2_K>) {
    const uint32_t dd = ld_u32<true>(b + 80);
    const float d = f16_to_f32(dd & 0xffffu), dmin = f16_to_f32(dd >> 16);
    const uint8_t* qs = b + 16 + 32 * (u >> 2);
    const int shift = 2 * (u & 3);
    for (int j = 0; j < 4; ++j) {
      const uint32_t sc = b[2 * u + j / 2];  // a scale and min per 16 values
      const float dl = d * float(sc & 15u), ml = dmin * float(sc >> 4);
      w[j] = dl * to_f32((load8u8(qs + 8 * j) >> shift) & 3) - ml;
    }
  } else if constexpr (std::is_same_v<B, BlockQ3_K>) {
    const float d = f16_to_f32(ld_u16(b + 108));
    const uint8_t* qs = b + 32 + 32 * (u >> 2);
    const int shift = 2 * (u & 3);
    for (int j = 0; j < 4; ++j) {
      const float dl = d * float(BlockQ3_K::scale(b + 96, 2 * u + j / 2));
      // q + 4 = the two low bits + 4 * the hmask bit u of byte i, in 0..7
      const v8i q4 = ((load8u8(qs + 8 * j) >> shift) & 3) | ((load8u8(b + 8 * j) >> u) & 1) << 2;
      w[j] = dl * (to_f32(q4) - 4.f);
    }
  } else {
    static_assert(std::is_same_v<B, BlockQ6_K>);
    const float d = f16_to_f32(ld_u16(b + 208));
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
  static_assert(kBlockType<B> && (R == 1 || R == 2));
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
