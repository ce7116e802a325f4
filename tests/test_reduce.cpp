// Reduce family (cumsum, argmax, argsort, top_k) against references written from the
// definitions in include/mlxn/ops/reduce.h: NaN ranks above everything, -0 == +0, ties go
// to the lowest index.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "mlxn/ops/reduce.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// a ranks strictly above b.
bool above(double a, double b) {
  if (std::isnan(a)) return !std::isnan(b);
  if (std::isnan(b)) return false;
  return a > b;
}

std::vector<double> ref_cumsum(const std::vector<double>& x, int64_t cols) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / size_t(cols); ++r) {
    double acc = 0;
    for (int64_t i = 0; i < cols; ++i) y[r * size_t(cols) + size_t(i)] = acc += x[r * size_t(cols) + size_t(i)];
  }
  return y;
}

std::vector<double> ref_argmax(const std::vector<double>& x, int64_t cols) {
  std::vector<double> y(x.size() / size_t(cols));
  for (size_t r = 0; r < y.size(); ++r) {
    int64_t best = 0;
    for (int64_t i = 1; i < cols; ++i)
      if (above(x[r * size_t(cols) + size_t(i)], x[r * size_t(cols) + size_t(best)])) best = i;
    y[r] = double(best);
  }
  return y;
}

// The first k indices of each row's stable descending order (k = cols: argsort).
std::vector<double> ref_order(const std::vector<double>& x, int64_t cols, int64_t k) {
  std::vector<double> y;
  for (size_t r = 0; r < x.size() / size_t(cols); ++r) {
    const double* row = x.data() + r * size_t(cols);
    std::vector<int64_t> idx(static_cast<size_t>(cols));
    std::iota(idx.begin(), idx.end(), int64_t(0));
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return above(row[a], row[b]); });
    for (int64_t j = 0; j < k; ++j) y.push_back(double(idx[size_t(j)]));
  }
  return y;
}

// Row-major values gathered by per-row indices.
std::vector<double> gather(const std::vector<double>& x, int64_t cols, const std::vector<double>& idx, int64_t k) {
  std::vector<double> v(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) v[i] = x[(i / size_t(k)) * size_t(cols) + size_t(idx[i])];
  return v;
}

// Exact equality, NaN equal to NaN.
::testing::AssertionResult same(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "size " << a.size() << " != " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// Values from a small set, so rows are full of ties; with NaN, infinities and signed zeros
// when `specials`.
TestArray tie_array(Session& s, std::mt19937_64& g, Dims shape, DType dt, int distinct, bool specials) {
  std::vector<double> v(static_cast<size_t>(checked_numel(shape)));
  std::uniform_int_distribution<int> d(0, distinct - 1), sp(0, 63);
  for (auto& e : v) {
    e = double(d(g)) - distinct / 2;
    if (specials) {
      const int c = sp(g);
      if (c == 0)
        e = kNaN;
      else if (c == 1)
        e = kInf;
      else if (c == 2)
        e = -kInf;
      else if (c == 3)
        e = -0.0;
      else if (c == 4)
        e = 0.0;
    }
  }
  Array a = from_values(s, v, shape, dt);
  for (auto& e : v) e = round_to(dt, e);
  return {std::move(a), std::move(v)};
}

// Floats from uniformly random bit patterns: every exponent, subnormals, both zeros, both
// infinities and NaNs of every payload and sign.
TestArray bits_array(Session& s, std::mt19937_64& g, Dims shape) {
  std::vector<double> v(static_cast<size_t>(checked_numel(shape)));
  for (auto& e : v) e = double(bits_float(uint32_t(g())));
  Array a = from_values(s, v, shape, DType::f32);
  return {std::move(a), std::move(v)};
}

class ReduceTest : public BackendTest {};

TEST_P(ReduceTest, CumsumEveryDtypeAndWidth) {
  for (DType dt : float_dtypes())
    for (int64_t cols : edge_widths()) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols);
      const int64_t rows = cols > 4096 ? 2 : 9;
      auto x = random_array(session(), rng(), {rows, cols}, dt, -1, 1.5);
      Array out = poisoned(session(), {rows, cols}, dt);
      cumsum(session(), x, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_cumsum(x.values, cols), tolerance(dt));
    }
}

