// Norm family against float64 references written from the definitions in ops.md §1.
#include <cmath>
#include <optional>
#include <utility>

#include "mlxn/ops/norm.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

enum class Stat { rms, l2, layer };
enum class Epi { none, mul, gate, add };

struct RefNorm {
  Stat stat = Stat::rms;
  Epi epi = Epi::none;
  const std::vector<double>* residual = nullptr;
  const std::vector<double>* weight = nullptr;
  const std::vector<double>* bias = nullptr;
  const std::vector<double>* other = nullptr;
  bool offset = false;
  double eps = 1e-6;
};

// y[r, i] from the math; `sum` receives x + residual when a residual is given.
std::vector<double> ref_norm(const std::vector<double>& x, int64_t cols, const RefNorm& p,
                             std::vector<double>* sum = nullptr) {
  std::vector<double> y(x.size());
  const int64_t rows = int64_t(x.size()) / cols;
  if (sum) sum->resize(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> v(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) {
      const size_t k = size_t(r * cols + i);
      v[size_t(i)] = x[k] + (p.residual ? (*p.residual)[k] : 0.0);
      if (sum) (*sum)[k] = v[size_t(i)];
    }
    double mean = 0, ss = 0;
    if (p.stat == Stat::layer) {
      for (double t : v) mean += t;
      mean /= double(cols);
    }
    for (double t : v) ss += (t - mean) * (t - mean);
    const double denom = p.stat == Stat::l2 ? ss : ss / double(cols);
    const double inv = 1.0 / std::sqrt(denom + p.eps);
    for (int64_t i = 0; i < cols; ++i) {
      const size_t k = size_t(r * cols + i);
      double t = (v[size_t(i)] - mean) * inv;
      if (p.weight) t *= p.offset ? 1.0 + (*p.weight)[size_t(i)] : (*p.weight)[size_t(i)];
      if (p.bias) t += (*p.bias)[size_t(i)];
      if (p.epi == Epi::mul) t *= (*p.other)[k];
      if (p.epi == Epi::gate) {
        const double z = (*p.other)[k];
        t *= z / (1.0 + std::exp(-z));
      }
      if (p.epi == Epi::add) t += (*p.other)[k];
      y[k] = t;
    }
  }
  return y;
}

class NormTest : public BackendTest {};

// Rounds a float64 reference to the output dtype, as any implementation must.
std::vector<double> rounded(std::vector<double> v, DType dt) {
  for (auto& x : v) x = round_to(dt, x);
  return v;
}

TEST_P(NormTest, RmsNormEveryDtypeAndWidth) {
  for (DType dt : float_dtypes())
    for (int64_t cols : edge_widths())
      for (int wmode = 0; wmode < 3; ++wmode) {  // no weight, f32 weight, weight in x's dtype
        SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols << " wmode=" << wmode);
        const int64_t rows = cols > 4096 ? 3 : 7;
        auto x = random_array(session(), rng(), {rows, cols}, dt, -2, 2);
        std::optional<TestArray> w;
        if (wmode) w = random_array(session(), rng(), {cols}, wmode == 1 ? DType::f32 : dt, 0.5, 1.5);
        Array out = poisoned(session(), {rows, cols}, dt);
        NormWeight p;
        if (w) p.weight = w->tensor();
        p.offset = wmode == 2;
        p.eps = 1e-5f;
        rms_norm(session(), x, out, p);
        RefNorm ref;
        ref.weight = w ? &w->values : nullptr;
        ref.offset = p.offset;
        ref.eps = 1e-5;
        MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, cols, ref), tolerance(dt));
      }
}

