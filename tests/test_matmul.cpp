// Matmul family against float64 references written from the definitions (ops.md §5).
#include <cmath>
#include <cstdint>
#include <vector>

#include "mlxn/ops/matmul.h"
#include "mlxn/ops/moe.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

// out[i] = alpha * a[i] . B[i / (ba / bb)]^T + beta * out0[i]
//   a: [ba, m, k]; b: [bb, n, k] (b_nk) or [bb, k, n]; all row-major values.
std::vector<double> ref_matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t ba, int64_t bb,
                               int64_t m, int64_t n, int64_t k, bool b_nk = true, double alpha = 1, double beta = 0,
                               const std::vector<double>* out0 = nullptr) {
  std::vector<double> out(static_cast<size_t>(ba * m * n));
  const int64_t group = ba / bb;
  for (int64_t i = 0; i < ba; ++i)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) {
        double acc = 0;
        for (int64_t q = 0; q < k; ++q) {
          const double av = a[size_t((i * m + r) * k + q)];
          const int64_t bi = i / group;
          const double bv = b_nk ? b[size_t((bi * n + c) * k + q)] : b[size_t((bi * k + q) * n + c)];
          acc += av * bv;
        }
        const size_t o = size_t((i * m + r) * n + c);
        out[o] = alpha * acc + (beta != 0 ? beta * (*out0)[o] : 0.0);
      }
  return out;
}

class MatmulTest : public BackendTest {};

TEST_P(MatmulTest, EveryDtypeAndShape) {
  struct Shape {
    int64_t m, n, k;
  };
  // includes decode-sized products (M <= 4, the mat-vec path on CUDA), vector-aligned or not;
  // a router (1 x 128 x 2048) and 2 x 5 x 4104 take its few-rows form (several rounds of loads
  // per lane, the last one partial)
  const std::vector<Shape> shapes{{1, 1, 1},    {1, 33, 65},    {3, 100, 64},   {4, 257, 2048},
                                  {31, 32, 33}, {33, 17, 1025}, {100, 257, 64}, {7, 4099, 16},
                                  {2, 3, 4101}, {1, 128, 2048}, {2, 5, 4104}};
  for (DType dt : float_dtypes())
    for (const Shape& sh : shapes) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " m=" << sh.m << " n=" << sh.n << " k=" << sh.k);
      auto a = random_array(session(), rng(), {sh.m, sh.k}, dt);
      auto b = random_array(session(), rng(), {sh.n, sh.k}, dt);
      Array out = poisoned(session(), {sh.m, sh.n}, dt);
      matmul(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(a.values, b.values, 1, 1, sh.m, sh.n, sh.k),
                        tolerance(dt));
    }
}

TEST_P(MatmulTest, KNLayoutAlphaBeta) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const int64_t m = 19, n = 45, k = 70;
    auto a = random_array(session(), rng(), {m, k}, dt);
    auto b = random_array(session(), rng(), {k, n}, dt);
    auto out = random_array(session(), rng(), {m, n}, dt);
    MatmulParams p;
    p.b_transposed = false;
    p.alpha = 0.5f;
    p.beta = -2.f;
    matmul(session(), a, b, out, p);
    MLXN_EXPECT_CLOSE(host_values(session(), out),
                      ref_matmul(a.values, b.values, 1, 1, m, n, k, false, 0.5, -2.0, &out.values), tolerance(dt));
    // beta = 0 never reads out (poisoned with NaN)
    Array fresh = poisoned(session(), {m, n}, dt);
    p.beta = 0.f;
    matmul(session(), a, b, fresh, p);
    MLXN_EXPECT_CLOSE(host_values(session(), fresh), ref_matmul(a.values, b.values, 1, 1, m, n, k, false, 0.5),
                      tolerance(dt));
  }
}

