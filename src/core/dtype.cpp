#include "mlxn/dtype.h"

#include <array>

#include "mlxn/error.h"

namespace mlxn {

namespace {
constexpr std::array<DTypeTraits, size_t(DType::count_)> kTraits = {{
    {"f32", 1, 4, true, false},
    {"f16", 1, 2, true, false},
    {"bf16", 1, 2, true, false},
    {"i8", 1, 1, false, true},
    {"u8", 1, 1, false, true},
    {"i32", 1, 4, false, true},
    {"u32", 1, 4, false, true},
    {"i64", 1, 8, false, true},
    // GGUF blocks: elements per block, bytes per block (ggml's block layouts).
    {"q4_0", 32, 18, false, false},
    {"q4_1", 32, 20, false, false},
    {"q5_0", 32, 22, false, false},
    {"q5_1", 32, 24, false, false},
    {"q8_0", 32, 34, false, false},
    {"q2_k", 256, 84, false, false},
    {"q3_k", 256, 110, false, false},
    {"q4_k", 256, 144, false, false},
    {"q5_k", 256, 176, false, false},
    {"q6_k", 256, 210, false, false},
}};
}  // namespace

const DTypeTraits& traits(DType t) {
  auto i = static_cast<size_t>(t);
  if (i >= kTraits.size()) throw InvalidArgument(detail::concat("[dtype] invalid dtype value ", i));
  return kTraits[i];
}

DType parse_dtype(std::string_view s) {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].name == s) return static_cast<DType>(i);
  throw InvalidArgument(detail::concat("[dtype] unknown dtype '", s, "'"));
}

uint16_t Half::from_float(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (absu >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (absu < 0x38800000u) {                                  // below 2^-14: subnormal or 0
    // Add 0.5 so the float adder performs the round-to-nearest-even at half's subnormal
    // quantum (2^-24): 0.5 has exponent -1, so the mantissa's low bits are the result.
    const float r = bits_float(absu) + 0.5f;
    return uint16_t(sign | (float_bits(r) - 0x3f000000u));
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to even.
  uint32_t v = absu - 0x38000000u;
  v += 0xfffu + ((v >> 13) & 1u);
  return uint16_t(sign | (v >> 13));
}

float Half::to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float m = float(man) * bits_float(0x33800000u);
    return bits_float(sign | float_bits(m));
  }
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

}  // namespace mlxn
