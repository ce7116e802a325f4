#pragma once
// The GGUF quant-traits table: one struct per ggml block type (and the three float types,
// seen as blocks of 32 elements), each with its block size and a function that decodes one
// 32-value unit of a block to floats. The CPU backend and every CUDA kernel (dequantize,
// embedding, mat-vec, the prefill dequantization) decode through these functions, so the
// layouts live in exactly one place. Framework-free: compiled by g++ and by nvcc.
//
// Layouts (bytes, little-endian; d/dmin are f16), as the gguf package (gguf-py) reads them:
//   q4_0 [18]  d, qs[16]                       element i<16: qs[i]&15, i>=16: qs[i-16]>>4; (q-8)*d
//   q4_1 [20]  d, m, qs[16]                    q*d + m
//   q5_0 [22]  d, qh u32, qs[16]               q |= bit i of qh << 4; (q-16)*d
//   q5_1 [24]  d, m, qh u32, qs[16]            q*d + m
//   q8_0 [34]  d, qs int8[32]                  q*d
//   q2_k [84]  scales[16], qs[64], d, dmin     (d*(sc&15))*q - dmin*(sc>>4), 16-value groups
//   q3_k [110] hmask[32], qs[64], scales[12], d   6-bit signed scales, q = 2 low bits - 4*!hbit
//   q4_k [144] d, dmin, scales[12], qs[128]    6-bit scales and mins per 32 values
//   q5_k [176] d, dmin, scales[12], qh[32], qs[128]
//   q6_k [210] ql[128], qh[64], scales int8[16], d
// Bit-exactness with gguf-py: every product of an f16 scale, a 6/8-bit sub-scale and a
// quant has at most 24 significant bits, so it is exact in f32 and the one rounding is the
// final add; a fused multiply-add gives the same bits.
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define MLXN_GGUF_HD __host__ __device__ __forceinline__
#else
#define MLXN_GGUF_HD inline
#endif
// Unrolling hint for the device passes only (host compilers warn about the pragma).
#if defined(__CUDA_ARCH__)
#define MLXN_GGUF_UNROLL _Pragma("unroll")
#else
#define MLXN_GGUF_UNROLL
#endif

namespace mlxn::gguf {

// ---- byte access ---------------------------------------------------------------------------
// Blocks of every type start at even byte offsets, so 16-bit fields are always 2-aligned;
// 32-bit reads are 4-aligned only in types whose block size is a multiple of 4.

MLXN_GGUF_HD uint32_t ld_u8(const uint8_t* p) { return p[0]; }

MLXN_GGUF_HD uint32_t ld_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  return uint32_t(p[0]) | uint32_t(p[1]) << 8;
#endif
}

// Four bytes at p (little-endian). kAligned4: p is 4-aligned; otherwise it is 2-aligned.
template <bool kAligned4>
MLXN_GGUF_HD uint32_t ld_u32(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  if constexpr (kAligned4)
    return *reinterpret_cast<const uint32_t*>(p);
  else
    return ld_u16(p) | ld_u16(p + 2) << 16;
#else
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
#endif
}

MLXN_GGUF_HD float f16_to_f32(uint32_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
#else
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | man << 13;
  } else if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in f32
    float m = float(man) * 5.9604644775390625e-08f;
    __builtin_memcpy(&bits, &m, 4);
    bits |= sign;
  } else {
    bits = sign | (exp + 112u) << 23 | man << 13;
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
#endif
}

MLXN_GGUF_HD float bf16_to_f32(uint32_t b) {
  const uint32_t bits = b << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
#endif
}

// An unsigned integer below 2^23 as a float, exactly. On the device the integer is placed in
// the mantissa of 2^23 and 2^23 subtracted (one logic op and one add, both full rate),
// instead of the quarter-rate integer conversion.
MLXN_GGUF_HD float u2f(uint32_t q) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(0x4B000000u | q) - 8388608.f;
#else
  return float(q);
