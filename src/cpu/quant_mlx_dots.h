#pragma once
// The CPU's MLX affine dot products: one weight row against one or two rows of x, eight lanes
// at a time, for every width (2, 3, 4, 5, 6, 8 bits) and group size (32, 64, 128).
//
// Why x is rearranged: unit i of a group's codes (UB bits, whole values) holds the group's
// values P i .. P i + P - 1 (P = UB / BITS values a unit, value P i + p at bit BITS p of the
// unit). Unpacking them in value order costs a shuffle per vector; instead x is rearranged
// once per call into "planes": within each group, plane p lists the x values that field p of
// units 0, 1, 2, ... multiplies. Then eight units widened to eight 32-bit lanes give, after one
// shift and mask, a vector that lines up with eight consecutive plane values, and the row is a
// run of multiply-adds:
//   dot = sum_g s_g * sum_i q_i x_i + sum_g b_g * sum_i x_i.
// The group's scale is applied to the codes (q s, exact for q < 256 and a 16-bit s) before
// the multiply-add, so every accumulator runs across groups: four independent chains per x
// row hide the multiply-add latency.
//
// Eight-lane vectors from simd8.h (AVX2 on x86-64-v3: vpsrld or vpsrlvd, vpand, vcvtdq2ps,
// vfmadd).
#include <cstdint>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu/simd8.h"

namespace mlxn::cpu::qdot {

using simd8::lanes_sum;
using simd8::load8f;
using simd8::load8u8;
using simd8::v8f;
using simd8::v8i;

// Bits of a unit, the whole values one 32-bit lane takes: a byte at 2, 4 and 8 bits, three
// bytes at 6 bits. At 5 and 3 bits, 8 values fill 5 and 3 bytes; a unit is half of that, 20
// and 12 bits, starting 0 or 4 bits into its first byte (40 bits fit no lane, and eight 24-bit
// units of 3-bit values would span 64 values, two groups at group size 32).
template <int BITS>
constexpr int kUnitBits = BITS == 2 || BITS == 4 || BITS == 8 ? 8
                          : BITS == 6                         ? 24
                          : BITS == 5                         ? 20
                          : BITS == 3                         ? 12
                                                              : 0;
template <int BITS>
constexpr int kPerUnit = kUnitBits<BITS> / BITS;  // values a unit
template <int BITS>
constexpr int kChunks = kPerUnit<BITS> >= 4 ? 1 : 4 / kPerUnit<BITS>;  // 8-unit chunks a step

// Rows of `k` values of x into planes, group by group (gs values a group): out may not alias x.
template <int BITS>
void to_planes(const float* x, int64_t k, int gs, float* out) {
  constexpr int P = kPerUnit<BITS>;
  const int per_plane = gs / P;
  for (int64_t g0 = 0; g0 < k; g0 += gs)
    for (int p = 0; p < P; ++p)
      for (int i = 0; i < per_plane; ++i) out[g0 + p * per_plane + i] = x[g0 + P * i + p];
}

// Eight units widened to eight 32-bit lanes by one byte shuffle, reading exactly kRead bytes:
// lane u takes the kTake bytes from offset(u) (its unit in the low bits, 4 bits up where the
// unit starts mid-byte; field shifts it down). Lanes 0-3 come from a kLoad-byte load at p,
// lanes 4-7 from one that ends at the last byte read.
//   24-bit units (6 bits): lane u at 3 u.
//   20-bit units (5 bits): four 5-byte runs of 8 values; lane 2 j at 5 j, 2 j + 1 at 5 j + 2.
//   12-bit units (3 bits): four 3-byte runs of 8 values; lane 2 j at 3 j, 2 j + 1 at 3 j + 1.
template <int kUnitBits>
struct Widen {
  // eight units of kUnitBits bits are kUnitBits bytes
  static constexpr int kRead = kUnitBits, kTake = kUnitBits == 12 ? 2 : 3, kLoad = kUnitBits == 12 ? 8 : 16;
  static constexpr int offset(int u) {
    return kUnitBits == 24 ? 3 * u : kUnitBits == 20 ? 5 * (u / 2) + 2 * (u % 2) : 3 * (u / 2) + u % 2;
  }
};

template <int kUnitBits>
inline v8i widen8(const uint8_t* p) {
  using W = Widen<kUnitBits>;
  constexpr int kSecond = W::kRead - W::kLoad;  // where the second load starts
#if defined(__AVX2__)
  alignas(32) static constexpr auto kSpread = [] {
    struct { int8_t b[32]; } t{};
    for (int u = 0; u < 8; ++u)
      for (int i = 0; i < 4; ++i)
        t.b[4 * u + i] = int8_t(i < W::kTake ? W::offset(u) - (u < 4 ? 0 : kSecond) + i : -1);
    return t;
  }();
  const auto load = [](const uint8_t* q) {
    if constexpr (W::kLoad == 16) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    else return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  };
  const __m256i v = _mm256_set_m128i(load(p + kSecond), load(p));
  return v8i(_mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(kSpread.b))));
