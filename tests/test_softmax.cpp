// Softmax against a float64 reference written from the definition in ops.md §2.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "mlxn/ops/softmax.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct RefSoftmax {
  double scale = 1.0;
  double softcap = 0.0;
  const std::vector<double>* mask = nullptr;  // [mask_rows, cols]
  int64_t mask_rows = 1;
};

// y = exp(t - max t) / sum exp(t - max t), t = cap(x * scale) + mask; all -inf rows -> 0.
std::vector<double> ref_softmax(const std::vector<double>& x, int64_t cols, const RefSoftmax& p) {
  std::vector<double> y(x.size());
  const int64_t rows = cols ? int64_t(x.size()) / cols : 0;
  std::vector<double> t(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -kInf;
    for (int64_t i = 0; i < cols; ++i) {
      double v = x[size_t(r * cols + i)] * p.scale;
      if (p.softcap > 0) v = p.softcap * std::tanh(v / p.softcap);
      if (p.mask) v += (*p.mask)[size_t((r % p.mask_rows) * cols + i)];
      t[size_t(i)] = v;
      mx = std::max(mx, v);
    }
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) sum += mx == -kInf ? 0.0 : std::exp(t[size_t(i)] - mx);
    for (int64_t i = 0; i < cols; ++i) y[size_t(r * cols + i)] = mx == -kInf ? 0.0 : std::exp(t[size_t(i)] - mx) / sum;
  }
  return y;
}

class SoftmaxTest : public BackendTest {};

TEST_P(SoftmaxTest, EveryDtypeAndWidth) {
  for (DType dt : float_dtypes()) {
    std::vector<int64_t> widths = edge_widths();
    widths.push_back(32000);  // near the widest rows kept in registers
    for (int64_t cols : widths) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      const int64_t rows = cols > 4096 ? 3 : 37;  // 37: several warp-per-row blocks, one partial
      auto x = random_array(session(), rng(), {rows, cols}, dt, -4, 4);
      Array out = poisoned(session(), {rows, cols}, dt);
      softmax(session(), x, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_softmax(x.values, cols, {}), tolerance(dt));
    }
  }
}

TEST_P(SoftmaxTest, ScaleSoftcapAndLargeLogits) {
  for (DType dt : float_dtypes())
    for (int64_t cols : {int64_t(33), int64_t(1025), int64_t(4099), int64_t(20000), int64_t(70000)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      // logits up to +-400 after scaling: exp overflows unless the max is subtracted
      auto x = random_array(session(), rng(), {3, cols}, dt, -100, 100);
      Array out = poisoned(session(), {3, cols}, dt);
      softmax(session(), x, out, {4.f, std::nullopt, 0.f});
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_softmax(x.values, cols, {4.0, 0.0}), tolerance(dt));
      out = poisoned(session(), {3, cols}, dt);
      softmax(session(), x, out, {0.125f, std::nullopt, 5.f});
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_softmax(x.values, cols, {0.125, 5.0}), tolerance(dt));
    }
}

TEST_P(SoftmaxTest, MaskSharedByRowsWithInfinities) {
  for (DType dt : float_dtypes())
    for (DType mdt : {DType::f32, dt})
      for (int64_t cols :
           {int64_t(1), int64_t(32), int64_t(33), int64_t(1025), int64_t(4099), int64_t(20000), int64_t(70000)}) {
        SCOPED_TRACE(::testing::Message() << name(dt) << " mask " << name(mdt) << " cols=" << cols);
        const int64_t mask_rows = 3, rows = 6;  // [2 heads, 3 queries, cols] scores, [3, cols] mask
        auto x = random_array(session(), rng(), {2, mask_rows, cols}, dt, -3, 3);
        std::vector<double> mv(static_cast<size_t>(mask_rows * cols));
        std::mt19937_64& g = rng();
        std::uniform_real_distribution<double> u(-2, 2);
        for (int64_t r = 0; r < mask_rows; ++r)
          for (int64_t i = 0; i < cols; ++i) {
            double v = round_to(mdt, u(g));
            if (r == 0 && i > cols / 2) v = -kInf;  // causal-like: half the columns removed
            if (r == 1 && i % 3 == 1) v = -kInf;
            if (r == 2) v = -kInf;  // a fully masked row -> zeros
            mv[size_t(r * cols + i)] = v;
          }
        Array mask = from_values(session(), mv, {mask_rows, cols}, mdt);
        Array out = poisoned(session(), {2, mask_rows, cols}, dt);
        softmax(session(), x, out, {0.5f, mask.tensor(), 0.f});
        RefSoftmax ref{0.5, 0.0, &mv, mask_rows};
        const auto y = host_values(session(), out);
        MLXN_EXPECT_CLOSE(y, ref_softmax(x.values, cols, ref), tolerance(dt));
        for (int64_t r = 0; r < rows; ++r) {
          if (r % mask_rows != 2) continue;
          for (int64_t i = 0; i < cols; ++i) {
            ASSERT_EQ(y[size_t(r * cols + i)], 0.0) << "row " << r;
          }
        }
        // a [cols] mask applies to every row, with softcap too
        auto mrow = random_array(session(), rng(), {cols}, mdt, -1, 1);
        out = poisoned(session(), {2, mask_rows, cols}, dt);
        softmax(session(), x, out, {1.f, mrow.tensor(), 2.f});
        MLXN_EXPECT_CLOSE(host_values(session(), out), ref_softmax(x.values, cols, {1.0, 2.0, &mrow.values, 1}),
                          tolerance(dt));
      }
}

