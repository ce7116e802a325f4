#pragma once
// exp(x) for f32 written for the CPU's vector units: no branches and no library call, so a
// loop of it vectorises (std::exp does not without -ffast-math). Range reduction
// x = n ln2 + r with ln2 split in two parts (r exact to f32), a degree-6 Taylor-like
// polynomial for e^r on |r| <= ln2/2, then 2^n put straight into the exponent bits.
// Accurate to about 2 ulp; exp(x) = 0 below -87.3 (where f32 leaves the normal range),
// +inf above 88.7, NaN stays NaN.
#include <bit>
#include <cstdint>

namespace mlxn {

inline float simd_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;     // ln 2 rounded to few bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;  // ln 2 - kLn2Hi
  constexpr float kMax = 88.7228391f, kMin = -87.3365479f;
  // Only selects and arithmetic below: g++ vectorises neither fminf nor floorf calls.
  // Out-of-range and NaN inputs are patched at the end with selects (blends).
  float xc = x < kMin ? kMin : x;
  xc = xc > kMax ? kMax : xc;
  // Round to nearest integer by adding and removing 1.5 * 2^23 (valid for |t| < 2^22).
  constexpr float kRound = 12582912.f;
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  // e^r = 1 + r + r^2/2! + ... + r^7/7! (Horner); the truncation error is below 1e-8 here.
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  // n can be 128 at the top of the range: scale by 2^(n-1) twice so the exponent fits.
  const int32_t ni = int32_t(n);
  const int32_t half = ni >> 1;
  const float s1 = std::bit_cast<float>(uint32_t(half + 127) << 23);
  const float s2 = std::bit_cast<float>(uint32_t(ni - half + 127) << 23);
  float y = p * s1 * s2;
  y = x > kMax ? __builtin_inff() : y;
  y = x < kMin ? 0.f : y;
  y = x != x ? x : y;
  return y;
}

}  // namespace mlxn
