// The chunk stages of the delta rule, each against its definition (float64, computed from
// the very inputs the stage was given), and their composition against the token-by-token
// recurrence.
#include <cmath>

#include "test_gdn_support.h"

namespace mlxn::test {
namespace {

using namespace gdn_test;

class GdnChunkTest : public BackendTest {};

constexpr int64_t C64 = kGdnChunkSize;

struct Layout {
  Dims d;
  std::vector<int32_t> cu;  // empty: B rows of T
  int64_t slots = 0;        // per batch row
  std::vector<std::pair<int64_t, int64_t>> spans() const { return gdn_ref::spans(d, cu); }
  int64_t slot_of(int64_t n, int64_t c) const { return cu.empty() ? n * slots + c : n + cu[size_t(n)] / C64 + c; }
};

// Runs f(first token, length, first slot) for every chunk of every sequence.
template <class F>
void for_chunks(const Layout& l, F&& f) {
  const auto sp = l.spans();
  for (size_t n = 0; n < sp.size(); ++n)
    for (int64_t c = 0; c * C64 < sp[n].second; ++c)
      f(sp[n].first + c * C64, std::min(C64, sp[n].second - c * C64), l.slot_of(int64_t(n), c));
}

void run_stages(Session& s, std::mt19937_64& rng, const Layout& l, DType dt, DType inter) {
  const Dims& d = l.d;
  const int64_t H = d.H, K = d.K, V = d.V, group = d.H / d.Hk, tokens = d.B * d.T;
  SCOPED_TRACE(::testing::Message() << name(dt) << "/" << name(inter) << " B" << d.B << " T" << d.T << " K" << d.K
                                    << " V" << d.V << " varlen=" << !l.cu.empty());
  Inputs in = make_inputs(s, rng, d, dt);
  std::optional<TestArray> cua;
  std::optional<Tensor> cu;
  if (!l.cu.empty()) {
    cua = cu_array(s, l.cu);
    cu = cua->tensor();
  }
  const int64_t N = int64_t(l.spans().size());
  TestArray h0 = random_state(s, rng, N, d);

  // 1. cumsum
  Array gc = poisoned(s, {d.B, d.T, H}, DType::f32);
  gdn_chunk_cumsum(s, in.g, gc, cu);
  std::vector<double> ref_gc(static_cast<size_t>(tokens * H));
  for_chunks(l, [&](int64_t t0, int64_t n, int64_t) {
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0;
      for (int64_t i = 0; i < n; ++i) ref_gc[size_t((t0 + i) * H + h)] = acc += in.g.values[size_t((t0 + i) * H + h)];
    }
  });
  const auto gcv = host_values(s, gc);
  MLXN_EXPECT_CLOSE(gcv, ref_gc, 1e-6);

