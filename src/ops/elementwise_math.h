#pragma once
// The functors of every elementwise op (families activation and elementwise). One functor is
// one op: the CPU loop (src/cpu/elementwise.h) and the CUDA engine
// (src/cuda/kernels/elementwise.cuh) both apply it, so the two backends share the math.
// Values are float (the integer copies of cast pass their integers through Identity);
// callers round the result to the output dtype. Compiled by g++ and by nvcc: the CUDA
// qualifiers sit behind MLXN_HD, and device code uses the fast hardware exp and divide,
// which are accurate to a few ulp over the ranges these ops meet.
#include <cmath>
#include <type_traits>

#include "ops/simd_exp.h"

#if defined(__CUDACC__)
#define MLXN_HD __host__ __device__ __forceinline__
#else
#define MLXN_HD inline
#endif

namespace mlxn::ew {

// How an elementwise op reads its second operand.
enum class Second : int {
  none,        // y = f(a)
  tensor,      // y = f(a, b); b may be one row broadcast over every row (row stride 0)
  row_scalar,  // y = f(a, s[row]); s is f32 [rows]
};

MLXN_HD float fexp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return simd_exp(x);  // vectorises, unlike std::exp
#endif
}

// a / b; b = +inf gives 0 for finite a on both backends.
MLXN_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdividef(a, b);
#else
  return a / b;
#endif
}

MLXN_HD float ftanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  return std::tanh(x);
#endif
}

MLXN_HD float ferfc(float x) {
#if defined(__CUDA_ARCH__)
  return erfcf(x);
#else
  return std::erfc(x);
#endif
}

MLXN_HD float fclamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// ---- activations -------------------------------------------------------------------------

// x * sigmoid(x). exp(-x) overflows to +inf for x < -88, and x / inf = -0: no NaN.
struct Silu {
  MLXN_HD float operator()(float x) const { return fdiv(x, 1.f + fexp(-x)); }
};

struct Sigmoid {
  MLXN_HD float operator()(float x) const { return fdiv(1.f, 1.f + fexp(-x)); }
};

// 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as x * sigmoid(2u),
// which is the same function without the cancellation of 1 + tanh(u) for negative u.
// u is clamped to [-kClamp, kClamp] first: exp(2 * kClamp) stays finite, so neither a huge
// |x| (where x^3 is inf) nor x = -inf turns exp into inf / inf. At the clamp tanh(u) is 1 to
// far beyond float precision, so the clamp changes no finite result.
struct GeluTanh {
  static constexpr float kSqrt2OverPi = 0.7978845608028654f;
  static constexpr float kCubic = 0.044715f;
  static constexpr float kClamp = 40.f;
  MLXN_HD float operator()(float x) const {
    const float u = fclamp(kSqrt2OverPi * x * (1.f + kCubic * x * x), -kClamp, kClamp);
    return fdiv(x, 1.f + fexp(-2.f * u));
  }
};

// 0.5 x (1 + erf(x / sqrt(2))), the exact form, computed as 0.5 x erfc(-x / sqrt(2)): the same
// function without the cancellation of 1 + erf for negative x (which cost f32 results there
// their relative precision: 1.6e-5 at x = -2.5). x below -20 counts as -20, where the result
// is already -0 in float, so that x = -inf gives -0, not -inf * 0; NaN stays NaN.
struct GeluErf {
  static constexpr float kInvSqrt2 = 0.7071067811865476f;
  MLXN_HD float operator()(float x) const {
    const float xc = x < -20.f ? -20.f : x;
    return 0.5f * xc * ferfc(-xc * kInvSqrt2);
  }
};

// cap * tanh(x / cap), cap > 0 (checked by the frontend).
struct Softcap {
  float cap = 1.f, inv_cap = 1.f;
  Softcap() = default;
  explicit Softcap(float c) : cap(c), inv_cap(1.f / c) {}
  MLXN_HD float operator()(float x) const { return cap * ftanh(x * inv_cap); }
};

// act(gate) * up: SwiGLU (Silu), GeGLU (GeluTanh, GeluErf).
template <class Act>
struct ActMul {
  Act act{};
  MLXN_HD float operator()(float gate, float up) const { return act(gate) * up; }
};
using SiluMul = ActMul<Silu>;
using GeluTanhMul = ActMul<GeluTanh>;
using GeluErfMul = ActMul<GeluErf>;
// The gate's activation of moe_glu and moe_experts (GluKind silu or gelu_tanh).
template <bool kGelu>
using GluAct = std::conditional_t<kGelu, GeluTanh, Silu>;

// x * sigmoid(g)
struct SigmoidMul {
  MLXN_HD float operator()(float x, float g) const { return x * Sigmoid{}(g); }
};

// ---- arithmetic --------------------------------------------------------------------------

struct Add {
  MLXN_HD float operator()(float a, float b) const { return a + b; }
};

struct Mul {
  MLXN_HD float operator()(float a, float b) const { return a * b; }
};

struct Scale {
  float factor = 1.f;
  MLXN_HD float operator()(float x) const { return x * factor; }
};

// cast: the conversion is the engine's load and store; integers pass through untouched.
struct Identity {
  template <class V>
  MLXN_HD V operator()(V v) const {
    return v;
  }
};

}  // namespace mlxn::ew
