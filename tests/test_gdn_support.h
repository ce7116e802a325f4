#pragma once
// Input builders and tolerances shared by the gdn test files.
#include <cmath>
#include <optional>
#include <random>
#include <vector>

#include "mlxn/ops/gdn.h"
#include "support/support.h"
#include "test_gdn_ref.h"

namespace mlxn::test::gdn_test {

using gdn_ref::Dims;

// A device array holding `vals` rounded to dt, with exactly the values it holds.
inline TestArray array_of(Session& s, const std::vector<double>& vals, const mlxn::Dims& shape, DType dt) {
  TestArray t;
  t.array = from_values(s, vals, shape, dt);
  t.values = host_values(s, t.array);
  return t;
}

inline std::vector<double> uniform(std::mt19937_64& rng, int64_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = u(rng);
  return v;
}

struct Inputs {
  TestArray q, k, v, g, beta;
};

struct InputSpec {
  bool unit_keys = true;  // normalise q and k rows on the host (else the op's l2 option must)
  double g_lo = -1.0, g_hi = -0.01;
  DType beta_dtype = DType::f32;
};

// q, k [B, T, Hk, K]; v [B, T, H, V] in dt; g [B, T, H] f32 (log decay); beta in (0, 1).
inline Inputs make_inputs(Session& s, std::mt19937_64& rng, const Dims& d, DType dt, const InputSpec& spec = {}) {
  const int64_t tokens = d.B * d.T;
  auto qk = [&] {
    std::vector<double> x = uniform(rng, tokens * d.Hk * d.K, -1, 1);
    if (spec.unit_keys)
      for (int64_t r = 0; r < tokens * d.Hk; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < d.K; ++i) ss += x[size_t(r * d.K + i)] * x[size_t(r * d.K + i)];
        for (int64_t i = 0; i < d.K; ++i) x[size_t(r * d.K + i)] /= std::sqrt(ss + 1e-12);
      }
    return array_of(s, x, {d.B, d.T, d.Hk, d.K}, dt);
  };
  Inputs in;
  in.q = qk();
  in.k = qk();
  in.v = array_of(s, uniform(rng, tokens * d.H * d.V, -1, 1), {d.B, d.T, d.H, d.V}, dt);
  in.g = array_of(s, uniform(rng, tokens * d.H, spec.g_lo, spec.g_hi), {d.B, d.T, d.H}, DType::f32);
  in.beta = array_of(s, uniform(rng, tokens * d.H, 0.05, 1.0), {d.B, d.T, d.H}, spec.beta_dtype);
  return in;
}

inline TestArray random_state(Session& s, std::mt19937_64& rng, int64_t N, const Dims& d) {
  return array_of(s, uniform(rng, N * d.H * d.K * d.V, -0.5, 0.5), {N, d.H, d.K, d.V}, DType::f32);
}

inline TestArray cu_array(Session& s, const std::vector<int32_t>& cu) {
  std::vector<double> v(cu.begin(), cu.end());
  return array_of(s, v, {int64_t(cu.size())}, DType::i32);
}

// Relative-norm tolerance of the delta rule's outputs: the output rounding of the dtype plus
// the half-precision intermediates (Ai, w, u, state) of the tensor-core chunked path.
inline double out_tol(DType dt) {
  switch (dt) {
    case DType::f32:
      return 2e-5;
    case DType::f16:
      return 6e-3;
    default:
      return 3e-2;
  }
}
// The f32 state after a run on inputs of dtype dt.
inline double state_tol(DType dt) { return dt == DType::f32 ? 2e-5 : dt == DType::f16 ? 5e-3 : 2e-2; }

inline std::vector<double> gather_tokens(const std::vector<double>& x, int64_t row, int64_t begin, int64_t n) {
  return {x.begin() + begin * row, x.begin() + (begin + n) * row};
}

}  // namespace mlxn::test::gdn_test
