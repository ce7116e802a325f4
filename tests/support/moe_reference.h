#pragma once
// The float64 reference of the routed experts (moe_experts, moe_layer) and the helpers their
// tests share: expert stacks, routings, error measures and tolerances.
#include <cmath>
#include <random>
#include <vector>

#include "mlxn/ops/moe_experts.h"
#include "support/mlx_quant_matrix.h"
#include "support/support.h"

namespace mlxn::test {

// The experts stacks of the tests: MLX matrices [E, N, K] with each group's weights spanning
// zero (Biases::centred), so that silu and gelu_tanh stay distinguishable (|g| ~ 3, not ~10).
inline QMatrix random_stack(Session& ses, std::mt19937_64& rng, int64_t e, int64_t n, int64_t k, MlxQuant q,
                            DType sdt) {
  return random_qmatrix(ses, rng, e, n, k, q, sdt, Biases::centred);
}

// One layer's expert stacks: gate and up [E, I, D], down [E, D, I].
struct ExpertStacks {
  QMatrix gate, up, down;
};
inline ExpertStacks random_experts(Session& ses, std::mt19937_64& rng, int64_t e, int64_t d, int64_t i, MlxQuant q,
                                   DType sdt) {
  ExpertStacks x;
  x.gate = random_stack(ses, rng, e, i, d, q, sdt);
  x.up = random_stack(ses, rng, e, i, d, q, sdt);
  x.down = random_stack(ses, rng, e, d, i, q, sdt);
  return x;
}

inline QuantizedExperts view(const QMatrix& m) { return {m.packed, m.scales, m.biases}; }

struct Routing {
  std::vector<double> ids, weights;  // [T, top_k]
};

inline double ref_gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// out[t] = sum_j w[t, j] * down_e(act(gate_e x[t]) * up_e x[t]) in float64 (no residual); a slot
// whose id lies outside [0, E) contributes nothing (what CUDA does with it).
inline std::vector<double> ref_experts(const std::vector<double>& x, const QMatrix& gate, const QMatrix& up,
                                       const QMatrix& down, GluKind act, const Routing& r, int64_t top_k) {
  const int64_t D = gate.k, I = gate.n, T = int64_t(r.ids.size()) / top_k;
  std::vector<double> out(static_cast<size_t>(T * D), 0.0);
  std::vector<double> h(static_cast<size_t>(I));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < top_k; ++j) {
      const double id = r.ids[size_t(t * top_k + j)];
      if (!(id >= 0 && id < double(gate.experts))) continue;
      const int64_t e = int64_t(id);
      const double* xt = x.data() + t * D;
      for (int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (int64_t d = 0; d < D; ++d) {
          g += gate.exact(e, i, d) * xt[d];
          u += up.exact(e, i, d) * xt[d];
        }
        h[size_t(i)] = (act == GluKind::silu ? g / (1.0 + std::exp(-g)) : ref_gelu_tanh(g)) * u;
      }
      for (int64_t d = 0; d < D; ++d) {
        double y = 0;
        for (int64_t i = 0; i < I; ++i) y += down.exact(e, d, i) * h[size_t(i)];
        out[size_t(t * D + d)] += r.weights[size_t(t * top_k + j)] * y;
      }
    }
  return out;
}

inline std::vector<double> plus(std::vector<double> a, const std::vector<double>& b) {
  for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
  return a;
}

inline double rms(const std::vector<double>& v) {
  double sum = 0;
  for (double e : v) sum += e * e;
  return std::sqrt(sum / double(v.size()));
}

// ||a - ref|| / ||ref||: the measure MLXN_EXPECT_CLOSE applies.
inline double rel_err(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// Relative-norm tolerance. f32 keeps every intermediate in f32: a single matmul's 2e-5
// (mm_tol in test_quant_mlx.cpp) covers three accumulations of ~3e-7 each. In 16 bits the gate/up
// outputs (four ops) or the activations (fused) are rounded to x's dtype, then the down outputs
// and the sum: a few roundings of 2^-9 (bf16) or 2^-11 (f16), measured ~0.004 and ~0.0005 on the
// CPU, inside twice the single-rounding tolerance.
inline double experts_tol(DType xdt) { return xdt == DType::f32 ? 2e-5 : 2 * tolerance(xdt); }

// Where a test's residual lives: none, a separate array, or out itself.
enum class Residual { none, separate, in_place };

}  // namespace mlxn::test