#endif
}

// ---- the table -----------------------------------------------------------------------------
// Each entry: kElems values in kBytes bytes per block; kUnits = kElems / 32 decode units;
// decode32(block, u, v) writes v[i] = value of element 32 * u + i of the block.

struct BlockQ4_0 {
  static constexpr int kElems = 32, kBytes = 18;
  static constexpr bool kAligned4 = false;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    const float d = f16_to_f32(ld_u16(b));
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 4; ++j) {
      const uint32_t w = ld_u32<false>(b + 2 + 4 * j);
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) {
        v[4 * j + t] = d * (u2f((w >> (8 * t)) & 15u) - 8.f);
        v[16 + 4 * j + t] = d * (u2f((w >> (8 * t + 4)) & 15u) - 8.f);
      }
    }
  }
};

struct BlockQ4_1 {
  static constexpr int kElems = 32, kBytes = 20;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    const uint32_t dm = ld_u32<true>(b);
    const float d = f16_to_f32(dm & 0xffffu), m = f16_to_f32(dm >> 16);
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 4; ++j) {
      const uint32_t w = ld_u32<true>(b + 4 + 4 * j);
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) {
        v[4 * j + t] = d * u2f((w >> (8 * t)) & 15u) + m;
        v[16 + 4 * j + t] = d * u2f((w >> (8 * t + 4)) & 15u) + m;
      }
    }
  }
};

struct BlockQ5_0 {
  static constexpr int kElems = 32, kBytes = 22;
  static constexpr bool kAligned4 = false;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    const float d = f16_to_f32(ld_u16(b));
    const uint32_t qh = ld_u32<false>(b + 2);
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 4; ++j) {
      const uint32_t w = ld_u32<false>(b + 6 + 4 * j);
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) {
        const int i = 4 * j + t;
        const uint32_t lo = ((w >> (8 * t)) & 15u) | ((qh >> i) & 1u) << 4;
        const uint32_t hi = ((w >> (8 * t + 4)) & 15u) | ((qh >> (i + 16)) & 1u) << 4;
        v[i] = d * (u2f(lo) - 16.f);
        v[16 + i] = d * (u2f(hi) - 16.f);
      }
    }
  }
};

struct BlockQ5_1 {
  static constexpr int kElems = 32, kBytes = 24;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    const uint32_t dm = ld_u32<true>(b);
    const float d = f16_to_f32(dm & 0xffffu), m = f16_to_f32(dm >> 16);
    const uint32_t qh = ld_u32<true>(b + 4);
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 4; ++j) {
      const uint32_t w = ld_u32<true>(b + 8 + 4 * j);
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) {
        const int i = 4 * j + t;
        const uint32_t lo = ((w >> (8 * t)) & 15u) | ((qh >> i) & 1u) << 4;
        const uint32_t hi = ((w >> (8 * t + 4)) & 15u) | ((qh >> (i + 16)) & 1u) << 4;
        v[i] = d * u2f(lo) + m;
        v[16 + i] = d * u2f(hi) + m;
      }
    }
  }
};

struct BlockQ8_0 {
  static constexpr int kElems = 32, kBytes = 34;
  static constexpr bool kAligned4 = false;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    const float d = f16_to_f32(ld_u16(b));
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 8; ++j) {
      // int8 q as (q + 128) unsigned: flip the sign bit of every byte.
      const uint32_t w = ld_u32<false>(b + 2 + 4 * j) ^ 0x80808080u;
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) v[4 * j + t] = (u2f((w >> (8 * t)) & 255u) - 128.f) * d;
    }
  }
};