// Many rows take the bandwidth configuration (several chunks per thread; plain 16-bit rows
// held as loaded vectors): 64 rows of 1032 columns (just past the one-chunk limit, a partial
// last chunk), and 2500 rows of 4096, more than one wave of resident blocks on any GPU here.
TEST_P(NormTest, ManyRowsConfiguration) {
  for (DType dt : float_dtypes())
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 1032}, {2500, 4096}}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " rows=" << rows << " cols=" << cols);
      auto x = random_array(session(), rng(), {rows, cols}, dt, -2, 2);
      auto res = random_array(session(), rng(), {rows, cols}, dt, -2, 2);
      auto w = random_array(session(), rng(), {cols}, dt, 0.5, 1.5);
      NormWeight p{w.tensor(), false, 1e-6f};
      RefNorm ref;
      ref.weight = &w.values;
      Array out = poisoned(session(), {rows, cols}, dt);
      rms_norm(session(), x, out, p);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, cols, ref), tolerance(dt));
      out = poisoned(session(), {rows, cols}, dt);
      rms_norm_residual(session(), x, res, out, p);
      ref.residual = &res.values;
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, cols, ref), tolerance(dt));
    }
}

TEST_P(NormTest, FusedVariants) {
  for (DType dt : float_dtypes())
    for (int64_t cols : {int64_t(33), int64_t(4096), int64_t(4099)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      const int64_t rows = 5;
      auto x = random_array(session(), rng(), {rows, cols}, dt, -2, 2);
      auto other = random_array(session(), rng(), {rows, cols}, dt, -2, 2);
      auto w = random_array(session(), rng(), {cols}, dt, 0.5, 1.5);
      NormWeight p{w.tensor(), false, 1e-6f};
      RefNorm ref;
      ref.weight = &w.values;
      ref.other = &other.values;
      const double tol = tolerance(dt);

      Array out = poisoned(session(), {rows, cols}, dt);
      rms_norm_mul(session(), x, other, out, p);
      ref.epi = Epi::mul;
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, cols, ref), tol);

      out = poisoned(session(), {rows, cols}, dt);
      ssm_norm_gate(session(), x, other, out, p);
      ref.epi = Epi::gate;
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, cols, ref), tol);

      out = poisoned(session(), {rows, cols}, dt);
      rms_norm_add(session(), x, other, out, p);
      ref.epi = Epi::add;
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, cols, ref), tol);

      // residual: out = norm(x + res) * w, with and without writing the sum
      out = poisoned(session(), {rows, cols}, dt);
      Array sum = poisoned(session(), {rows, cols}, dt);
      rms_norm_residual(session(), x, other, out, p, sum.tensor());
      RefNorm rr;
      rr.weight = &w.values;
      rr.residual = &other.values;
      std::vector<double> ref_sum;
      const auto ref_y = ref_norm(x.values, cols, rr, &ref_sum);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_y, tol);
      MLXN_EXPECT_CLOSE(host_values(session(), sum), rounded(ref_sum, dt), tol);
      out = poisoned(session(), {rows, cols}, dt);
      rms_norm_residual(session(), x, other, out, p);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_y, tol);
    }
}

TEST_P(NormTest, HeadsL2AndLayerNorm) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const double tol = tolerance(dt);
    // rms_norm_heads: [rows, heads, head_dim], weight [head_dim] and no weight (V-norm)
    auto x = random_array(session(), rng(), {3, 8, 128}, dt, -3, 3);
    auto w = random_array(session(), rng(), {128}, DType::f32, 0.5, 1.5);
    Array out = poisoned(session(), {3, 8, 128}, dt);
    rms_norm_heads(session(), x, out, {w.tensor(), false, 1e-6f});
    RefNorm ref;
    ref.weight = &w.values;
    MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, 128, ref), tol);
    out = poisoned(session(), {3, 8, 128}, dt);
    rms_norm_heads(session(), x, out);
    MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(x.values, 128, RefNorm{}), tol);

    for (int64_t cols : {int64_t(1), int64_t(128), int64_t(1025), int64_t(70000)}) {
      SCOPED_TRACE(cols);
      auto y = random_array(session(), rng(), {4, cols}, dt, -2, 2);
      Array o = poisoned(session(), {4, cols}, dt);
      l2_norm(session(), y, o, 1e-6f);
      RefNorm l2;
      l2.stat = Stat::l2;
      MLXN_EXPECT_CLOSE(host_values(session(), o), ref_norm(y.values, cols, l2), tol);

      // layer norm with an offset mean, so a one-pass variance would lose digits
      auto z = random_array(session(), rng(), {4, cols}, dt, 3, 5);
      auto lw = random_array(session(), rng(), {cols}, dt, 0.5, 1.5);
      auto lb = random_array(session(), rng(), {cols}, dt, -1, 1);
      o = poisoned(session(), {4, cols}, dt);
      layer_norm(session(), z, o, {lw.tensor(), lb.tensor(), 1e-5f});
      RefNorm ln;
      ln.stat = Stat::layer;
      ln.weight = &lw.values;
      ln.bias = &lb.values;
      ln.eps = 1e-5;
      if (cols > 1) {
        MLXN_EXPECT_CLOSE(host_values(session(), o), ref_norm(z.values, cols, ln), tol);
      }
    }
  }
}