TEST_P(ReduceTest, CumsumStridedAndInPlace) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    for (int64_t pitch : {int64_t(3008), int64_t(3003)}) {
      auto parent = random_array(session(), rng(), {4, pitch}, dt);
      Tensor x = parent.tensor().slice(1, 0, 3000);
      Array out_parent = poisoned(session(), {4, pitch}, dt);
      Tensor out = out_parent.tensor().slice(1, 0, 3000);
      cumsum(session(), x, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_cumsum(host_values(session(), x), 3000), tolerance(dt));
      for (double v : host_values(session(), out_parent.tensor().slice(1, 3000, pitch))) ASSERT_TRUE(std::isnan(v));
    }
    auto x = random_array(session(), rng(), {3, 5000}, dt);
    cumsum(session(), x, x);
    MLXN_EXPECT_CLOSE(host_values(session(), x), ref_cumsum(x.values, 5000), tolerance(dt));
  }
}

TEST_P(ReduceTest, ArgmaxEveryDtypeWidthAndTies) {
  std::vector<int64_t> widths{1, 31, 32, 33, 1025, 4099, 151936};
  for (DType dt : float_dtypes())
    for (int64_t cols : widths)
      for (int data = 0; data < 3; ++data) {  // random, many ties, ties with NaN/inf/-0
        SCOPED_TRACE(::testing::Message() << name(dt) << " cols=" << cols << " data=" << data);
        const int64_t rows = cols > 4096 ? 3 : 11;
        TestArray x = data == 0 ? random_array(session(), rng(), {rows, cols}, dt)
                                : tie_array(session(), rng(), {rows, cols}, dt, 5, data == 2);
        Array out = poisoned(session(), {rows}, DType::i32);
        argmax(session(), x, out);
        EXPECT_TRUE(same(host_values(session(), out), ref_argmax(x.values, cols)));
      }
}

TEST_P(ReduceTest, ArgmaxSpecialRows) {
  // Rows written out by hand: NaN wins (the first NaN), all -inf gives 0, -0 ties +0.
  const double n = kNaN, i = kInf;
  const std::vector<std::vector<double>> rows{{1, 3, 3, 2}, {-i, -i, -i, -i}, {-0.0, 0.0, -1, -2}, {0.0, -0.0, -1, -2},
                                              {1, n, 5, n}, {i, 2, n, 3},     {i, 1, i, -i},       {-5, -4, -4, -7}};
  std::vector<double> flat;
  for (auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  const std::vector<double> expect{1, 0, 0, 0, 1, 2, 0, 1};
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    Array x = from_values(session(), flat, {8, 4}, dt);
    Array out = poisoned(session(), {8}, DType::i32);
    argmax(session(), x, out);
    EXPECT_TRUE(same(host_values(session(), out), expect));
  }
}

TEST_P(ReduceTest, ArgmaxStridedAndShapes) {
  for (int64_t pitch : {int64_t(5000), int64_t(4999)}) {
    auto parent = random_array(session(), rng(), {2, 3, pitch}, DType::bf16);
    Tensor x = parent.tensor().slice(2, 0, 4099);
    Array out = poisoned(session(), {2, 3}, DType::i32);
    argmax(session(), x, out);
    EXPECT_TRUE(same(host_values(session(), out), ref_argmax(host_values(session(), x), 4099)));
  }
  auto v = random_array(session(), rng(), {777}, DType::f32);  // a 1-D x gives out [1]
  Array out1 = poisoned(session(), {1}, DType::i32);
  argmax(session(), v, out1);
  EXPECT_TRUE(same(host_values(session(), out1), ref_argmax(v.values, 777)));
}

TEST_P(ReduceTest, ArgsortEveryWidthAndTies) {
  for (int64_t cols : edge_widths())
    for (int data = 0; data < 3; ++data) {
      SCOPED_TRACE(::testing::Message() << "cols=" << cols << " data=" << data);
      for (int64_t rows : {int64_t(1), int64_t(cols > 4096 ? 3 : 13)}) {
        TestArray x = data == 0 ? random_array(session(), rng(), {rows, cols}, DType::f32)
                                : tie_array(session(), rng(), {rows, cols}, DType::f32, 7, data == 2);
        Array out = poisoned(session(), {rows, cols}, DType::i32);
        argsort(session(), x, out);
        EXPECT_TRUE(same(host_values(session(), out), ref_order(x.values, cols, cols)));
      }
    }
}

