// Activation family against float64 references written from the definitions in ops.md §2.
#include <cmath>
#include <functional>

#include "mlxn/ops/activation.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

double ref_silu(double x) { return x / (1.0 + std::exp(-x)); }
double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double ref_gelu_tanh(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}
double ref_gelu_erf(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

std::vector<double> map(const std::vector<double>& x, const std::function<double(double)>& f) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = f(x[i]);
  return y;
}

std::vector<double> zip(const std::vector<double>& a, const std::vector<double>& b,
                        const std::function<double(double, double)>& f) {
  std::vector<double> y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = f(a[i], b[i]);
  return y;
}

// The columns [c0, c1) of a row-major [rows, cols] matrix.
std::vector<double> columns(const std::vector<double>& v, int64_t cols, int64_t c0, int64_t c1) {
  std::vector<double> out;
  for (size_t r = 0; r < v.size() / size_t(cols); ++r)
    for (int64_t c = c0; c < c1; ++c) out.push_back(v[r * size_t(cols) + size_t(c)]);
  return out;
}

struct UnaryCase {
  const char* name;
  std::function<void(Session&, const Tensor&, const Tensor&)> run;
  std::function<double(double)> ref;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"gelu_tanh", [](Session& s, const Tensor& x, const Tensor& y) { gelu(s, x, y); }, ref_gelu_tanh},
      {"gelu_erf", [](Session& s, const Tensor& x, const Tensor& y) { gelu(s, x, y, GeluApprox::erf); }, ref_gelu_erf},
      {"silu", [](Session& s, const Tensor& x, const Tensor& y) { silu(s, x, y); }, ref_silu},
      {"sigmoid", [](Session& s, const Tensor& x, const Tensor& y) { sigmoid(s, x, y); }, ref_sigmoid},
      {"softcap", [](Session& s, const Tensor& x, const Tensor& y) { softcap(s, x, y, 2.5f); },
       [](double x) { return 2.5 * std::tanh(x / 2.5); }},
  };
}

// (first, second) -> y for the gated forms, as two tensors and as one fused buffer.
struct GatedCase {
  const char* name;
  std::function<void(Session&, const Tensor&, const Tensor&, const Tensor&)> run;
  std::function<void(Session&, const Tensor&, const Tensor&)> run_fused;
  std::function<double(double, double)> ref;
};

std::vector<GatedCase> gated_cases() {
  return {
      {"silu_mul", [](Session& s, const Tensor& g, const Tensor& u, const Tensor& y) { silu_mul(s, g, u, y); },
       [](Session& s, const Tensor& gu, const Tensor& y) { silu_mul(s, gu, y); },
       [](double g, double u) { return ref_silu(g) * u; }},
      {"gelu_mul_tanh", [](Session& s, const Tensor& g, const Tensor& u, const Tensor& y) { gelu_mul(s, g, u, y); },
       [](Session& s, const Tensor& gu, const Tensor& y) { gelu_mul(s, gu, y); },
       [](double g, double u) { return ref_gelu_tanh(g) * u; }},
      {"gelu_mul_erf",
       [](Session& s, const Tensor& g, const Tensor& u, const Tensor& y) { gelu_mul(s, g, u, y, GeluApprox::erf); },
       [](Session& s, const Tensor& gu, const Tensor& y) { gelu_mul(s, gu, y, GeluApprox::erf); },
       [](double g, double u) { return ref_gelu_erf(g) * u; }},
      {"sigmoid_mul", [](Session& s, const Tensor& x, const Tensor& g, const Tensor& y) { sigmoid_mul(s, x, g, y); },
       [](Session& s, const Tensor& xg, const Tensor& y) { sigmoid_mul(s, xg, y); },
       [](double x, double g) { return x * ref_sigmoid(g); }},
  };
}

class ActivationTest : public BackendTest {};

TEST_P(ActivationTest, UnaryEveryDtypeAndWidth) {
  for (DType dt : float_dtypes())
    for (int64_t cols : edge_widths()) {
      const int64_t rows = cols > 4096 ? 2 : 5;
      auto x = random_array(session(), rng(), {rows, cols}, dt, -6, 6);
      for (const UnaryCase& c : unary_cases()) {
        SCOPED_TRACE(::testing::Message() << c.name << " " << name(dt) << " cols=" << cols);
        Array out = poisoned(session(), {rows, cols}, dt);
        c.run(session(), x, out);
        MLXN_EXPECT_CLOSE(host_values(session(), out), map(x.values, c.ref), tolerance(dt));
      }
    }
}