struct BlockQ2_K {
  static constexpr int kElems = 256, kBytes = 84;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int u, float* v) {
    const uint32_t dd = ld_u32<true>(b + 80);
    const float d = f16_to_f32(dd & 0xffffu), dmin = f16_to_f32(dd >> 16);
    const uint8_t* qs = b + 16 + 32 * (u >> 2);
    const int shift = 2 * (u & 3);
    MLXN_GGUF_UNROLL
    for (int g = 0; g < 2; ++g) {
      const uint32_t sc = ld_u8(b + 2 * u + g);
      const float dl = d * u2f(sc & 15u), ml = dmin * u2f(sc >> 4);
      MLXN_GGUF_UNROLL
      for (int j = 0; j < 4; ++j) {
        const uint32_t w = ld_u32<true>(qs + 16 * g + 4 * j) >> shift;
        MLXN_GGUF_UNROLL
        for (int t = 0; t < 4; ++t) v[16 * g + 4 * j + t] = dl * u2f((w >> (8 * t)) & 3u) - ml;
      }
    }
  }
};

struct BlockQ3_K {
  static constexpr int kElems = 256, kBytes = 110;
  static constexpr bool kAligned4 = false;
  // The 6-bit signed scale of 16-value group j (0..15).
  MLXN_GGUF_HD static int scale(const uint8_t* sc, int j) {
    const uint32_t lo = j < 8 ? ld_u8(sc + j) & 15u : ld_u8(sc + j - 8) >> 4;
    const uint32_t hi = (ld_u8(sc + 8 + (j & 3)) >> (2 * (j >> 2))) & 3u;
    return int(lo | hi << 4) - 32;
  }
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int u, float* v) {
    const float d = f16_to_f32(ld_u16(b + 108));
    const uint8_t* qs = b + 32 + 32 * (u >> 2);
    const int shift = 2 * (u & 3);
    MLXN_GGUF_UNROLL
    for (int g = 0; g < 2; ++g) {
      const float dl = d * float(scale(b + 96, 2 * u + g));
      MLXN_GGUF_UNROLL
      for (int j = 0; j < 4; ++j) {
        const uint32_t w = ld_u32<false>(qs + 16 * g + 4 * j) >> shift;
        const uint32_t h = ld_u32<false>(b + 16 * g + 4 * j) >> u;
        MLXN_GGUF_UNROLL
        for (int t = 0; t < 4; ++t) {
          // q + 4 = low bits + 4 * hbit, in 0..7
          const uint32_t q4 = ((w >> (8 * t)) & 3u) | ((h >> (8 * t)) & 1u) << 2;
          v[16 * g + 4 * j + t] = dl * (u2f(q4) - 4.f);
        }
      }
    }
  }
};

// Sub-block u's 6-bit scale and min of the q4_k / q5_k 12-byte scale field.
MLXN_GGUF_HD void k_scale_min(const uint8_t* s, int u, uint32_t& sc, uint32_t& mn) {
  if (u < 4) {
    sc = ld_u8(s + u) & 63u;
    mn = ld_u8(s + u + 4) & 63u;
  } else {
    sc = (ld_u8(s + u + 4) & 15u) | (ld_u8(s + u - 4) >> 6) << 4;
    mn = (ld_u8(s + u + 4) >> 4) | (ld_u8(s + u) >> 6) << 4;
  }
}

struct BlockQ4_K {
  static constexpr int kElems = 256, kBytes = 144;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int u, float* v) {
    const uint32_t dd = ld_u32<true>(b);
    uint32_t sc, mn;
    k_scale_min(b + 4, u, sc, mn);
    const float dl = f16_to_f32(dd & 0xffffu) * u2f(sc), ml = f16_to_f32(dd >> 16) * u2f(mn);
    const uint8_t* qs = b + 16 + 32 * (u >> 1);
    const int shift = 4 * (u & 1);
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 8; ++j) {
      const uint32_t w = ld_u32<true>(qs + 4 * j) >> shift;
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) v[4 * j + t] = dl * u2f((w >> (8 * t)) & 15u) - ml;
    }
  }
};

