#pragma once
// Element types. Float types, integer types, and the quantized block types of GGUF (a
// block of `block_elems()` elements stored in `block_bytes()` bytes).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string_view>

namespace mlxn {

enum class DType : uint8_t {
  f32,
  f16,
  bf16,
  i8,
  u8,
  i32,
  u32,
  i64,
  // GGUF block-quantized types (used by the quant family).
  q4_0,
  q4_1,
  q5_0,
  q5_1,
  q8_0,
  q2_k,
  q3_k,
  q4_k,
  q5_k,
  q6_k,
  count_
};

struct DTypeTraits {
  std::string_view name;
  uint32_t block_elems;  // elements per storage block (1 for plain types)
  uint32_t block_bytes;  // bytes per storage block
  bool is_float;         // a plain float type (f32/f16/bf16)
  bool is_integer;
};

const DTypeTraits& traits(DType t);
inline std::string_view name(DType t) { return traits(t).name; }
inline bool is_float(DType t) { return traits(t).is_float; }
inline bool is_quantized(DType t) { return traits(t).block_elems > 1; }
// Bytes of one element; only meaningful for non-block types.
inline size_t element_size(DType t) { return traits(t).block_bytes; }
// Parses "f32", "bf16", ...; throws InvalidArgument for an unknown name.
DType parse_dtype(std::string_view s);

// A small set of dtypes, used by the op registry to declare what a backend supports.
class DTypeSet {
 public:
  constexpr DTypeSet() = default;
  constexpr DTypeSet(std::initializer_list<DType> ts) {
    for (DType t : ts) bits_ |= bit(t);
  }
  constexpr bool contains(DType t) const { return (bits_ & bit(t)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr DTypeSet operator|(DTypeSet o) const {
    DTypeSet r;
    r.bits_ = bits_ | o.bits_;
    return r;
  }

 private:
  static constexpr uint32_t bit(DType t) { return 1u << static_cast<uint32_t>(t); }
  uint32_t bits_ = 0;
};

inline constexpr DTypeSet kFloatTypes{DType::f32, DType::f16, DType::bf16};

// ---- host half-precision types -----------------------------------------------------------
// Conversions round to nearest, ties to even; NaN stays NaN, overflow goes to infinity.

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(from_float(f)) {}  // NOLINT: implicit like a float type
  operator float() const { return bits_float(uint32_t(bits) << 16); }
  static uint16_t from_float(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
  }
};

struct Half {
  uint16_t bits = 0;
  Half() = default;
  Half(float f) : bits(from_float(f)) {}  // NOLINT
  operator float() const { return to_float(bits); }
  static uint16_t from_float(float f);
  static float to_float(uint16_t h);
};

static_assert(sizeof(BFloat16) == 2 && sizeof(Half) == 2);

}  // namespace mlxn
