#pragma once
// The CPU's MLX affine dot products for the widths whose values never straddle a byte (2, 4
// and 8 bits): one weight row against one or two rows of x, eight lanes at a time.
//
// Why x is rearranged: byte i of a group's codes holds the group's values P i .. P i + P - 1
// (P = 8 / BITS values a byte, value P i + p at bit BITS p). Unpacking them in value order
// costs a shuffle per vector; instead x is rearranged once per call into "planes": within each
// group, plane p lists the x values that field p of bytes 0, 1, 2, ... multiplies. Then eight
// code bytes widened to eight lanes give, after one shift and mask, a vector that lines up
// with eight consecutive plane values, and the row is a run of multiply-adds:
//   dot = sum_g s_g * sum_i q_i x_i + sum_g b_g * sum_i x_i.
// The group's scale is applied to the codes (q s, exact for q < 256 and a 16-bit s) before
// the multiply-add, so every accumulator runs across groups: four independent chains per x
// row hide the multiply-add latency.
//
// Written with GCC/Clang vector extensions, which x86-64-v3 compiles to AVX2 (vpsrld, vpand,
// vcvtdq2ps, vfmadd) and other targets to their own vector code; one intrinsic widens bytes.
#include <cstdint>
#include <cstring>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mlxn::cpu::qdot {

using v8f = float __attribute__((vector_size(32)));
using v8i = int32_t __attribute__((vector_size(32)));
using v8u8 = uint8_t __attribute__((vector_size(8)));

template <int BITS>
constexpr bool kByteAligned = BITS == 2 || BITS == 4 || BITS == 8;

// Rows of `k` values of x into planes, group by group (gs values a group): out may not alias x.
template <int BITS>
void to_planes(const float* x, int64_t k, int gs, float* out) {
  constexpr int P = 8 / BITS;
  const int per_plane = gs / P;
  for (int64_t g0 = 0; g0 < k; g0 += gs)
    for (int p = 0; p < P; ++p)
      for (int i = 0; i < per_plane; ++i) out[g0 + p * per_plane + i] = x[g0 + P * i + p];
}

inline v8f load8f(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Eight bytes widened to eight lanes. GCC lowers the generic conversion of an 8-byte vector
// lane by lane (16 scalar extracts and inserts), so x86 names the one instruction that does it.
inline v8i load8u8(const uint8_t* p) {
#if defined(__AVX2__)
  return v8i(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  v8u8 v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, v8i);
#endif
}

inline float lanes_sum(v8f v) {
  float s = 0.f;
  for (int j = 0; j < 8; ++j) s += v[j];
  return s;
}

// out[r] = dot(W row, x row r) for r < R (R = 1 or 2). codes: the row's packed bytes; s, b:
// its groups' scales and biases as f32; xp[r]: x row r in planes; xsum[r]: its per-group
// sums. Needs gs * BITS / 8 a multiple of 32 / P (true for gs 32, 64, 128).
template <int BITS, int R>
void row_dots(const uint8_t* codes, const float* s, const float* b, int64_t groups, int gs, const float* const* xp,
              const float* const* xsum, float* out) {
  static_assert(kByteAligned<BITS> && (R == 1 || R == 2));
  constexpr int P = 8 / BITS, C = 4 / P;  // C chunks of 8 bytes x P planes = 4 accumulators
  constexpr int32_t kMask = (1 << BITS) - 1;
  const int nb = gs / P;  // code bytes of a group, and values of one plane
  v8f acc[R][4] = {};
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* cg = codes + g * nb;
    const v8f sv = v8f{} + s[g];
    const int64_t xg = g * gs;
    for (int i = 0; i < nb; i += 8 * C) {
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        const v8i w = load8u8(cg + i + 8 * c);
#pragma GCC unroll 4
        for (int p = 0; p < P; ++p) {
          const v8f q = __builtin_convertvector((w >> (BITS * p)) & kMask, v8f) * sv;
#pragma GCC unroll 2
          for (int r = 0; r < R; ++r) acc[r][c * P + p] += q * load8f(xp[r] + xg + p * nb + i + 8 * c);
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
    out[r] = lanes_sum((acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3])) + (lanes_sum(bias) + tail);
  }
}

}  // namespace mlxn::cpu::qdot