struct BlockQ5_K {
  static constexpr int kElems = 256, kBytes = 176;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int u, float* v) {
    const uint32_t dd = ld_u32<true>(b);
    uint32_t sc, mn;
    k_scale_min(b + 4, u, sc, mn);
    const float dl = f16_to_f32(dd & 0xffffu) * u2f(sc), ml = f16_to_f32(dd >> 16) * u2f(mn);
    const uint8_t* qs = b + 48 + 32 * (u >> 1);
    const int shift = 4 * (u & 1);
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 8; ++j) {
      const uint32_t w = ld_u32<true>(qs + 4 * j) >> shift;
      const uint32_t h = ld_u32<true>(b + 16 + 4 * j) >> u;
      MLXN_GGUF_UNROLL
      for (int t = 0; t < 4; ++t) {
        const uint32_t q = ((w >> (8 * t)) & 15u) | ((h >> (8 * t)) & 1u) << 4;
        v[4 * j + t] = dl * u2f(q) - ml;
      }
    }
  }
};

struct BlockQ6_K {
  static constexpr int kElems = 256, kBytes = 210;
  static constexpr bool kAligned4 = false;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int u, float* v) {
    const float d = f16_to_f32(ld_u16(b + 208));
    const int h = u >> 2, s = u & 3;
    const uint8_t* ql = b + 64 * h + 32 * (s & 1);
    const uint8_t* qh = b + 128 + 32 * h;
    const int lshift = 4 * (s >> 1), hshift = 2 * s;
    MLXN_GGUF_UNROLL
    for (int g = 0; g < 2; ++g) {
      const int sc = int(ld_u8(b + 192 + 2 * u + g) ^ 0x80u) - 128;  // int8
      const float dl = d * float(sc);
      MLXN_GGUF_UNROLL
      for (int j = 0; j < 4; ++j) {
        const uint32_t w = ld_u32<false>(ql + 16 * g + 4 * j) >> lshift;
        const uint32_t x = ld_u32<false>(qh + 16 * g + 4 * j) >> hshift;
        MLXN_GGUF_UNROLL
        for (int t = 0; t < 4; ++t) {
          const uint32_t q = ((w >> (8 * t)) & 15u) | ((x >> (8 * t)) & 3u) << 4;
          v[16 * g + 4 * j + t] = dl * (u2f(q) - 32.f);
        }
      }
    }
  }
};

// Plain float weights, seen as blocks of 32 elements (used where a kernel takes any weight).
struct BlockF32 {
  static constexpr int kElems = 32, kBytes = 128;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    MLXN_GGUF_UNROLL
    for (int i = 0; i < 32; ++i) {
      const uint32_t bits = ld_u32<true>(b + 4 * i);
#if defined(__CUDA_ARCH__)
      v[i] = __uint_as_float(bits);
#else
      __builtin_memcpy(&v[i], &bits, 4);
#endif
    }
  }
};

struct BlockF16 {
  static constexpr int kElems = 32, kBytes = 64;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    MLXN_GGUF_UNROLL
    for (int i = 0; i < 32; ++i) v[i] = f16_to_f32(ld_u16(b + 2 * i));
  }
};

struct BlockBF16 {
  static constexpr int kElems = 32, kBytes = 64;
  static constexpr bool kAligned4 = true;
  MLXN_GGUF_HD static void decode32(const uint8_t* b, int /*u*/, float* v) {
    MLXN_GGUF_UNROLL
    for (int i = 0; i < 32; ++i) v[i] = bf16_to_f32(ld_u16(b + 2 * i));
  }
};

// Decodes the 32-value unit `unit` (counted from the start of a row of blocks) of a row.
template <class B>
MLXN_GGUF_HD void decode_unit(const uint8_t* row, int64_t unit, float* v) {
  constexpr int kUnits = B::kElems / 32;
  B::decode32(row + (unit / kUnits) * B::kBytes, int(unit % kUnits), v);
}