TEST_P(MatmulTest, BatchedAndBroadcastBatch) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const double tol = tolerance(dt);
    const int64_t m = 5, n = 24, k = 40;
    // one-to-one batch over two batch dims
    {
      auto a = random_array(session(), rng(), {2, 3, m, k}, dt);
      auto b = random_array(session(), rng(), {2, 3, n, k}, dt);
      Array out = poisoned(session(), {2, 3, m, n}, dt);
      matmul(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(a.values, b.values, 6, 6, m, n, k), tol);
    }
    // grouped heads: 8 query heads over 2 weight heads, stored back to back (folded into rows)
    {
      auto a = random_array(session(), rng(), {8, m, k}, dt);
      auto b = random_array(session(), rng(), {2, n, k}, dt);
      Array out = poisoned(session(), {8, m, n}, dt);
      matmul(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(a.values, b.values, 8, 2, m, n, k), tol);
    }
    // grouped heads in a [M, H, K] buffer seen as [H, M, K]: not foldable, one GEMM per group member
    {
      auto store = random_array(session(), rng(), {m, 6, k}, dt);
      Tensor a = store.tensor().transpose(0, 1);  // [6, m, k], batch stride k, row stride 6k
      auto b = random_array(session(), rng(), {3, n, k}, dt);
      Array out = poisoned(session(), {6, m, n}, dt);
      matmul(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(host_values(session(), a), b.values, 6, 3, m, n, k),
                        tol);
    }
    // shared weights: 2-D b for a 3-D a; and decode-shaped [H, 1, K] heads
    {
      auto a = random_array(session(), rng(), {3, m, k}, dt);
      auto b = random_array(session(), rng(), {n, k}, dt);
      Array out = poisoned(session(), {3, m, n}, dt);
      matmul(session(), a, b, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(a.values, b.values, 3, 1, m, n, k), tol);
      auto q = random_array(session(), rng(), {4, 1, k}, dt);
      auto kv = random_array(session(), rng(), {2, n, k}, dt);
      Array o2 = poisoned(session(), {4, 1, n}, dt);
      matmul(session(), q, kv, o2);
      MLXN_EXPECT_CLOSE(host_values(session(), o2), ref_matmul(q.values, kv.values, 4, 2, 1, n, k), tol);
    }
  }
}

TEST_P(MatmulTest, StridedAndTransposedViews) {
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const double tol = tolerance(dt);
    const int64_t m = 13, n = 21, k = 48;
    // a: a column slice of a wider buffer (row stride 53, unaligned); b: column-major view
    auto a_store = random_array(session(), rng(), {m, 53}, dt);
    Tensor a = a_store.tensor().slice(1, 2, 2 + k);
    auto b_store = random_array(session(), rng(), {k, n}, dt);
    Tensor b = b_store.tensor().transpose(0, 1);  // logical [n, k], column-major
    Array out_store = poisoned(session(), {m, n + 7}, dt);
    Tensor out = out_store.tensor().slice(1, 0, n);
    matmul(session(), a, b, out);
    const auto av = host_values(session(), a), bv = host_values(session(), b);
    MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(av, bv, 1, 1, m, n, k), tol);
    for (double v : host_values(session(), out_store.tensor().slice(1, n, n + 7))) ASSERT_TRUE(std::isnan(v));
    // decode-sized: two rows of a wider buffer into a column slice of out
    {
      auto a2_store = random_array(session(), rng(), {2, k + 8}, dt);
      Tensor a2 = a2_store.tensor().slice(1, 0, k);
      auto b2 = random_array(session(), rng(), {n, k}, dt);
      Array o2_store = poisoned(session(), {2, n + 8}, dt);
      Tensor o2 = o2_store.tensor().slice(1, 0, n);
      matmul(session(), a2, b2, o2);
      MLXN_EXPECT_CLOSE(host_values(session(), o2), ref_matmul(host_values(session(), a2), b2.values, 1, 1, 2, n, k),
                        tol);
      for (double v : host_values(session(), o2_store.tensor().slice(1, n, n + 8))) ASSERT_TRUE(std::isnan(v));
    }
    // a column-major a (transposed storage) and b given as [K, N] through a transposed view
    auto at_store = random_array(session(), rng(), {k, m}, dt);
    Tensor at = at_store.tensor().transpose(0, 1);
    auto bn_store = random_array(session(), rng(), {n, k}, dt);
    MatmulParams p;
    p.b_transposed = false;
    Array o2 = poisoned(session(), {m, n}, dt);
    matmul(session(), at, bn_store.tensor().transpose(0, 1), o2, p);
    MLXN_EXPECT_CLOSE(host_values(session(), o2),
                      ref_matmul(host_values(session(), at), bn_store.values, 1, 1, m, n, k), tol);
  }
}

