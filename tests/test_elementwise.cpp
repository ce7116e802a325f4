// Elementwise family against float64 references written from the definitions in ops.md §2.
#include <cmath>
#include <limits>

#include "mlxn/ops/elementwise.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

class ElementwiseTest : public BackendTest {};

// y[r, c] = f(a[r, c], b[r, c]) or, with a row vector b, f(a[r, c], b[c]).
template <class F>
std::vector<double> ref_binary(const std::vector<double>& a, const std::vector<double>& b, F f) {
  std::vector<double> y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = f(a[i], b[i % b.size()]);
  return y;
}

// Exact equality, NaN matching NaN (conversions have one right answer).
::testing::AssertionResult identical(const std::vector<double>& actual, const std::vector<double>& ref) {
  if (actual.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << actual.size() << " != " << ref.size();
  for (size_t i = 0; i < ref.size(); ++i) {
    const bool same = (std::isnan(actual[i]) && std::isnan(ref[i])) || actual[i] == ref[i];
    if (!same)
      return ::testing::AssertionFailure() << "element " << i << " is " << actual[i] << ", expected " << ref[i];
  }
  return ::testing::AssertionSuccess();
}

TEST_P(ElementwiseTest, AddAndMulSameShapeAndRowBroadcast) {
  for (DType dt : float_dtypes())
    for (int64_t cols : edge_widths()) {
      const int64_t rows = cols > 4096 ? 2 : 5;
      auto a = random_array(session(), rng(), {rows, cols}, dt, -4, 4);
      auto b = random_array(session(), rng(), {rows, cols}, dt, -4, 4);
      auto row = random_array(session(), rng(), {cols}, dt, -4, 4);
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      const double tol = tolerance(dt);
      auto plus = [](double x, double y) { return x + y; };
      auto times = [](double x, double y) { return x * y; };
      Array out = poisoned(session(), {rows, cols}, dt);
      add(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_binary(a.values, b.values, plus), tol);
      out = poisoned(session(), {rows, cols}, dt);
      mul(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_binary(a.values, b.values, times), tol);
      out = poisoned(session(), {rows, cols}, dt);
      add(session(), a, row, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_binary(a.values, row.values, plus), tol);
      out = poisoned(session(), {rows, cols}, dt);
      mul(session(), a, row, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_binary(a.values, row.values, times), tol);
    }
}

TEST_P(ElementwiseTest, ScaleAndScaleRows) {
  for (DType dt : float_dtypes())
    for (int64_t cols : {int64_t(1), int64_t(33), int64_t(1025), int64_t(4099)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      // [2, 3, cols]: scale_rows sees 6 rows
      auto x = random_array(session(), rng(), {2, 3, cols}, dt, -4, 4);
      auto rs = random_array(session(), rng(), {6}, DType::f32, -2, 2);
      Array out = poisoned(session(), {2, 3, cols}, dt);
      scale(session(), x, out, 0.125f);
      std::vector<double> ref(x.values.size());
      for (size_t i = 0; i < ref.size(); ++i) ref[i] = x.values[i] * 0.125;
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref, tolerance(dt));
      out = poisoned(session(), {2, 3, cols}, dt);
      scale_rows(session(), x, rs, out);
      for (size_t i = 0; i < ref.size(); ++i) ref[i] = x.values[i] * rs.values[i / size_t(cols)];
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref, tolerance(dt));
    }
}

TEST_P(ElementwiseTest, CastEveryFloatPairRoundsToNearestEven) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (DType from : float_dtypes())
    for (DType to : float_dtypes())
      for (int64_t cols : {int64_t(1), int64_t(33), int64_t(4096), int64_t(4099)}) {
        SCOPED_TRACE(::testing::Message() << name(from) << " -> " << name(to) << " cols=" << cols);
        auto x = random_array(session(), rng(), {3, cols}, from, -3, 3);
        std::vector<double> v = x.values;
        // Ties (1 + half an ulp of bf16 / f16 rounds down to even, 1 + 3 halves up), values
        // past f16's range, tiny values, NaN and infinities.
        const std::vector<double> special{1.0 + 0x1p-8,  1.0 + 3 * 0x1p-8,
                                          1.0 + 0x1p-11, 1.0 + 3 * 0x1p-11,
                                          70000.0,       -1e30,
                                          1e-30,         nan,
                                          inf,           -inf,
                                          0.0,           -0.0};
        for (size_t i = 0; i < special.size() && i < v.size(); ++i) v[i] = round_to(from, special[i]);
        Array src = from_values(session(), v, {3, cols}, from);
        Array out = poisoned(session(), {3, cols}, to);
        cast(session(), src, out);
        std::vector<double> ref(v.size());
        for (size_t i = 0; i < v.size(); ++i) ref[i] = round_to(to, v[i]);
        EXPECT_TRUE(identical(host_values(session(), out), ref));
      }
}