// ---- packed decoding for tensor-core operands (device only) --------------------------------
// decode_pairs<B, kF16>(block, u, pr) writes the 32 values of unit u as 16 packed pairs
// pr[i] = (v[2i], v[2i + 1]) of f16 (kF16) or bf16, ready for mma operands. Where a type has
// an entry below, the quants are turned into half-precision numbers without a float detour:
// a quant byte q (< 128) is placed under the exponent of M = 1024 (f16) or 128 (bf16), which
// gives M + q exactly; subtracting M + offset is exact, and one fused multiply-add applies
// the scale (and min), rounding once to the half type (the scales themselves rounded to it
// first). q8_0 to bf16 splits off the sign bit (its quants span 256 values); the float types
// decode to floats and round each value once.
#if defined(__CUDACC__)
}  // namespace mlxn::gguf
#include <cuda_bf16.h>
namespace mlxn::gguf {

template <bool kF16>
struct Half2 {
  using T = std::conditional_t<kF16, __half2, __nv_bfloat162>;
  static __device__ __forceinline__ uint32_t bits(T v) { return *reinterpret_cast<const uint32_t*>(&v); }
  static __device__ __forceinline__ T of(uint32_t b) { return *reinterpret_cast<const T*>(&b); }
  static __device__ __forceinline__ uint32_t splat(float f) {
    if constexpr (kF16)
      return bits(__float2half2_rn(f));
    else
      return bits(__float2bfloat162_rn(f));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    if constexpr (kF16)
      return bits(__floats2half2_rn(lo, hi));
    else
      return bits(__floats2bfloat162_rn(lo, hi));
  }
  static constexpr float kMagic = kF16 ? 1024.f : 128.f;
  static constexpr uint32_t kMagicWord = kF16 ? 0x6400u : 0x4300u;  // M's high byte in byte 1
};

// Scaling of one unit: value = (q - off) * mul + add, as packed constants.
struct PairScale {
  uint32_t sub;  // (M + off, M + off)
  uint32_t mul;
  uint32_t add;
};

template <bool kF16>
__device__ __forceinline__ PairScale pair_scale(float off, float mul, float add) {
  using H = Half2<kF16>;
  return {H::splat(H::kMagic + off), H::splat(mul), H::splat(add)};
}

// Four quant bytes (each < 128) -> two packed pairs (bytes 0, 1) and (bytes 2, 3), scaled.
template <bool kF16>
__device__ __forceinline__ void quad_pairs(uint32_t q4, const PairScale& sc, uint32_t& p01, uint32_t& p23) {
  using H = Half2<kF16>;
  const uint32_t b01 = __byte_perm(q4, H::kMagicWord, 0x5150u);
  const uint32_t b23 = __byte_perm(q4, H::kMagicWord, 0x5352u);
  const auto sub = H::of(sc.sub), mul = H::of(sc.mul), add = H::of(sc.add);
  p01 = H::bits(__hfma2(__hsub2(H::of(b01), sub), mul, add));
  p23 = H::bits(__hfma2(__hsub2(H::of(b23), sub), mul, add));
}

// Each packed decoder works one quad at a time (values 4j .. 4j + 3 of a unit), so that a
// caller can consume every quad as it is made instead of holding the whole unit:
//   Scales setup(block, u)                       the unit's scales (and high bits), packed
//   quad(scales, block, u, j, p01, p23)          (v[4j], v[4j + 1]) and (v[4j + 2], v[4j + 3])
// with j a compile-time constant once unrolled.
template <class B, bool kF16>
struct PairDecoder {
  static constexpr bool kPacked = false;
};

// Quad j of a 32-value nibble block: elements 0..15 are the low nibbles of its 16 bytes,
// 16..31 the high nibbles.
template <bool kAligned4>
__device__ __forceinline__ uint32_t nibble_quad(const uint8_t* qs, int j) {
  const uint32_t w = ld_u32<kAligned4>(qs + 4 * (j & 3));
  return (j < 4 ? w : w >> 4) & 0x0F0F0F0Fu;
}

// Bit i + t of qh moved to bit 4 of byte t, for t = 0..3.
__device__ __forceinline__ uint32_t spread_bits4(uint32_t qh, int i) {
  const uint32_t b = qh >> i;
  return ((b & 1u) | (b & 2u) << 7 | (b & 4u) << 14 | (b & 8u) << 21) << 4;
}

// The scales of a 32-value type with a fifth quant bit per element in a 32-bit field.
struct ScaleHigh {
  PairScale sc;
  uint32_t qh;
};

template <bool kF16>
struct PairDecoder<BlockQ4_0, kF16> {
  static constexpr bool kPacked = true;
  using Scales = PairScale;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int) {
    return pair_scale<kF16>(8.f, f16_to_f32(ld_u16(b)), 0.f);
  }
  static __device__ __forceinline__ void quad(const Scales& sc, const uint8_t* b, int, int j, uint32_t& p01,
                                              uint32_t& p23) {
    quad_pairs<kF16>(nibble_quad<false>(b + 2, j), sc, p01, p23);
  }
};