TEST_P(MatmulTest, EmptyAndZeroInner) {
  Array a = Array::empty({0, 8}, DType::f32, device());
  Array b = Array::empty({4, 8}, DType::f32, device());
  Array out = Array::empty({0, 4}, DType::f32, device());
  EXPECT_NO_THROW(matmul(session(), a, b, out));
  // K = 0: out = beta * out (zeros when beta = 0)
  Array a0 = Array::empty({3, 0}, DType::f32, device());
  Array b0 = Array::empty({5, 0}, DType::f32, device());
  Array o0 = poisoned(session(), {3, 5}, DType::f32);
  matmul(session(), a0, b0, o0);
  for (double v : host_values(session(), o0)) ASSERT_EQ(v, 0.0);
  auto o1 = random_array(session(), rng(), {3, 5}, DType::f32);
  MatmulParams p;
  p.beta = 3.f;
  matmul(session(), a0, b0, o1, p);
  std::vector<double> expect = o1.values;
  for (auto& v : expect) v *= 3;
  MLXN_EXPECT_CLOSE(host_values(session(), o1), expect, 1e-6);
}

TEST_P(MatmulTest, BadInputsRaise) {
  Session& s = session();
  auto a = random_array(s, rng(), {4, 8}, DType::f32);
  auto b = random_array(s, rng(), {6, 8}, DType::f32);
  Array out = poisoned(s, {4, 6}, DType::f32);
  Array b_k = poisoned(s, {6, 7}, DType::f32);
  Array b_bf = poisoned(s, {6, 8}, DType::bf16);
  Array out_bad = poisoned(s, {4, 5}, DType::f32);
  Array ai = Array::empty({4, 8}, DType::i32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, a, b_k, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, a, b_bf, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, a, b, out_bad));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, ai, ai, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, a.tensor().reshape({32}), b, out));
  // batch 3 does not divide batch 4
  auto a4 = random_array(s, rng(), {4, 2, 8}, DType::f32);
  auto b3 = random_array(s, rng(), {3, 6, 8}, DType::f32);
  Array o4 = poisoned(s, {4, 2, 6}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, a4, b3, o4));
  // out overlapping an input, and an output whose elements overlap each other
  auto big = random_array(s, rng(), {4, 8}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, big, b, big.tensor().slice(1, 0, 6)));
  Tensor self_overlap(out.tensor().data(), DType::f32, {4, 6}, device(), {1, 1});
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, a, b, self_overlap));
  // neither row- nor column-major
  auto cube = random_array(s, rng(), {8, 8, 8}, DType::f32);
  Tensor diag(cube.tensor().data(), DType::f32, {4, 8}, device(), {9, 2});
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, diag, b, out));
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({4, 8}, DType::f32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "matmul", matmul(s, elsewhere, b, out));
  }
}

// ---- expert-routed -------------------------------------------------------------------------

// out[p, :] = x[row(p), :] . w[ids[p]]^T, zeros for ids outside [0, E).
std::vector<double> ref_matmul_id(const std::vector<double>& x, const std::vector<double>& w,
                                  const std::vector<int64_t>& ids, int64_t top_k, int64_t e_count, int64_t n, int64_t k,
                                  bool per_slot) {
  const int64_t pairs = int64_t(ids.size());
  std::vector<double> out(static_cast<size_t>(pairs * n), 0.0);
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t e = ids[size_t(p)];
    if (e < 0 || e >= e_count) continue;
    const int64_t xr = per_slot ? p : p / top_k;
    for (int64_t c = 0; c < n; ++c) {
      double acc = 0;
      for (int64_t q = 0; q < k; ++q) acc += x[size_t(xr * k + q)] * w[size_t((e * n + c) * k + q)];
      out[size_t(p * n + c)] = acc;
    }
  }
  return out;
}