TEST_P(ElementwiseTest, CastCopiesIntegers) {
  for (DType dt : {DType::i32, DType::u32})
    for (int64_t cols : {int64_t(1), int64_t(33), int64_t(4099)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      // Values past 2^24 would lose bits through a float.
      const double lo = dt == DType::i32 ? -2e9 : 0, hi = dt == DType::i32 ? 2e9 : 4e9;
      auto x = random_array(session(), rng(), {3, cols}, dt, lo, hi);
      Array out = poisoned(session(), {3, cols}, dt);
      cast(session(), x, out);
      EXPECT_TRUE(identical(host_values(session(), out), x.values));
    }
}

TEST_P(ElementwiseTest, StridedRowsAndInPlace) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const double tol = tolerance(dt);
    for (int64_t pitch : {int64_t(4104), int64_t(4101)}) {
      auto pa = random_array(session(), rng(), {6, pitch}, dt);
      auto pb = random_array(session(), rng(), {6, pitch}, dt);
      Tensor a = pa.tensor().slice(1, 0, 4096), b = pb.tensor().slice(1, 5, 4101);
      Array po = poisoned(session(), {6, pitch}, dt);
      Tensor out = po.tensor().slice(1, 0, 4096);
      const auto av = host_values(session(), a), bv = host_values(session(), b);
      add(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_binary(av, bv, [](double x, double y) { return x + y; }), tol);
      for (double v : host_values(session(), po.tensor().slice(1, 4096, pitch))) ASSERT_TRUE(std::isnan(v));
      // cast between strided views of different dtypes
      Array pc = poisoned(session(), {6, pitch}, DType::f32);
      Tensor c = pc.tensor().slice(1, 0, 4096);
      cast(session(), a, c);
      EXPECT_TRUE(identical(host_values(session(), c), av));
      for (double v : host_values(session(), pc.tensor().slice(1, 4096, pitch))) ASSERT_TRUE(std::isnan(v));
    }
    // In place over either input, and with a broadcast row.
    auto a = random_array(session(), rng(), {7, 1000}, dt);
    auto b = random_array(session(), rng(), {7, 1000}, dt);
    auto row = random_array(session(), rng(), {1000}, dt);
    mul(session(), a, b, a);
    const auto ab = ref_binary(a.values, b.values, [](double x, double y) { return x * y; });
    MLXN_EXPECT_CLOSE(host_values(session(), a), ab, tol);
    add(session(), b, row, b);
    MLXN_EXPECT_CLOSE(host_values(session(), b),
                      ref_binary(b.values, row.values, [](double x, double y) { return x + y; }), tol);
    scale(session(), row, row, -2.f);
    std::vector<double> r2(row.values.size());
    for (size_t i = 0; i < r2.size(); ++i) r2[i] = -2.0 * row.values[i];
    MLXN_EXPECT_CLOSE(host_values(session(), row), r2, tol);
  }
}

TEST_P(ElementwiseTest, EmptyIsANoOp) {
  Array x = Array::empty({0, 64}, DType::f32, device());
  Array out = Array::empty({0, 64}, DType::bf16, device());
  Array row = Array::empty({64}, DType::f32, device());
  Array rs = Array::empty({0}, DType::f32, device());
  EXPECT_NO_THROW(add(session(), x, x, x));
  EXPECT_NO_THROW(mul(session(), x, row, x));
  EXPECT_NO_THROW(scale(session(), x, x, 2.f));
  EXPECT_NO_THROW(scale_rows(session(), x, rs, x));
  EXPECT_NO_THROW(cast(session(), x, out));
}

TEST_P(ElementwiseTest, BadInputsRaise) {
  Session& s = session();
  auto a = random_array(s, rng(), {4, 64}, DType::f32);
  Array out = poisoned(s, {4, 64}, DType::f32);
  Array out_bf = poisoned(s, {4, 64}, DType::bf16);
  Array b_shape = poisoned(s, {4, 63}, DType::f32);
  Array row_bad = poisoned(s, {63}, DType::f32);
  Array row_bf = poisoned(s, {64}, DType::bf16);
  Array xi = Array::empty({4, 64}, DType::i32, device());
  Array xu = Array::empty({4, 64}, DType::u32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "add", add(s, a, b_shape, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "add", add(s, a, row_bad, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "add", add(s, a, a, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "mul", mul(s, a, row_bf, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "mul", mul(s, xi, xi, xi));
  // out overlapping a partially, or the broadcast row it reads on every row
  MLXN_EXPECT_RAISES(InvalidArgument, "add",
                     add(s, a.tensor().slice(0, 0, 3), out.tensor().slice(0, 0, 3), a.tensor().slice(0, 1, 4)));
  MLXN_EXPECT_RAISES(InvalidArgument, "mul", mul(s, out, a.tensor().select(0, 1), a));
  MLXN_EXPECT_RAISES(InvalidArgument, "scale", scale(s, a, out, NAN));
  MLXN_EXPECT_RAISES(InvalidArgument, "scale", scale(s, a, out_bf, 2.f));
  Array rs = poisoned(s, {4}, DType::f32);
  Array rs_bad = poisoned(s, {5}, DType::f32);
  Array rs_bf = poisoned(s, {4}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "scale_rows", scale_rows(s, a, rs_bad, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "scale_rows", scale_rows(s, a, rs_bf, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "scale_rows", scale_rows(s, a, out.tensor().select(1, 0), out));
  // cast: integers only to their own dtype, shapes must match, no overlap across dtypes
  MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, xi, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, a, xi));
  MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, xi, xu));
  MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, a, b_shape));
  Tensor as_bf(a.tensor().data(), DType::bf16, {4, 64}, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, a, as_bf));
  Array i8 = Array::empty({4, 64}, DType::i8, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, i8, i8));
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({4, 64}, DType::f32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "add", add(s, a, elsewhere, out));
    MLXN_EXPECT_RAISES(InvalidArgument, "cast", cast(s, elsewhere, out));
  }
}

MLXN_BACKEND_TESTS(ElementwiseTest);

}  // namespace
}  // namespace mlxn::test