template <bool kF16>
struct PairDecoder<BlockQ4_1, kF16> {
  static constexpr bool kPacked = true;
  using Scales = PairScale;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int) {
    const uint32_t dm = ld_u32<true>(b);
    return pair_scale<kF16>(0.f, f16_to_f32(dm & 0xffffu), f16_to_f32(dm >> 16));
  }
  static __device__ __forceinline__ void quad(const Scales& sc, const uint8_t* b, int, int j, uint32_t& p01,
                                              uint32_t& p23) {
    quad_pairs<kF16>(nibble_quad<true>(b + 4, j), sc, p01, p23);
  }
};

template <bool kF16>
struct PairDecoder<BlockQ5_0, kF16> {
  static constexpr bool kPacked = true;
  using Scales = ScaleHigh;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int) {
    return {pair_scale<kF16>(16.f, f16_to_f32(ld_u16(b)), 0.f), ld_u32<false>(b + 2)};
  }
  static __device__ __forceinline__ void quad(const Scales& s, const uint8_t* b, int, int j, uint32_t& p01,
                                              uint32_t& p23) {
    quad_pairs<kF16>(nibble_quad<false>(b + 6, j) | spread_bits4(s.qh, 4 * j), s.sc, p01, p23);
  }
};

template <bool kF16>
struct PairDecoder<BlockQ5_1, kF16> {
  static constexpr bool kPacked = true;
  using Scales = ScaleHigh;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int) {
    const uint32_t dm = ld_u32<true>(b);
    return {pair_scale<kF16>(0.f, f16_to_f32(dm & 0xffffu), f16_to_f32(dm >> 16)), ld_u32<true>(b + 4)};
  }
  static __device__ __forceinline__ void quad(const Scales& s, const uint8_t* b, int, int j, uint32_t& p01,
                                              uint32_t& p23) {
    quad_pairs<kF16>(nibble_quad<true>(b + 8, j) | spread_bits4(s.qh, 4 * j), s.sc, p01, p23);
  }
};

// q8_0 to f16: q + 128 spans 0..255, which f16's 1024 + q holds exactly.
template <>
struct PairDecoder<BlockQ8_0, true> {
  static constexpr bool kPacked = true;
  using Scales = PairScale;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int) {
    return pair_scale<true>(128.f, f16_to_f32(ld_u16(b)), 0.f);
  }
  static __device__ __forceinline__ void quad(const Scales& sc, const uint8_t* b, int, int j, uint32_t& p01,
                                              uint32_t& p23) {
    quad_pairs<true>(ld_u32<false>(b + 2 + 4 * j) ^ 0x80808080u, sc, p01, p23);
  }
};