TEST_P(NormTest, StridedRowsAndInPlace) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    // x is a column slice of a wider buffer: rows 4104 apart (still 16-byte aligned), and
    // 4101 apart (not aligned: the scalar path).
    for (int64_t pitch : {int64_t(4104), int64_t(4101)}) {
      auto parent = random_array(session(), rng(), {6, pitch}, dt);
      Tensor x = parent.tensor().slice(1, 0, 4096);
      Array out_parent = poisoned(session(), {6, pitch}, dt);
      Tensor out = out_parent.tensor().slice(1, 0, 4096);
      rms_norm(session(), x, out);
      std::vector<double> xv = host_values(session(), x);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_norm(xv, 4096, RefNorm{}), tolerance(dt));
      // The padding columns stay poisoned: nothing outside the view was written.
      auto pad = host_values(session(), out_parent.tensor().slice(1, 4096, pitch));
      for (double v : pad) ASSERT_TRUE(std::isnan(v));
    }
    // In place: out is x.
    auto x = random_array(session(), rng(), {9, 777}, dt);
    rms_norm(session(), x, x);
    MLXN_EXPECT_CLOSE(host_values(session(), x), ref_norm(x.values, 777, RefNorm{}), tolerance(dt));
  }
}

TEST_P(NormTest, EmptyIsANoOp) {
  Array x = Array::empty({0, 64}, DType::f32, device());
  Array out = Array::empty({0, 64}, DType::f32, device());
  EXPECT_NO_THROW(rms_norm(session(), x, out));
  EXPECT_NO_THROW(layer_norm(session(), x, out));
}

TEST_P(NormTest, BadInputsRaise) {
  Session& s = session();
  auto x = random_array(s, rng(), {4, 64}, DType::f32);
  Array out = poisoned(s, {4, 64}, DType::f32);
  Array out_bf = poisoned(s, {4, 64}, DType::bf16);
  Array out_shape = poisoned(s, {4, 63}, DType::f32);
  Array w_bad = poisoned(s, {63}, DType::f32);
  Array w_i32 = Array::empty({64}, DType::i32, device());
  Array w_f16 = Array::empty({64}, DType::f16, device());
  Array xi = Array::empty({4, 64}, DType::i32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out_shape));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out, {w_bad.tensor()}));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out, {w_i32.tensor()}));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out, {w_f16.tensor()}));  // f16 weight for f32 x
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, xi, xi));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out, {std::nullopt, false, -1e-6f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, x, out, {std::nullopt, false, NAN}));
  // partial aliasing: out shifted by one row over x
  Tensor shifted = x.tensor().slice(0, 1, 4);
  Tensor head = x.tensor().slice(0, 0, 3);
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, head, shifted));
  // a transposed view does not collapse into rows
  auto sq = random_array(s, rng(), {64, 64}, DType::f32);
  Array sq_out = poisoned(s, {64, 64}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, sq.tensor().transpose(0, 1), sq_out));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm_heads", rms_norm_heads(s, x, out));  // not 3-D
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_norm_gate", ssm_norm_gate(s, x, out_shape, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm_residual", rms_norm_residual(s, x, out_bf, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "layer_norm", layer_norm(s, x, out, {w_f16.tensor(), std::nullopt, 1e-5f}));
  // a tensor on another device
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({4, 64}, DType::f32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "rms_norm", rms_norm(s, elsewhere, out));
  }
}

MLXN_BACKEND_TESTS(NormTest);

}  // namespace
}  // namespace mlxn::test