#else
  v8i v;
  for (int u = 0; u < 8; ++u) {
    const uint8_t* q = p + W::offset(u);
    v[u] = int32_t(q[0] | q[1] << 8 | (W::kTake == 3 ? q[2] << 16 : 0));
  }
  return v;
#endif
}

template <int BITS>
inline v8i load_units(const uint8_t* p) {
  if constexpr (kUnitBits<BITS> == 8)
    return load8u8(p);
  else
    return widen8<kUnitBits<BITS>>(p);
}

// Field p of eight loaded units: a shift by one count, or where units start inside a byte (lane
// u's unit at bit u UB mod 8 of the lane) by a count per lane (vpsrlvd).
template <int BITS>
inline v8i field(v8i w, int p) {
  constexpr int32_t kMask = (1 << BITS) - 1;
  constexpr int UB = kUnitBits<BITS>;
  if constexpr (UB % 8 == 0) {
    return (w >> (BITS * p)) & kMask;
  } else {
    const v8i start = {0, UB % 8, 2 * UB % 8, 3 * UB % 8, 4 * UB % 8, 5 * UB % 8, 6 * UB % 8, 7 * UB % 8};
    return (w >> (start + BITS * p)) & kMask;
  }
}

// out[r] = dot(W row, x row r) for r < R (R = 1 or 2). codes: the row's packed bytes; s, b:
// its groups' scales and biases as f32; xp[r]: x row r in planes; xsum[r]: its per-group
// sums. A step is 32 values, so a group (32, 64 or 128 values) holds whole steps.
template <int BITS, int R>
void row_dots(const uint8_t* codes, const float* s, const float* b, int64_t groups, int gs, const float* const* xp,
              const float* const* xsum, float* out) {
  static_assert(kUnitBits<BITS> > 0 && 8 * kChunks<BITS> * kPerUnit<BITS> == 32 && (R == 1 || R == 2));
  constexpr int UB = kUnitBits<BITS>, P = kPerUnit<BITS>, C = kChunks<BITS>, A = C * P;  // A accumulators
  const int nu = gs / P;  // units of a group, and values of one plane
  v8f acc[R][A] = {};
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* cg = codes + g * gs * BITS / 8;
    const v8f sv = v8f{} + s[g];
    const int64_t xg = g * gs;
    for (int i = 0; i < nu; i += 8 * C) {
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        const v8i w = load_units<BITS>(cg + (i + 8 * c) * UB / 8);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
          const v8f q = simd8::to_f32(field<BITS>(w, p)) * sv;
#pragma GCC unroll 2
          for (int r = 0; r < R; ++r) acc[r][c * P + p] += q * load8f(xp[r] + xg + p * nu + i + 8 * c);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    v8f bias = {};
    int64_t g = 0;
    for (; g + 8 <= groups; g += 8) bias += load8f(b + g) * load8f(xsum[r] + g);
    float tail = 0.f;
    for (; g < groups; ++g) tail += b[g] * xsum[r][g];
    v8f sum = acc[r][0];
    for (int j = 1; j < A; ++j) sum += acc[r][j];
    out[r] = lanes_sum(sum) + (lanes_sum(bias) + tail);
  }
}

}  // namespace mlxn::cpu::qdot