// q8_0 to bf16: q + 128 needs 8 mantissa bits, which bf16 lacks, so the sign bit is split
// off instead: (128 + (q & 127)) - (128 + 128 * sign) = q, both terms exact under the bf16
// magic 128, and so is their difference (an int8). One multiply by d rounds once.
template <>
struct PairDecoder<BlockQ8_0, false> {
  static constexpr bool kPacked = true;
  using H = Half2<false>;
  using Scales = uint32_t;  // (d, d)
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int) { return H::splat(f16_to_f32(ld_u16(b))); }
  static __device__ __forceinline__ void quad(const Scales& d, const uint8_t* b, int, int j, uint32_t& p01,
                                              uint32_t& p23) {
    const uint32_t w = ld_u32<false>(b + 2 + 4 * j);
    const uint32_t mag = w & 0x7F7F7F7Fu, sgn = w & 0x80808080u;
    auto pair = [&](uint32_t sel) {
      const auto q = __hsub2(H::of(__byte_perm(mag, H::kMagicWord, sel)), H::of(__byte_perm(sgn, H::kMagicWord, sel)));
      return H::bits(__hmul2(q, H::of(d)));
    };
    p01 = pair(0x5150u);
    p23 = pair(0x5352u);
  }
};

// K-quants whose units hold two 16-value scale groups: quads 0..3 use the first, 4..7 the
// second.
struct GroupScales {
  PairScale g[2];
};

template <bool kF16>
struct PairDecoder<BlockQ2_K, kF16> {
  static constexpr bool kPacked = true;
  using Scales = GroupScales;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int u) {
    const uint32_t dd = ld_u32<true>(b + 80);
    const float d = f16_to_f32(dd & 0xffffu), dmin = f16_to_f32(dd >> 16);
    Scales s;
    MLXN_GGUF_UNROLL
    for (int g = 0; g < 2; ++g) {
      const uint32_t sc = ld_u8(b + 2 * u + g);
      s.g[g] = pair_scale<kF16>(0.f, d * u2f(sc & 15u), -(dmin * u2f(sc >> 4)));
    }
    return s;
  }
  static __device__ __forceinline__ void quad(const Scales& s, const uint8_t* b, int u, int j, uint32_t& p01,
                                              uint32_t& p23) {
    const uint8_t* qs = b + 16 + 32 * (u >> 2) + 16 * (j >> 2) + 4 * (j & 3);
    quad_pairs<kF16>((ld_u32<true>(qs) >> (2 * (u & 3))) & 0x03030303u, s.g[j >> 2], p01, p23);
  }
};

template <bool kF16>
struct PairDecoder<BlockQ3_K, kF16> {
  static constexpr bool kPacked = true;
  using Scales = GroupScales;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int u) {
    const float d = f16_to_f32(ld_u16(b + 108));
    Scales s;
    MLXN_GGUF_UNROLL
    for (int g = 0; g < 2; ++g) s.g[g] = pair_scale<kF16>(4.f, d * float(BlockQ3_K::scale(b + 96, 2 * u + g)), 0.f);
    return s;
  }
  static __device__ __forceinline__ void quad(const Scales& s, const uint8_t* b, int u, int j, uint32_t& p01,
                                              uint32_t& p23) {
    const int o = 16 * (j >> 2) + 4 * (j & 3);
    const uint32_t lo = (ld_u32<false>(b + 32 + 32 * (u >> 2) + o) >> (2 * (u & 3))) & 0x03030303u;
    const uint32_t hi = ((ld_u32<false>(b + o) >> u) & 0x01010101u) << 2;
    quad_pairs<kF16>(lo | hi, s.g[j >> 2], p01, p23);
  }
};