TEST_P(ActivationTest, GatedEveryDtypeAndWidth) {
  for (DType dt : float_dtypes())
    for (int64_t cols :
         {int64_t(1), int64_t(31), int64_t(32), int64_t(33), int64_t(1025), int64_t(4096), int64_t(4099)}) {
      const int64_t rows = 5;
      auto a = random_array(session(), rng(), {rows, cols}, dt, -5, 5);
      auto b = random_array(session(), rng(), {rows, cols}, dt, -3, 3);
      for (const GatedCase& c : gated_cases()) {
        SCOPED_TRACE(::testing::Message() << c.name << " " << name(dt) << " cols=" << cols);
        Array out = poisoned(session(), {rows, cols}, dt);
        c.run(session(), a, b, out);
        MLXN_EXPECT_CLOSE(host_values(session(), out), zip(a.values, b.values, c.ref), tolerance(dt));
      }
    }
}

TEST_P(ActivationTest, FusedGateUpBuffer) {
  for (DType dt : float_dtypes())
    // n = 8 and 4096 keep both halves 16-byte aligned; 1, 33 and 4099 do not.
    for (int64_t n : {int64_t(1), int64_t(8), int64_t(33), int64_t(4096), int64_t(4099)}) {
      const int64_t rows = 4;
      auto gu = random_array(session(), rng(), {rows, 2 * n}, dt, -5, 5);
      const auto first = columns(gu.values, 2 * n, 0, n), second = columns(gu.values, 2 * n, n, 2 * n);
      for (const GatedCase& c : gated_cases()) {
        SCOPED_TRACE(::testing::Message() << c.name << " fused " << name(dt) << " n=" << n);
        Array out = poisoned(session(), {rows, n}, dt);
        c.run_fused(session(), gu, out);
        MLXN_EXPECT_CLOSE(host_values(session(), out), zip(first, second, c.ref), tolerance(dt));
      }
    }
  // Leading dims [2, 3] collapse into 6 rows.
  auto gu = random_array(session(), rng(), {2, 3, 2 * 40}, DType::bf16, -4, 4);
  Array out = poisoned(session(), {2, 3, 40}, DType::bf16);
  silu_mul(session(), gu, out);
  MLXN_EXPECT_CLOSE(host_values(session(), out),
                    zip(columns(gu.values, 80, 0, 40), columns(gu.values, 80, 40, 80),
                        [](double g, double u) { return ref_silu(g) * u; }),
                    tolerance(DType::bf16));
}

// |x| up to 100: exp(-x) overflows float for x < -88, and the tanh argument of gelu grows
// like x^3; neither may turn into NaN or inf.
TEST_P(ActivationTest, LargeMagnitudesStayFinite) {
  for (DType dt : float_dtypes()) {
    const int64_t cols = 1000;
    auto x = random_array(session(), rng(), {3, cols}, dt, -100, 100);
    std::vector<double> edges{-100, -89, -88, -87, -30, -10, 0, 10, 30, 87, 88, 89, 100};
    edges.resize(size_t(3 * cols), 0.0);
    for (size_t i = 0; i < edges.size(); ++i) edges[i] = i < 13 ? edges[i] : x.values[i];
    Array xe = from_values(session(), edges, {3, cols}, dt);
    for (const UnaryCase& c : unary_cases()) {
      SCOPED_TRACE(::testing::Message() << c.name << " " << name(dt));
      Array out = poisoned(session(), {3, cols}, dt);
      c.run(session(), xe, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), map(edges, c.ref), tolerance(dt));
    }
    auto up = random_array(session(), rng(), {3, cols}, dt, -100, 100);
    for (const GatedCase& c : gated_cases()) {
      SCOPED_TRACE(::testing::Message() << c.name << " " << name(dt));
      Array out = poisoned(session(), {3, cols}, dt);
      c.run(session(), xe, up, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), zip(edges, up.values, c.ref), tolerance(dt));
    }
  }
}

TEST_P(ActivationTest, StridedRowsAndInPlace) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const double tol = tolerance(dt);
    // Column slices of wider buffers: rows 4104 apart (16-byte aligned) and 4101 apart (not).
    for (int64_t pitch : {int64_t(4104), int64_t(4101)}) {
      auto parent = random_array(session(), rng(), {6, pitch}, dt, -4, 4);
      auto parent2 = random_array(session(), rng(), {6, pitch}, dt, -4, 4);
      Tensor x = parent.tensor().slice(1, 0, 4096), u = parent2.tensor().slice(1, 3, 4099);
      Array out_parent = poisoned(session(), {6, pitch}, dt);
      Tensor out = out_parent.tensor().slice(1, 0, 4096);
      const auto xv = host_values(session(), x), uv = host_values(session(), u);
      gelu(session(), x, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), map(xv, ref_gelu_tanh), tol);
      silu_mul(session(), x, u, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), zip(xv, uv, [](double g, double v) { return ref_silu(g) * v; }),
                        tol);
      // Nothing outside the view was written.
      for (double v : host_values(session(), out_parent.tensor().slice(1, 4096, pitch))) ASSERT_TRUE(std::isnan(v));
    }
    // In place: out is the input.
    auto x = random_array(session(), rng(), {9, 777}, dt, -4, 4);
    silu(session(), x, x);
    MLXN_EXPECT_CLOSE(host_values(session(), x), map(x.values, ref_silu), tol);
    auto g = random_array(session(), rng(), {9, 777}, dt, -4, 4);
    auto v = random_array(session(), rng(), {9, 777}, dt, -4, 4);
    sigmoid_mul(session(), g, v, v);
    MLXN_EXPECT_CLOSE(host_values(session(), v),
                      zip(g.values, v.values, [](double a, double b) { return a * ref_sigmoid(b); }), tol);
    // Fused form written over its own gate half, and over its up half.
    for (int half = 0; half < 2; ++half) {
      auto gu = random_array(session(), rng(), {5, 2 * 1024}, dt, -4, 4);
      const Tensor target = gu.tensor().slice(1, half * 1024, (half + 1) * 1024);
      silu_mul(session(), gu, target);
      MLXN_EXPECT_CLOSE(host_values(session(), target),
                        zip(columns(gu.values, 2048, 0, 1024), columns(gu.values, 2048, 1024, 2048),
                            [](double a, double b) { return ref_silu(a) * b; }),
                        tol);
    }
  }
}