// Distinct random experts per token, as a router produces.
std::vector<int64_t> random_ids(std::mt19937_64& rng, int64_t t, int64_t top_k, int64_t e_count) {
  std::vector<int64_t> ids;
  std::vector<int64_t> perm(static_cast<size_t>(e_count));
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t e = 0; e < e_count; ++e) perm[size_t(e)] = e;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t j = 0; j < top_k; ++j) ids.push_back(perm[size_t(j % e_count)]);
  }
  return ids;
}

Array ids_array(Session& s, const std::vector<int64_t>& ids, int64_t t, int64_t top_k, DType dt) {
  std::vector<double> v(ids.begin(), ids.end());
  if (dt == DType::u32)
    for (auto& x : v) x = x < 0 ? 4294967295.0 : x;
  return from_values(s, v, {t, top_k}, dt);
}

TEST_P(MatmulTest, RoutedMatchesReferenceAndEachExpertAlone) {
  struct Config {
    int64_t t, top_k, e, n, k;
    bool per_slot;
  };
  // decode-sized (mat-vec path), K not a multiple of the vector width, and prefill-sized
  // (grouped path) with empty experts, several row tiles per expert and odd N
  const std::vector<Config> configs{{1, 8, 16, 40, 64, false},
                                    {3, 2, 4, 33, 1025, true},
                                    {50, 4, 8, 72, 96, false},
                                    {40, 2, 60, 31, 40, true},
                                    {300, 2, 4, 130, 264, false}};
  for (DType dt : float_dtypes())
    for (const Config& c : configs) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " T=" << c.t << " top_k=" << c.top_k << " E=" << c.e
                                        << " N=" << c.n << " K=" << c.k << " per_slot=" << c.per_slot);
      auto x = c.per_slot ? random_array(session(), rng(), {c.t, c.top_k, c.k}, dt)
                          : random_array(session(), rng(), {c.t, c.k}, dt);
      auto w = random_array(session(), rng(), {c.e, c.n, c.k}, dt);
      const auto idv = random_ids(rng(), c.t, c.top_k, c.e);
      Array ids = ids_array(session(), idv, c.t, c.top_k, dt == DType::f16 ? DType::i32 : DType::u32);
      Array out = poisoned(session(), {c.t, c.top_k, c.n}, dt);
      matmul_id(session(), x, w, ids, out);
      const auto got = host_values(session(), out);
      MLXN_EXPECT_CLOSE(got, ref_matmul_id(x.values, w.values, idv, c.top_k, c.e, c.n, c.k, c.per_slot), tolerance(dt));
      // routed == each expert's matmul alone, for a few pairs
      for (int64_t p : {int64_t(0), c.t * c.top_k / 2, c.t * c.top_k - 1}) {
        const int64_t xr = c.per_slot ? p : p / c.top_k;
        Tensor xrow = c.per_slot ? x.tensor().reshape({c.t * c.top_k, c.k}).slice(0, xr, xr + 1)
                                 : x.tensor().slice(0, xr, xr + 1);
        Array alone = poisoned(session(), {1, c.n}, dt);
        matmul(session(), xrow, w.tensor().select(0, idv[size_t(p)]), alone);
        const std::vector<double> routed(got.begin() + p * c.n, got.begin() + (p + 1) * c.n);
        MLXN_EXPECT_CLOSE(routed, host_values(session(), alone), 2 * tolerance(dt));
      }
    }
}

TEST_P(MatmulTest, RoutedOutOfRangeIdsGiveZeroRows) {
  for (int64_t t : {int64_t(2), int64_t(40)}) {  // mat-vec and grouped paths
    SCOPED_TRACE(t);
    const int64_t top_k = 2, e = 4, n = 16, k = 32;
    auto x = random_array(session(), rng(), {t, k}, DType::bf16);
    auto w = random_array(session(), rng(), {e, n, k}, DType::bf16);
    auto idv = random_ids(rng(), t, top_k, e);
    idv[1] = e;   // one past the last expert
    idv[2] = -1;  // negative (i32) / huge (u32)
    for (DType idt : {DType::i32, DType::u32}) {
      Array ids = ids_array(session(), idv, t, top_k, idt);
      Array out = poisoned(session(), {t, top_k, n}, DType::bf16);
      matmul_id(session(), x, w, ids, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul_id(x.values, w.values, idv, top_k, e, n, k, false),
                        tolerance(DType::bf16));
    }
  }
}

