#pragma once
// Eight-lane f32 / i32 vectors for the CPU's quantized dot products (quant_mlx_dots.h,
// quant_gguf_dots.h), written with GCC/Clang vector extensions: x86-64-v3 compiles them to
// AVX2, other targets to their own vector code. Where GCC lowers a generic conversion lane by
// lane, x86 names the one instruction that does it.
#include <cstdint>
#include <cstring>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mlxn::cpu::simd8 {

using v8f = float __attribute__((vector_size(32)));
using v8i = int32_t __attribute__((vector_size(32)));

inline v8f load8f(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Eight bytes widened to eight lanes, unsigned (zero-extended) or signed.
inline v8i load8u8(const uint8_t* p) {
#if defined(__AVX2__)
  return v8i(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  v8i v;
  for (int j = 0; j < 8; ++j) v[j] = int32_t(p[j]);
  return v;
#endif
}
inline v8i load8i8(const uint8_t* p) {
#if defined(__AVX2__)
  return v8i(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  v8i v;
  for (int j = 0; j < 8; ++j) v[j] = int32_t(int8_t(p[j]));
  return v;
#endif
}

inline v8f to_f32(v8i v) { return __builtin_convertvector(v, v8f); }

inline float lanes_sum(v8f v) {
  float s = 0.f;
  for (int j = 0; j < 8; ++j) s += v[j];
  return s;
}

}  // namespace mlxn::cpu::simd8