TEST_P(ActivationTest, EmptyIsANoOp) {
  Array x = Array::empty({0, 64}, DType::bf16, device());
  Array out = Array::empty({0, 64}, DType::bf16, device());
  Array gu = Array::empty({0, 128}, DType::bf16, device());
  Array z = Array::empty({4, 0}, DType::bf16, device());
  EXPECT_NO_THROW(gelu(session(), x, out));
  EXPECT_NO_THROW(silu_mul(session(), x, x, out));
  EXPECT_NO_THROW(silu_mul(session(), gu, out));
  EXPECT_NO_THROW(silu_mul(session(), z, z));
  EXPECT_NO_THROW(softcap(session(), z, z, 30.f));
}

TEST_P(ActivationTest, BadInputsRaise) {
  Session& s = session();
  auto x = random_array(s, rng(), {4, 64}, DType::f32);
  Array out = poisoned(s, {4, 64}, DType::f32);
  Array out_bf = poisoned(s, {4, 64}, DType::bf16);
  Array out_shape = poisoned(s, {4, 63}, DType::f32);
  Array xi = Array::empty({4, 64}, DType::i32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "gelu", gelu(s, x, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "gelu", gelu(s, x, out_shape, GeluApprox::erf));
  MLXN_EXPECT_RAISES(InvalidArgument, "silu", silu(s, xi, xi));
  MLXN_EXPECT_RAISES(InvalidArgument, "sigmoid", sigmoid(s, x, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "softcap", softcap(s, x, out, 0.f));
  MLXN_EXPECT_RAISES(InvalidArgument, "softcap", softcap(s, x, out, -30.f));
  MLXN_EXPECT_RAISES(InvalidArgument, "softcap", softcap(s, x, out, NAN));
  MLXN_EXPECT_RAISES(InvalidArgument, "softcap", softcap(s, x, out, INFINITY));
  // partial aliasing: out shifted by one row over x
  MLXN_EXPECT_RAISES(InvalidArgument, "silu", silu(s, x.tensor().slice(0, 0, 3), x.tensor().slice(0, 1, 4)));
  // gated: second input of another shape or dtype, or overlapping out
  MLXN_EXPECT_RAISES(InvalidArgument, "silu_mul", silu_mul(s, x, out_shape, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gelu_mul", gelu_mul(s, x, out_bf, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "sigmoid_mul",
                     sigmoid_mul(s, x.tensor().slice(0, 0, 3), out.tensor().slice(0, 0, 3), x.tensor().slice(0, 1, 4)));
  // fused: odd width, wrong output shape or dtype, out overlapping both halves
  auto gu = random_array(s, rng(), {4, 128}, DType::f32);
  Array odd = poisoned(s, {4, 127}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "silu_mul_fused", silu_mul(s, odd, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gelu_mul_fused", gelu_mul(s, gu, out_shape));
  MLXN_EXPECT_RAISES(InvalidArgument, "sigmoid_mul_fused", sigmoid_mul(s, gu, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "silu_mul_fused", silu_mul(s, gu, gu.tensor().slice(1, 32, 96)));
  // a transposed view does not collapse into rows
  auto sq = random_array(s, rng(), {64, 64}, DType::f32);
  Array sq_out = poisoned(s, {64, 64}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "silu", silu(s, sq.tensor().transpose(0, 1), sq_out));
  // a tensor on another device
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({4, 64}, DType::f32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "silu", silu(s, elsewhere, out));
    MLXN_EXPECT_RAISES(InvalidArgument, "silu_mul", silu_mul(s, x, elsewhere, out));
  }
}

MLXN_BACKEND_TESTS(ActivationTest);

}  // namespace
}  // namespace mlxn::test