TEST_P(ReduceTest, ArgsortStrided) {
  for (int64_t cols : {int64_t(700), int64_t(9000)}) {
    const int64_t pitch = cols + 5;
    auto parent = tie_array(session(), rng(), {3, pitch}, DType::f32, 50, true);
    Tensor x = parent.tensor().slice(1, 0, cols);
    Array out_parent = poisoned(session(), {3, pitch + 3}, DType::i32);
    Tensor out = out_parent.tensor().slice(1, 2, cols + 2);
    argsort(session(), x, out);
    EXPECT_TRUE(same(host_values(session(), out), ref_order(host_values(session(), x), cols, cols)));
    const auto whole = host_values(session(), out_parent);
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c : {int64_t(0), int64_t(1), cols + 2, cols + 3, cols + 4, cols + 5, cols + 6, cols + 7})
        ASSERT_EQ(whole[size_t(r * (pitch + 3) + c)], double(0x7f7f7f7f)) << "wrote outside the view";
  }
}

TEST_P(ReduceTest, TopKWidthsAndK) {
  struct Shape {
    int64_t rows, cols, k;
  };
  const std::vector<Shape> shapes{{5, 1, 1},         {7, 31, 5},      {7, 32, 32},     {7, 33, 1},      {4, 1025, 40},
                                  {4, 1025, 1025},   {3, 4099, 1024}, {3, 4099, 2000}, {2, 4099, 4099}, {1, 151936, 40},
                                  {2, 151936, 1024}, {1, 151936, 1},  {300, 5000, 50}, {1, 20000, 3000}};
  for (const Shape& sh : shapes)
    for (int data = 0; data < 3; ++data) {
      SCOPED_TRACE(::testing::Message() << "[" << sh.rows << ", " << sh.cols << "] k=" << sh.k << " data=" << data);
      TestArray x = data == 0
                        ? random_array(session(), rng(), {sh.rows, sh.cols}, DType::f32)
                        : tie_array(session(), rng(), {sh.rows, sh.cols}, DType::f32, data == 1 ? 3 : 1000, data == 2);
      Array values = poisoned(session(), {sh.rows, sh.k}, DType::f32);
      Array indices = poisoned(session(), {sh.rows, sh.k}, DType::i32);
      top_k(session(), x, sh.k, values, indices);
      const auto ref_idx = ref_order(x.values, sh.cols, sh.k);
      const auto got_idx = host_values(session(), indices);
      EXPECT_TRUE(same(got_idx, ref_idx));
      EXPECT_TRUE(same(host_values(session(), values), gather(x.values, sh.cols, ref_idx, sh.k)));
    }
}

TEST_P(ReduceTest, OrderingsOfRandomBitPatterns) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{3, 8000}, {1, 151936}, {5, 700}}) {
    SCOPED_TRACE(::testing::Message() << "[" << rows << ", " << cols << "]");
    auto x = bits_array(session(), rng(), {rows, cols});
    Array am = poisoned(session(), {rows}, DType::i32);
    argmax(session(), x, am);
    EXPECT_TRUE(same(host_values(session(), am), ref_argmax(x.values, cols)));
    Array order = poisoned(session(), {rows, cols}, DType::i32);
    argsort(session(), x, order);
    EXPECT_TRUE(same(host_values(session(), order), ref_order(x.values, cols, cols)));
    for (int64_t k : {int64_t(1), int64_t(7), int64_t(100)}) {
      Array values = poisoned(session(), {rows, k}, DType::f32);
      Array indices = poisoned(session(), {rows, k}, DType::i32);
      top_k(session(), x, k, values, indices);
      const auto ref_idx = ref_order(x.values, cols, k);
      EXPECT_TRUE(same(host_values(session(), indices), ref_idx)) << "k=" << k;
      EXPECT_TRUE(same(host_values(session(), values), gather(x.values, cols, ref_idx, k))) << "k=" << k;
    }
  }
}

TEST_P(ReduceTest, TopKStridedAndBatched) {
  // x [2, 3, cols] as a column slice, values/indices as column slices of wider buffers
  const int64_t cols = 6000, pitch = 6007, k = 64;
  auto parent = tie_array(session(), rng(), {2, 3, pitch}, DType::f32, 300, true);
  Tensor x = parent.tensor().slice(2, 0, cols);
  Array vp = poisoned(session(), {2, 3, k + 4}, DType::f32);
  Array ip = poisoned(session(), {2, 3, k + 4}, DType::i32);
  top_k(session(), x, k, vp.tensor().slice(2, 1, k + 1), ip.tensor().slice(2, 3, k + 3));
  const auto xv = host_values(session(), x);
  const auto ref_idx = ref_order(xv, cols, k);
  EXPECT_TRUE(same(host_values(session(), ip.tensor().slice(2, 3, k + 3)), ref_idx));
  EXPECT_TRUE(same(host_values(session(), vp.tensor().slice(2, 1, k + 1)), gather(xv, cols, ref_idx, k)));
}