TEST_P(SoftmaxTest, StridedRowsAndInPlace) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    for (int64_t pitch : {int64_t(4104), int64_t(4101)}) {  // aligned rows, unaligned rows
      auto parent = random_array(session(), rng(), {5, pitch}, dt, -3, 3);
      Tensor x = parent.tensor().slice(1, 0, 4096);
      Array out_parent = poisoned(session(), {5, pitch}, dt);
      Tensor out = out_parent.tensor().slice(1, 0, 4096);
      auto mparent = random_array(session(), rng(), {5, pitch}, DType::f32, -1, 1);
      Tensor mask = mparent.tensor().slice(1, 0, 4096);
      softmax(session(), x, out, {1.f, mask, 0.f});
      const auto xv = host_values(session(), x), mv = host_values(session(), mask);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_softmax(xv, 4096, {1.0, 0.0, &mv, 5}), tolerance(dt));
      for (double v : host_values(session(), out_parent.tensor().slice(1, 4096, pitch))) ASSERT_TRUE(std::isnan(v));
    }
    for (int64_t cols : {int64_t(100), int64_t(3000), int64_t(40000)}) {
      auto x = random_array(session(), rng(), {3, cols}, dt, -3, 3);
      softmax(session(), x, x);
      MLXN_EXPECT_CLOSE(host_values(session(), x), ref_softmax(x.values, cols, {}), tolerance(dt));
    }
  }
}

TEST_P(SoftmaxTest, EmptyIsANoOp) {
  Array x = Array::empty({0, 64}, DType::f32, device());
  Array out = Array::empty({0, 64}, DType::f32, device());
  EXPECT_NO_THROW(softmax(session(), x, out));
  Array mask = Array::empty({5, 64}, DType::f32, device());
  EXPECT_NO_THROW(softmax(session(), x, out, {1.f, mask.tensor(), 0.f}));
}

TEST_P(SoftmaxTest, BadInputsRaise) {
  Session& s = session();
  auto x = random_array(s, rng(), {6, 64}, DType::f32);
  Array out = poisoned(s, {6, 64}, DType::f32);
  Array out_bf = poisoned(s, {6, 64}, DType::bf16);
  Array out_shape = poisoned(s, {6, 63}, DType::f32);
  Array xi = Array::empty({6, 64}, DType::i32, device());
  Array m4 = poisoned(s, {4, 64}, DType::f32);  // 4 does not divide 6
  Array mcols = poisoned(s, {63}, DType::f32);
  Array mf16 = poisoned(s, {64}, DType::f16);  // neither f32 nor x's dtype
  Array m3d = poisoned(s, {1, 3, 64}, DType::f32);
  Array m0 = Array::empty({0, 64}, DType::f32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out_shape));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, xi, xi));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, m4.tensor(), 0.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, mcols.tensor(), 0.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, mf16.tensor(), 0.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, m3d.tensor(), 0.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, m0.tensor(), 0.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, std::nullopt, -1.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, std::nullopt, NAN}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {INFINITY, std::nullopt, 0.f}));
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {NAN, std::nullopt, 0.f}));
  // the mask may not overlap the output
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, out.tensor(), 0.f}));
  // partial aliasing of x and out
  MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x.tensor().slice(0, 0, 5), x.tensor().slice(0, 1, 6)));
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({64}, DType::f32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "softmax", softmax(s, x, out, {1.f, elsewhere.tensor(), 0.f}));
  }
}

MLXN_BACKEND_TESTS(SoftmaxTest);

}  // namespace
}  // namespace mlxn::test