  // 2. A = beta_i k_i.k_j exp(gc_i - gc_j), strictly lower
  Array A = poisoned(s, {d.B, d.T, H, C64}, DType::f32);
  gdn_chunk_kkt(s, in.k, in.beta, gc, A, cu);
  std::vector<double> ref_A(static_cast<size_t>(tokens * H * C64), 0.0);
  const auto& kv = in.k.values;
  for_chunks(l, [&](int64_t t0, int64_t n, int64_t) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) {
          double dot = 0;
          for (int64_t x = 0; x < K; ++x)
            dot +=
                kv[size_t(((t0 + i) * d.Hk + h / group) * K + x)] * kv[size_t(((t0 + j) * d.Hk + h / group) * K + x)];
          ref_A[size_t(((t0 + i) * H + h) * C64 + j)] =
              in.beta.values[size_t((t0 + i) * H + h)] * dot *
              std::exp(gcv[size_t((t0 + i) * H + h)] - gcv[size_t((t0 + j) * H + h)]);
        }
  });
  const auto Av = host_values(s, A);
  MLXN_EXPECT_CLOSE(Av, ref_A, dt == DType::f32 ? 1e-5 : 1e-4);

  // 3. Ai = (I + A)^-1 per chunk: check (I + A) Ai = I on the rows and columns of the chunk
  Array Ai = poisoned(s, {d.B, d.T, H, C64}, DType::f32);
  gdn_chunk_solve(s, A, Ai, cu);
  const auto Aiv = host_values(s, Ai);
  std::vector<double> prod, ident;
  for_chunks(l, [&](int64_t t0, int64_t n, int64_t) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double acc = Aiv[size_t(((t0 + i) * H + h) * C64 + j)];
          for (int64_t m = 0; m < i; ++m)
            acc += Av[size_t(((t0 + i) * H + h) * C64 + m)] * Aiv[size_t(((t0 + m) * H + h) * C64 + j)];
          prod.push_back(acc);
          ident.push_back(i == j ? 1.0 : 0.0);
        }
  });
  MLXN_EXPECT_CLOSE(prod, ident, 1e-5);

  // 4. w = Ai (beta exp(gc) k), u = Ai (beta v)
  Array w = poisoned(s, {d.B, d.T, H, K}, inter), u = poisoned(s, {d.B, d.T, H, V}, inter);
  gdn_chunk_wu(s, in.k, in.v, in.beta, gc, Ai, w, u, cu);
  std::vector<double> ref_w(static_cast<size_t>(tokens * H * K)), ref_u(static_cast<size_t>(tokens * H * V));
  for_chunks(l, [&](int64_t t0, int64_t n, int64_t) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t x = 0; x < K; ++x) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j) {
            const size_t tj = size_t((t0 + j) * H + h);
            acc += Aiv[size_t(((t0 + i) * H + h) * C64 + j)] * in.beta.values[tj] * std::exp(gcv[tj]) *
                   kv[size_t(((t0 + j) * d.Hk + h / group) * K + x)];
          }
          ref_w[size_t(((t0 + i) * H + h) * K + x)] = acc;
        }
        for (int64_t x = 0; x < V; ++x) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j) {
            const size_t tj = size_t((t0 + j) * H + h);
            acc += Aiv[size_t(((t0 + i) * H + h) * C64 + j)] * in.beta.values[tj] *
                   in.v.values[tj * size_t(V) + size_t(x)];
          }
          ref_u[size_t(((t0 + i) * H + h) * V + x)] = acc;
        }
      }
  });
  const auto wv = host_values(s, w), uv = host_values(s, u);
  MLXN_EXPECT_CLOSE(wv, ref_w, tolerance(inter) * 2);
  MLXN_EXPECT_CLOSE(uv, ref_u, tolerance(inter) * 2);

  // 5. the scan: h before each chunk, v_new = u - w h, h' = e^G h + k^T (v_new e^(G - gc))
  Array hs = poisoned(s, {d.B, l.slots, H, K, V}, DType::f32);
  Array vn = poisoned(s, {d.B, d.T, H, V}, inter);
  Array ht = poisoned(s, {N, H, K, V}, DType::f32);
  GdnStateOptions so;
  so.initial_state = h0.tensor();
  so.final_state = ht.tensor();
  so.cu_seqlens = cu;
  gdn_chunk_state(s, in.k, w, u, gc, hs, vn, so);
  const auto hsv = host_values(s, hs), vnv = host_values(s, vn);
  {
    std::vector<double> got_h, ref_h, ref_vn(static_cast<size_t>(tokens * H * V)), got_ht = host_values(s, ht), ref_ht;
    const auto sp = l.spans();
    for (size_t n = 0; n < sp.size(); ++n)
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> S(h0.values.begin() + int64_t((int64_t(n) * H + h) * K * V),
                              h0.values.begin() + int64_t((int64_t(n) * H + h + 1) * K * V));
        for (int64_t c = 0; c * C64 < sp[n].second; ++c) {
          const int64_t t0 = sp[n].first + c * C64, nt = std::min(C64, sp[n].second - c * C64);
          const int64_t slot = l.slot_of(int64_t(n), c);
          for (int64_t i = 0; i < K * V; ++i) {
            got_h.push_back(hsv[size_t((slot * H + h) * K * V + i)]);
            ref_h.push_back(S[size_t(i)]);
          }
          for (int64_t i = 0; i < nt; ++i)
            for (int64_t x = 0; x < V; ++x) {
              double acc = uv[size_t(((t0 + i) * H + h) * V + x)];
              for (int64_t y = 0; y < K; ++y) acc -= wv[size_t(((t0 + i) * H + h) * K + y)] * S[size_t(y * V + x)];
              ref_vn[size_t(((t0 + i) * H + h) * V + x)] = acc;
            }
          const double G = gcv[size_t((t0 + nt - 1) * H + h)];
          for (double& x : S) x *= std::exp(G);
          for (int64_t i = 0; i < nt; ++i) {
            const double dcy = std::exp(G - gcv[size_t((t0 + i) * H + h)]);
            for (int64_t y = 0; y < K; ++y)
              for (int64_t x = 0; x < V; ++x)
                S[size_t(y * V + x)] +=
                    kv[size_t(((t0 + i) * d.Hk + h / group) * K + y)] * vnv[size_t(((t0 + i) * H + h) * V + x)] * dcy;
          }
        }
        ref_ht.insert(ref_ht.end(), S.begin(), S.end());
      }
    MLXN_EXPECT_CLOSE(got_h, ref_h, 1e-5);
    MLXN_EXPECT_CLOSE(vnv, ref_vn, tolerance(inter) * 2);
    MLXN_EXPECT_CLOSE(got_ht, ref_ht, 1e-5);
  }

  // 6. the output from the snapshots
  Array out = poisoned(s, {d.B, d.T, H, V}, dt);
  gdn_chunk_output(s, in.q, in.k, vn, hs, gc, out, 0.5f, cu);
  std::vector<double> ref_o(static_cast<size_t>(tokens * H * V));
  const auto& qv = in.q.values;
  for_chunks(l, [&](int64_t t0, int64_t n, int64_t slot) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < n; ++i) {
        const size_t ti = size_t((t0 + i) * H + h);
        const double* hq = hsv.data() + (slot * H + h) * K * V;
        for (int64_t x = 0; x < V; ++x) {
          double inter_part = 0;
          for (int64_t y = 0; y < K; ++y)
            inter_part += qv[size_t(((t0 + i) * d.Hk + h / group) * K + y)] * hq[y * V + x];
          double intra = 0;
          for (int64_t j = 0; j <= i; ++j) {
            double dot = 0;
            for (int64_t y = 0; y < K; ++y)
              dot +=
                  qv[size_t(((t0 + i) * d.Hk + h / group) * K + y)] * kv[size_t(((t0 + j) * d.Hk + h / group) * K + y)];
            intra += dot * std::exp(gcv[ti] - gcv[size_t((t0 + j) * H + h)]) * vnv[size_t(((t0 + j) * H + h) * V + x)];
          }
          ref_o[ti * size_t(V) + size_t(x)] = 0.5 * (std::exp(gcv[ti]) * inter_part + intra);
        }
      }
  });
  MLXN_EXPECT_CLOSE(host_values(s, out), ref_o, tolerance(dt) * 2);

  // The composition is the delta rule: against the token-by-token recurrence.
  const auto rec =
      gdn_ref::delta_rule(d, l.cu, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 0.5, false, 1e-6,
                          &h0.values, d.B * l.slots, [&](int64_t n, int64_t c) { return l.slot_of(n, c); });
  MLXN_EXPECT_CLOSE(host_values(s, out), rec.o, inter == DType::f32 ? out_tol(dt) * 5 : out_tol(inter));
  MLXN_EXPECT_CLOSE(host_values(s, ht), rec.ht, inter == DType::f32 ? 1e-4 : state_tol(inter));
}