// The packed scale and min of unit u of a q4_k / q5_k block: value = d * sc * q - dmin * m.
template <bool kF16>
__device__ __forceinline__ PairScale k_pair_scale(const uint8_t* b, int u) {
  const uint32_t dd = ld_u32<true>(b);
  uint32_t s, m;
  k_scale_min(b + 4, u, s, m);
  return pair_scale<kF16>(0.f, f16_to_f32(dd & 0xffffu) * u2f(s), -(f16_to_f32(dd >> 16) * u2f(m)));
}

template <bool kF16>
struct PairDecoder<BlockQ4_K, kF16> {
  static constexpr bool kPacked = true;
  using Scales = PairScale;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int u) { return k_pair_scale<kF16>(b, u); }
  static __device__ __forceinline__ void quad(const Scales& sc, const uint8_t* b, int u, int j, uint32_t& p01,
                                              uint32_t& p23) {
    const uint32_t w = ld_u32<true>(b + 16 + 32 * (u >> 1) + 4 * j) >> (4 * (u & 1));
    quad_pairs<kF16>(w & 0x0F0F0F0Fu, sc, p01, p23);
  }
};

template <bool kF16>
struct PairDecoder<BlockQ5_K, kF16> {
  static constexpr bool kPacked = true;
  using Scales = PairScale;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int u) { return k_pair_scale<kF16>(b, u); }
  static __device__ __forceinline__ void quad(const Scales& sc, const uint8_t* b, int u, int j, uint32_t& p01,
                                              uint32_t& p23) {
    const uint32_t lo = (ld_u32<true>(b + 48 + 32 * (u >> 1) + 4 * j) >> (4 * (u & 1))) & 0x0F0F0F0Fu;
    const uint32_t hi = ((ld_u32<true>(b + 16 + 4 * j) >> u) & 0x01010101u) << 4;
    quad_pairs<kF16>(lo | hi, sc, p01, p23);
  }
};

template <bool kF16>
struct PairDecoder<BlockQ6_K, kF16> {
  static constexpr bool kPacked = true;
  using Scales = GroupScales;
  static __device__ __forceinline__ Scales setup(const uint8_t* b, int u) {
    const float d = f16_to_f32(ld_u16(b + 208));
    Scales s;
    MLXN_GGUF_UNROLL
    for (int g = 0; g < 2; ++g) {
      const int scl = int(ld_u8(b + 192 + 2 * u + g) ^ 0x80u) - 128;  // int8
      s.g[g] = pair_scale<kF16>(32.f, d * float(scl), 0.f);
    }
    return s;
  }
  static __device__ __forceinline__ void quad(const Scales& s, const uint8_t* b, int u, int j, uint32_t& p01,
                                              uint32_t& p23) {
    const int h = u >> 2, sub = u & 3, o = 16 * (j >> 2) + 4 * (j & 3);
    const uint32_t lo = (ld_u32<false>(b + 64 * h + 32 * (sub & 1) + o) >> (4 * (sub >> 1))) & 0x0F0F0F0Fu;
    const uint32_t hi = ((ld_u32<false>(b + 128 + 32 * h + o) >> (2 * sub)) & 0x03030303u) << 4;
    quad_pairs<kF16>(lo | hi, s.g[j >> 2], p01, p23);
  }
};

// The 32 values of unit u of a block as 16 packed pairs.
template <class B, bool kF16>
__device__ __forceinline__ void decode_pairs(const uint8_t* b, int u, uint32_t* pr) {
  using D = PairDecoder<B, kF16>;
  if constexpr (D::kPacked) {
    const auto sc = D::setup(b, u);
    MLXN_GGUF_UNROLL
    for (int j = 0; j < 8; ++j) D::quad(sc, b, u, j, pr[2 * j], pr[2 * j + 1]);
  } else {
    float v[32];
    B::decode32(b, u, v);
    MLXN_GGUF_UNROLL
    for (int i = 0; i < 16; ++i) pr[i] = Half2<kF16>::pack(v[2 * i], v[2 * i + 1]);
  }
}
#endif  // __CUDACC__

}  // namespace mlxn::gguf