TEST_P(ReduceTest, EmptyIsANoOp) {
  Array x = Array::empty({0, 64}, DType::f32, device());
  Array out = Array::empty({0, 64}, DType::f32, device());
  Array idx = Array::empty({0, 64}, DType::i32, device());
  Array am = Array::empty({0}, DType::i32, device());
  Array v8 = Array::empty({0, 8}, DType::f32, device());
  Array i8 = Array::empty({0, 8}, DType::i32, device());
  EXPECT_NO_THROW(cumsum(session(), x, out));
  EXPECT_NO_THROW(argmax(session(), x, am));
  EXPECT_NO_THROW(argsort(session(), x, idx));
  EXPECT_NO_THROW(top_k(session(), x, 8, v8, i8));
}

TEST_P(ReduceTest, BadInputsRaise) {
  Session& s = session();
  auto x = random_array(s, rng(), {4, 64}, DType::f32);
  auto xh = random_array(s, rng(), {4, 64}, DType::f16);
  Array xi = Array::empty({4, 64}, DType::i32, device());
  Array f32_4x64 = poisoned(s, {4, 64}, DType::f32);
  Array bf_4x64 = poisoned(s, {4, 64}, DType::bf16);
  Array f32_4x63 = poisoned(s, {4, 63}, DType::f32);
  Array i32_4 = poisoned(s, {4}, DType::i32);
  Array i32_5 = poisoned(s, {5}, DType::i32);
  Array f32_4 = poisoned(s, {4}, DType::f32);
  Array i32_4x64 = poisoned(s, {4, 64}, DType::i32);
  Array i32_4x63 = poisoned(s, {4, 63}, DType::i32);
  Array v = poisoned(s, {4, 8}, DType::f32), ix = poisoned(s, {4, 8}, DType::i32);
  Array v_bf = poisoned(s, {4, 8}, DType::bf16), ix_f = poisoned(s, {4, 8}, DType::f32);
  Array v9 = poisoned(s, {4, 9}, DType::f32);

  MLXN_EXPECT_RAISES(InvalidArgument, "cumsum", cumsum(s, x, bf_4x64));
  MLXN_EXPECT_RAISES(InvalidArgument, "cumsum", cumsum(s, x, f32_4x63));
  MLXN_EXPECT_RAISES(InvalidArgument, "cumsum", cumsum(s, xi, xi));
  MLXN_EXPECT_RAISES(InvalidArgument, "cumsum", cumsum(s, x.tensor().slice(0, 0, 3), x.tensor().slice(0, 1, 4)));

  MLXN_EXPECT_RAISES(InvalidArgument, "argmax", argmax(s, x, f32_4));
  MLXN_EXPECT_RAISES(InvalidArgument, "argmax", argmax(s, x, i32_5));
  MLXN_EXPECT_RAISES(InvalidArgument, "argmax", argmax(s, xi, i32_4));
  Array empty_cols = Array::empty({4, 0}, DType::f32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "argmax", argmax(s, empty_cols, i32_4));

  MLXN_EXPECT_RAISES(InvalidArgument, "argsort", argsort(s, x, f32_4x64));
  MLXN_EXPECT_RAISES(InvalidArgument, "argsort", argsort(s, x, i32_4x63));
  MLXN_EXPECT_RAISES(InvalidArgument, "argsort", argsort(s, xh, i32_4x64));  // f32 only

  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 0, v, ix));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 65, v, ix));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, -3, v, ix));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 9, v, ix));  // k differs from the outputs
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 8, v9, ix));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 8, v_bf, ix));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 8, v, ix_f));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, xh, 8, v, ix));
  MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 8, v, v));  // values and indices overlap
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({4, 8}, DType::i32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "top_k", top_k(s, x, 8, v, elsewhere));
  }
}

MLXN_BACKEND_TESTS(ReduceTest);

}  // namespace
}  // namespace mlxn::test