TEST_P(MatmulTest, RoutedBadInputsRaise) {
  Session& s = session();
  auto x = random_array(s, rng(), {3, 16}, DType::f32);
  auto w = random_array(s, rng(), {4, 8, 16}, DType::f32);
  Array ids = ids_array(s, {0, 1, 2, 3, 0, 1}, 3, 2, DType::i32);
  Array out = poisoned(s, {3, 2, 8}, DType::f32);
  Array out_bad = poisoned(s, {3, 2, 7}, DType::f32);
  Array ids_f = poisoned(s, {3, 2}, DType::f32);
  Array w_bf = poisoned(s, {4, 8, 16}, DType::bf16);
  auto x_k = random_array(s, rng(), {3, 15}, DType::f32);
  auto x_slots = random_array(s, rng(), {3, 3, 16}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x, w, ids, out_bad));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x, w, ids_f, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x, w_bf, ids, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x_k, w, ids, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x_slots, w, ids, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x, w.tensor().reshape({32, 16}), ids, out));
  Tensor over_w(w.tensor().data(), DType::f32, {3, 2, 8}, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "matmul_id", matmul_id(s, x, w, ids, over_w));
}

TEST_P(MatmulTest, GroupTokensIsAStableSortByExpert) {
  for (int64_t e_count : {int64_t(1), int64_t(8), int64_t(60), int64_t(256)})
    for (DType idt : {DType::i32, DType::u32}) {
      SCOPED_TRACE(::testing::Message() << "E=" << e_count << " " << name(idt));
      const int64_t t = 37, top_k = std::min<int64_t>(4, e_count);
      auto idv = random_ids(rng(), t, top_k, e_count);
      idv[3] = e_count + 5;  // invalid ids go last
      idv[7] = -1;
      Array ids = ids_array(session(), idv, t, top_k, idt);
      Array rows = poisoned(session(), {t * top_k}, idt);
      Array offsets = poisoned(session(), {e_count + 1}, idt);
      moe_group_tokens(session(), ids, rows, offsets);
      std::vector<double> expect_rows, expect_off;
      for (int64_t e = 0; e <= e_count; ++e) {
        expect_off.push_back(double(expect_rows.size()));
        for (int64_t p = 0; p < t * top_k; ++p)
          if (idv[size_t(p)] == e) expect_rows.push_back(double(p));
      }
      for (int64_t p = 0; p < t * top_k; ++p)
        if (idv[size_t(p)] < 0 || idv[size_t(p)] >= e_count) expect_rows.push_back(double(p));
      // expect_off has E + 1 entries: offsets[E] = number of valid pairs
      EXPECT_EQ(host_values(session(), offsets), expect_off);
      EXPECT_EQ(host_values(session(), rows), expect_rows);
    }
  // no pairs at all: offsets are all zero
  Array ids0 = Array::empty({0, 2}, DType::i32, device());
  Array rows0 = Array::empty({0}, DType::i32, device());
  Array off0 = poisoned(session(), {5}, DType::i32);
  moe_group_tokens(session(), ids0, rows0, off0);
  EXPECT_EQ(host_values(session(), off0), std::vector<double>(5, 0.0));
  // bad inputs
  Array ids = ids_array(session(), {0, 1}, 1, 2, DType::i32);
  Array rows = poisoned(session(), {3}, DType::i32);
  Array off = poisoned(session(), {1}, DType::i32);
  Array good_rows = poisoned(session(), {2}, DType::i32);
  Array good_off = poisoned(session(), {3}, DType::i32);
  Array off_f = poisoned(session(), {3}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_group_tokens", moe_group_tokens(session(), ids, rows, good_off));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_group_tokens", moe_group_tokens(session(), ids, good_rows, off));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_group_tokens", moe_group_tokens(session(), ids, good_rows, off_f));
}

MLXN_BACKEND_TESTS(MatmulTest);

}  // namespace
}  // namespace mlxn::test