TEST_P(GdnChunkTest, StagesMatchDefinitionsAndCompose) {
  Session& s = session();
  for (DType dt : float_dtypes()) {
    Layout l;
    l.d = {2, 100, 1, 2, 64, 64};
    l.slots = gdn_chunk_slots(l.d.T, l.d.B, false);
    run_stages(s, rng(), l, dt, DType::f32);
    if (dt != DType::f32) run_stages(s, rng(), l, dt, dt);
  }
  Layout big;
  big.d = {1, 70, 2, 4, 128, 64};
  big.slots = gdn_chunk_slots(70, 1, false);
  run_stages(s, rng(), big, DType::bf16, DType::bf16);
}

TEST_P(GdnChunkTest, StagesVarlen) {
  Layout l;
  l.cu = {0, 3, 67, 67, 130, 200};
  l.d = {1, 200, 2, 2, 64, 64};
  l.slots = gdn_chunk_slots(200, int64_t(l.cu.size()) - 1, true);
  run_stages(session(), rng(), l, DType::f32, DType::f32);
}

TEST_P(GdnChunkTest, OddHeadDimsOnTheCpu) {
  if (!device().is_cpu()) GTEST_SKIP() << "CUDA builds K, V in {64, 128, 256}";
  Layout l;
  l.d = {1, 90, 1, 1, 24, 40};
  l.slots = gdn_chunk_slots(90, 1, false);
  run_stages(session(), rng(), l, DType::f32, DType::f32);
}

TEST_P(GdnChunkTest, BadInputsRaise) {
  Session& s = session();
  const Dims d{1, 16, 1, 2, 64, 64};
  Inputs in = make_inputs(s, rng(), d, DType::bf16);
  Array gc = poisoned(s, {1, 16, 2}, DType::f32);
  Array A = poisoned(s, {1, 16, 2, 64}, DType::f32);
  Array A_short = poisoned(s, {1, 16, 2, 32}, DType::f32);
  Array A16 = poisoned(s, {1, 16, 2, 64}, DType::bf16);
  Array g16 = poisoned(s, {1, 16, 2}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_cumsum", gdn_chunk_cumsum(s, g16, gc));
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_kkt", gdn_chunk_kkt(s, in.k, in.beta, gc, A_short));
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_kkt", gdn_chunk_kkt(s, in.k, in.beta, gc, A16));
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_solve", gdn_chunk_solve(s, A, A));
  Array w = poisoned(s, {1, 16, 2, 64}, DType::f16), u = poisoned(s, {1, 16, 2, 64}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_wu", gdn_chunk_wu(s, in.k, in.v, in.beta, gc, A, w, u));
  Array h_bad = poisoned(s, {1, 2, 2, 64, 64}, DType::f32);  // one chunk holds 16 tokens
  Array vn = poisoned(s, {1, 16, 2, 64}, DType::bf16);
  Array wb = poisoned(s, {1, 16, 2, 64}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_state", gdn_chunk_state(s, in.k, wb, u, gc, h_bad, vn));
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_chunk_output", gdn_chunk_output(s, in.q, in.k, vn, h_bad, gc, vn));
}

MLXN_BACKEND_TESTS(GdnChunkTest);

}  // namespace
}  // namespace mlxn::test
