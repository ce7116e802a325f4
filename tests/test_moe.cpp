// MoE family against float64 references written from the definitions (ops.md §6).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

#include "mlxn/ops/matmul.h"
#include "mlxn/ops/moe.h"
#include "mlxn/ops/quant_mlx.h"
#include "support/mlx_quant_matrix.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

struct RefRoute {
  std::vector<double> ids, weights;
  std::vector<double> score, key;  // [T, E]: the scores and the selection keys
};

RefRoute ref_route(const std::vector<double>& logits, int64_t t, int64_t e_count, int64_t k, bool sigmoid,
                   bool renormalize, const std::vector<double>* scale, const std::vector<double>* bias) {
  RefRoute r;
  for (int64_t i = 0; i < t; ++i) {
    const double* l = logits.data() + i * e_count;
    std::vector<double> score(static_cast<size_t>(e_count)), key(static_cast<size_t>(e_count));
    if (sigmoid) {
      for (int64_t e = 0; e < e_count; ++e) score[size_t(e)] = 1.0 / (1.0 + std::exp(-l[e]));
    } else {
      const double mx = *std::max_element(l, l + e_count);
      double z = 0;
      for (int64_t e = 0; e < e_count; ++e) z += std::exp(l[e] - mx);
      for (int64_t e = 0; e < e_count; ++e) score[size_t(e)] = std::exp(l[e] - mx) / z;
    }
    for (int64_t e = 0; e < e_count; ++e)
      key[size_t(e)] = bias ? score[size_t(e)] + (*bias)[size_t(e)] : score[size_t(e)];
    std::vector<int64_t> order(static_cast<size_t>(e_count));
    std::iota(order.begin(), order.end(), 0);
    // descending; equal keys keep ascending expert order
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[size_t(a)] > key[size_t(b)]; });
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += score[size_t(order[size_t(j)])];
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = order[size_t(j)];
      double w = score[size_t(e)];
      if (renormalize) w /= sum;
      if (scale) w *= (*scale)[size_t(e)];
      r.ids.push_back(double(e));
      r.weights.push_back(w);
    }
    r.score.insert(r.score.end(), score.begin(), score.end());
    r.key.insert(r.key.end(), key.begin(), key.end());
  }
  return r;
}

// A routing result against the reference. The ids must match, except that two experts whose
// keys differ by less than f32 rounding (1e-6) may come in either order; the weights are
// then compared with the reference weights of the ids actually chosen.
::testing::AssertionResult route_matches(const std::vector<double>& ids, const std::vector<double>& w,
                                         const RefRoute& ref, int64_t t, int64_t e_count, int64_t k, bool renormalize,
                                         const std::vector<double>* scale) {
  std::vector<double> expect_w;
  for (int64_t i = 0; i < t; ++i) {
    const double* key = ref.key.data() + i * e_count;
    const double* score = ref.score.data() + i * e_count;
    std::vector<bool> seen(static_cast<size_t>(e_count));
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      const double id = ids[size_t(i * k + j)], want = ref.ids[size_t(i * k + j)];
      if (!(id >= 0 && id < double(e_count)) || seen[size_t(id)])
        return ::testing::AssertionFailure() << "token " << i << " slot " << j << ": bad or repeated id " << id;
      seen[size_t(id)] = true;
      if (id != want && std::abs(key[size_t(id)] - key[size_t(want)]) > 1e-6)
        return ::testing::AssertionFailure()
               << "token " << i << " slot " << j << ": expert " << id << " (key " << key[size_t(id)] << "), expected "
               << want << " (key " << key[size_t(want)] << ")";
      sum += score[size_t(id)];
    }
    for (int64_t j = 0; j < k; ++j) {
      const size_t id = size_t(ids[size_t(i * k + j)]);
      double v = score[id];
      if (renormalize) v /= sum;
      if (scale) v *= (*scale)[id];
      expect_w.push_back(v);
    }
  }
  return close(w, expect_w, 1e-5);
}

class MoeTest : public BackendTest {};

// Logits of distinct values (a shuffled ladder), so that no two experts are nearly tied.
TestArray ladder_logits(Session& s, std::mt19937_64& rng, int64_t t, int64_t e_count, DType dt) {
  std::vector<double> v;
  std::vector<int64_t> perm(static_cast<size_t>(e_count));
  std::iota(perm.begin(), perm.end(), 0);
  const double step = 6.0 / double(e_count);
  for (int64_t i = 0; i < t; ++i) {
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t e : perm) v.push_back(round_to(dt, -3.0 + step * double(e)));
  }
  return TestArray{from_values(s, v, {t, e_count}, dt), v};
}

TEST_P(MoeTest, RouteEveryScoringAndExpertCount) {
  for (int64_t e_count : {int64_t(8), int64_t(60), int64_t(128), int64_t(256), int64_t(300), int64_t(1000)})
    for (int64_t k : {int64_t(1), int64_t(2), int64_t(8), e_count})
      for (int mode = 0; mode < 4; ++mode) {
        // mode 0: softmax; 1: softmax + renormalise + scale; 2: sigmoid + bias + renormalise; 3: sigmoid
        const bool sigmoid = mode >= 2, renorm = mode == 1 || mode == 2;
        const DType dt = float_dtypes()[size_t(mode % 3)];
        SCOPED_TRACE(::testing::Message() << "E=" << e_count << " k=" << k << " mode=" << mode << " " << name(dt));
        const int64_t t = 5;
        auto logits = ladder_logits(session(), rng(), t, e_count, dt);
        MoeRouteParams p;
        p.top_k = int(std::min(k, e_count));
        p.scoring = sigmoid ? MoeScoring::sigmoid : MoeScoring::softmax;
        p.renormalize = renorm;
        std::optional<TestArray> scale, bias;
        if (mode == 1) scale = random_array(session(), rng(), {e_count}, DType::f32, 0.5, 2.0);
        if (mode == 2) bias = random_array(session(), rng(), {e_count}, DType::f32, -0.5, 0.5);
        if (scale) p.expert_scale = scale->tensor();
        if (bias) p.score_bias = bias->tensor();
        const DType idt = mode % 2 ? DType::i32 : DType::u32;
        Array ids = poisoned(session(), {t, p.top_k}, idt);
        Array w = poisoned(session(), {t, p.top_k}, DType::f32);
        moe_route(session(), logits, p, ids, w);
        const auto ref = ref_route(logits.values, t, e_count, p.top_k, sigmoid, renorm,
                                   scale ? &scale->values : nullptr, bias ? &bias->values : nullptr);
        EXPECT_TRUE(route_matches(host_values(session(), ids), host_values(session(), w), ref, t, e_count, p.top_k,
                                  renorm, scale ? &scale->values : nullptr));
      }
}

TEST_P(MoeTest, RouteTiesGoToTheLowerExpert) {
  for (int64_t e_count : {int64_t(8), int64_t(256), int64_t(300)}) {
    SCOPED_TRACE(e_count);
    // row 0: all equal; row 1: a few equal maxima; row 2: -inf logits lose to finite ones
    std::vector<double> v(static_cast<size_t>(3 * e_count), 0.0);
    for (int64_t e = 0; e < e_count; ++e) v[size_t(e_count + e)] = double(e % 4 == 3 ? 2 : e % 4);
    for (int64_t e = 0; e < e_count; ++e) v[size_t(2 * e_count + e)] = e % 2 ? -INFINITY : double(e % 5);
    Array logits = from_values(session(), v, {3, e_count}, DType::f32);
    MoeRouteParams p;
    p.top_k = 4;
    p.renormalize = true;
    Array ids = poisoned(session(), {3, 4}, DType::u32);
    Array w = poisoned(session(), {3, 4}, DType::f32);
    moe_route(session(), logits, p, ids, w);
    const auto got = host_values(session(), ids);
    EXPECT_EQ(std::vector<double>(got.begin(), got.begin() + 4), (std::vector<double>{0, 1, 2, 3}));
    EXPECT_EQ(std::vector<double>(got.begin() + 4, got.begin() + 8), (std::vector<double>{2, 3, 6, 7}));
    const auto ref = ref_route(v, 3, e_count, 4, false, true, nullptr, nullptr);
    EXPECT_EQ(got, ref.ids);
    if (e_count > 8) {
      EXPECT_EQ(std::vector<double>(got.begin() + 8, got.begin() + 12), (std::vector<double>{4, 14, 24, 34}));
    }
    MLXN_EXPECT_CLOSE(host_values(session(), w), ref.weights, 1e-5);
    // equal keys after the bias (sigmoid of equal logits, equal bias)
    Array zeros =
        from_values(session(), std::vector<double>(static_cast<size_t>(e_count), 0.0), {1, e_count}, DType::f32);
    Array bias = from_values(session(), std::vector<double>(static_cast<size_t>(e_count), 0.25), {e_count}, DType::f32);
    MoeRouteParams pb;
    pb.top_k = 3;
    pb.scoring = MoeScoring::sigmoid;
    pb.score_bias = bias.tensor();
    Array ids1 = poisoned(session(), {1, 3}, DType::i32);
    Array w1 = poisoned(session(), {1, 3}, DType::f32);
    moe_route(session(), zeros, pb, ids1, w1);
    EXPECT_EQ(host_values(session(), ids1), (std::vector<double>{0, 1, 2}));
    MLXN_EXPECT_CLOSE(host_values(session(), w1), (std::vector<double>{0.5, 0.5, 0.5}), 1e-6);
  }
}

TEST_P(MoeTest, RouteStridedLogitsAndEmpty) {
  auto store = random_array(session(), rng(), {6, 70}, DType::f32, -4, 4);
  Tensor logits = store.tensor().slice(1, 3, 67);  // [6, 64], row stride 70
  MoeRouteParams p;
  p.top_k = 6;
  Array ids = poisoned(session(), {6, 6}, DType::u32);
  Array w = poisoned(session(), {6, 6}, DType::f32);
  moe_route(session(), logits, p, ids, w);
  const auto ref = ref_route(host_values(session(), logits), 6, 64, 6, false, false, nullptr, nullptr);
  EXPECT_EQ(host_values(session(), ids), ref.ids);
  MLXN_EXPECT_CLOSE(host_values(session(), w), ref.weights, 1e-5);
  Array l0 = Array::empty({0, 8}, DType::f32, device());
  Array i0 = Array::empty({0, 2}, DType::u32, device());
  Array w0 = Array::empty({0, 2}, DType::f32, device());
  p.top_k = 2;
  EXPECT_NO_THROW(moe_route(session(), l0, p, i0, w0));
}

TEST_P(MoeTest, RouteBadInputsRaise) {
  Session& s = session();
  auto logits = random_array(s, rng(), {4, 16}, DType::f32);
  Array ids = poisoned(s, {4, 2}, DType::u32);
  Array w = poisoned(s, {4, 2}, DType::f32);
  Array ids_f = poisoned(s, {4, 2}, DType::f32);
  Array w_bf = poisoned(s, {4, 2}, DType::bf16);
  Array ids_3 = poisoned(s, {4, 3}, DType::u32);
  Array vec15 = poisoned(s, {15}, DType::f32);
  Array huge = Array::empty({1, 8193}, DType::f32, device());
  MoeRouteParams p;
  p.top_k = 2;
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, p, ids_f, w));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, p, ids, w_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, p, ids_3, w));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, p, ids, ids));
  MoeRouteParams bad = p;
  bad.top_k = 0;
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, bad, ids, w));
  bad.top_k = 17;
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, bad, ids, w));
  bad = p;
  bad.expert_scale = vec15.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, bad, ids, w));
  bad = p;
  bad.score_bias = vec15.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, logits, bad, ids, w));
  Array ids1 = poisoned(s, {1, 2}, DType::u32);
  Array w1 = poisoned(s, {1, 2}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_route", moe_route(s, huge, p, ids1, w1));
}

// ---- weighted sum ----------------------------------------------------------------------------

TEST_P(MoeTest, WeightedSumWithSharedExpertAndResidual) {
  for (DType dt : float_dtypes())
    for (int64_t d : {int64_t(1), int64_t(33), int64_t(2048), int64_t(4099)})
      for (int mode = 0; mode < 4; ++mode) {
        // 0: routed only; 1: + shared; 2: + gated shared ([T] f32 gate) + residual;
        // 3: + gated shared ([T, 1] gate in y's dtype) + residual in place
        SCOPED_TRACE(::testing::Message() << name(dt) << " D=" << d << " mode=" << mode);
        const int64_t t = 3, k = 4;
        auto y = random_array(session(), rng(), {t, k, d}, dt);
        auto w = random_array(session(), rng(), {t, k}, DType::f32, 0, 1);
        std::optional<TestArray> shared, gate, residual;
        MoeSumParams p;
        if (mode >= 1) shared = random_array(session(), rng(), {t, d}, dt);
        if (mode == 2) gate = random_array(session(), rng(), {t}, DType::f32, -3, 3);
        if (mode == 3) gate = random_array(session(), rng(), {t, 1}, dt, -3, 3);
        if (mode >= 2) residual = random_array(session(), rng(), {t, d}, dt);
        if (shared) p.shared = shared->tensor();
        if (gate) p.shared_gate = gate->tensor();
        if (residual) p.residual = residual->tensor();
        Array fresh = poisoned(session(), {t, d}, dt);
        const Tensor out = mode == 3 ? residual->tensor() : fresh.tensor();
        moe_weighted_sum(session(), y, w, out, p);
        std::vector<double> ref(static_cast<size_t>(t * d));
        for (int64_t i = 0; i < t; ++i) {
          const double g = gate ? 1.0 / (1.0 + std::exp(-gate->values[size_t(i)])) : 1.0;
          for (int64_t c = 0; c < d; ++c) {
            double acc = 0;
            for (int64_t j = 0; j < k; ++j) acc += w.values[size_t(i * k + j)] * y.values[size_t((i * k + j) * d + c)];
            if (shared) acc += g * shared->values[size_t(i * d + c)];
            if (residual) acc += residual->values[size_t(i * d + c)];
            ref[size_t(i * d + c)] = acc;
          }
        }
        MLXN_EXPECT_CLOSE(host_values(session(), out), ref, tolerance(dt));
      }
}

TEST_P(MoeTest, WeightedSumStridedRows) {
  const int64_t t = 4, k = 2, d = 100;
  auto store = random_array(session(), rng(), {t, k, d + 5}, DType::bf16);
  Tensor y = store.tensor().slice(2, 0, d);
  auto w = random_array(session(), rng(), {t, k}, DType::f32);
  Array out_store = poisoned(session(), {t, d + 3}, DType::bf16);
  Tensor out = out_store.tensor().slice(1, 0, d);
  moe_weighted_sum(session(), y, w, out);
  const auto yv = host_values(session(), y);
  std::vector<double> ref(static_cast<size_t>(t * d), 0.0);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t c = 0; c < d; ++c)
        ref[size_t(i * d + c)] += w.values[size_t(i * k + j)] * yv[size_t((i * k + j) * d + c)];
  MLXN_EXPECT_CLOSE(host_values(session(), out), ref, tolerance(DType::bf16));
  for (double v : host_values(session(), out_store.tensor().slice(1, d, d + 3))) ASSERT_TRUE(std::isnan(v));
}

TEST_P(MoeTest, WeightedSumBadInputsRaise) {
  Session& s = session();
  auto y = random_array(s, rng(), {3, 2, 8}, DType::f32);
  auto w = random_array(s, rng(), {3, 2}, DType::f32);
  Array out = poisoned(s, {3, 8}, DType::f32);
  Array out_bf = poisoned(s, {3, 8}, DType::bf16);
  Array w_bad = poisoned(s, {3, 3}, DType::f32);
  Array w_bf = poisoned(s, {3, 2}, DType::bf16);
  Array shared_bad = poisoned(s, {3, 7}, DType::f32);
  Array shared = poisoned(s, {3, 8}, DType::f32);
  Array gate_bad = poisoned(s, {3, 2}, DType::f32);
  Array gate = poisoned(s, {3}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum", moe_weighted_sum(s, y, w, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum", moe_weighted_sum(s, y, w_bad, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum", moe_weighted_sum(s, y, w_bf, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum",
                     moe_weighted_sum(s, y, w, out, {shared_bad.tensor(), std::nullopt, std::nullopt}));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum",
                     moe_weighted_sum(s, y, w, out, {shared.tensor(), gate_bad.tensor(), std::nullopt}));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum",
                     moe_weighted_sum(s, y, w, out, {std::nullopt, gate.tensor(), std::nullopt}));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum",
                     moe_weighted_sum(s, y, w, out, {out.tensor(), std::nullopt, std::nullopt}));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_weighted_sum", moe_weighted_sum(s, y, w, y.tensor().select(1, 0)));
}

// ---- gated activations ------------------------------------------------------------------------

double ref_gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST_P(MoeTest, GluSwigluAndGeglu) {
  for (DType dt : float_dtypes())
    for (int64_t width : {int64_t(1), int64_t(33), int64_t(768), int64_t(4099)})
      for (GluKind kind : {GluKind::silu, GluKind::gelu_tanh}) {
        SCOPED_TRACE(::testing::Message() << name(dt) << " I=" << width << " gelu=" << (kind == GluKind::gelu_tanh));
        const int64_t t = 3, k = 2;
        auto gu = random_array(session(), rng(), {t, k, 2 * width}, dt, -6, 6);
        Array out = poisoned(session(), {t, k, width}, dt);
        moe_glu(session(), gu, out, kind);
        std::vector<double> ref;
        for (int64_t r = 0; r < t * k; ++r)
          for (int64_t i = 0; i < width; ++i) {
            const double g = gu.values[size_t(r * 2 * width + i)], u = gu.values[size_t(r * 2 * width + width + i)];
            const double act = kind == GluKind::silu ? g / (1.0 + std::exp(-g)) : ref_gelu_tanh(g);
            ref.push_back(act * u);
          }
        MLXN_EXPECT_CLOSE(host_values(session(), out), ref, tolerance(dt));
      }
}

TEST_P(MoeTest, GluBadInputsRaise) {
  Session& s = session();
  auto gu = random_array(s, rng(), {4, 10}, DType::f32);
  auto odd = random_array(s, rng(), {4, 9}, DType::f32);
  Array out = poisoned(s, {4, 5}, DType::f32);
  Array out_bad = poisoned(s, {4, 6}, DType::f32);
  Array out_bf = poisoned(s, {4, 5}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_glu", moe_glu(s, odd, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_glu", moe_glu(s, gu, out_bad));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_glu", moe_glu(s, gu, out_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "moe_glu", moe_glu(s, gu, gu.tensor().slice(1, 0, 5)));
}

// ---- a whole layer in a graph -------------------------------------------------------------------

// The exact weights of a stack of quantized experts, [E, N, K] row-major.
std::vector<double> exact_weights(const QMatrix& m) {
  std::vector<double> w;
  w.reserve(size_t(m.experts * m.n * m.k));
  for (int64_t e = 0; e < m.experts; ++e)
    for (int64_t r = 0; r < m.n; ++r)
      for (int64_t i = 0; i < m.k; ++i) w.push_back(m.exact(e, r, i));
  return w;
}

// An MoE decode layer as a model runs it: router matmul -> moe_route -> routed gate/up (one
// [E, 2I, D] stack) -> moe_glu -> routed down -> moe_weighted_sum with the residual, the
// experts MLX 4-bit (quantized_matmul_id) or bf16 (matmul_id). Captured once and replayed for
// two x written into the same buffer between replays: a host round trip inside any op (a copy
// to the host, a synchronisation) makes the capture fail. Each replay must give exactly what
// the same ops gave eagerly on its x, and the layer must match float64 on the routing the
// device chose.
TEST_P(MoeTest, DecodeLayerInCapturedGraph) {
  if (!device().is_cuda()) GTEST_SKIP() << "graph capture needs CUDA";
  Session& s = session();
  const int64_t D = 256, I = 128, E = 8, top_k = 2;
  const DType dt = DType::bf16;
  const MlxQuant q{4, 64};
  for (bool quantized : {true, false})
    for (int64_t T : {int64_t(1), int64_t(4)}) {
      SCOPED_TRACE(::testing::Message() << (quantized ? "mlx 4-bit" : "bf16") << " experts, T=" << T);
      auto router = random_array(s, rng(), {E, D}, dt, -0.25, 0.25);
      std::optional<QMatrix> gu_q, down_q;
      std::optional<TestArray> gu_f, down_f;
      std::vector<double> gu_w, down_w;  // exact: [E, 2I, D], [E, D, I]
      if (quantized) {
        gu_q = random_qmatrix(s, rng(), E, 2 * I, D, q, DType::bf16, Biases::centred);
        down_q = random_qmatrix(s, rng(), E, D, I, q, DType::bf16, Biases::centred);
        gu_w = exact_weights(*gu_q);
        down_w = exact_weights(*down_q);
      } else {
        // Sized so that the gate values are O(1) (silu not yet linear) and the experts' sum is
        // on the residual's scale.
        gu_f = random_array(s, rng(), {E, 2 * I, D}, dt, -0.25, 0.25);
        down_f = random_array(s, rng(), {E, D, I}, dt, -0.15, 0.15);
        gu_w = gu_f->values;
        down_w = down_f->values;
      }
      Array x = s.empty({T, D}, dt);
      Array logits = s.empty({T, E}, dt);
      Array ids = s.empty({T, top_k}, DType::i32);
      Array weights = s.empty({T, top_k}, DType::f32);
      Array h = s.empty({T, top_k, 2 * I}, dt);
      Array act = s.empty({T, top_k, I}, dt);
      Array y = s.empty({T, top_k, D}, dt);
      Array out = s.empty({T, D}, dt);
      MoeRouteParams rp;
      rp.top_k = int(top_k);
      rp.renormalize = true;
      MoeSumParams sp;
      sp.residual = x.tensor();
      auto routed = [&](const Tensor& in, bool first, const Tensor& o) {
        if (quantized) {
          const QMatrix& m = first ? *gu_q : *down_q;
          quantized_matmul_id(s, in, m.packed, m.scales, m.biases, ids, q, o);
        } else {
          matmul_id(s, in, first ? gu_f->tensor() : down_f->tensor(), ids, o);
        }
      };
      auto layer = [&] {
        matmul(s, x, router, logits);
        moe_route(s, logits, rp, ids, weights);
        routed(x, true, h);
        moe_glu(s, h, act, GluKind::silu);
        routed(act, false, y);
        moe_weighted_sum(s, y, weights, out, sp);
      };
      auto set_x = [&](const std::vector<double>& v) {
        std::vector<uint16_t> bits(v.size());
        for (size_t i = 0; i < v.size(); ++i) write_element(bits.data(), dt, int64_t(i), v[i]);
        s.upload(x, bits.data(), bits.size() * sizeof(uint16_t));
      };
      struct Result {
        std::vector<double> logits, ids, weights, out;
      };
      auto read = [&] {
        return Result{host_values(s, logits), host_values(s, ids), host_values(s, weights), host_values(s, out)};
      };

      // Eagerly first: this also leaves in the scratch pool every buffer the ops take, so
      // that nothing is allocated while capturing.
      std::uniform_real_distribution<double> uni(-1.0, 1.0);
      std::vector<double> xs[2];
      Result eager[2];
      for (int r = 0; r < 2; ++r) {
        for (int64_t i = 0; i < T * D; ++i) xs[r].push_back(round_to(dt, uni(rng())));
        set_x(xs[r]);
        layer();
        eager[r] = read();
      }
      ASSERT_NE(eager[0].out, eager[1].out);
      // Poisoned again, so that whatever a replay does not write shows (the sources live until
      // the copies have run).
      std::vector<Array> poison;
      for (const Array* a : {&logits, &ids, &weights, &h, &act, &y, &out}) {
        poison.push_back(poisoned(s, (*a)->shape(), (*a)->dtype()));
        s.copy(*a, poison.back());
      }

      s.begin_capture();
      try {
        layer();
      } catch (...) {
        try {
          s.end_capture();
        } catch (const Error&) {
        }
        throw;
      }
      Graph graph = s.end_capture();
      for (int r = 0; r < 2; ++r) {
        SCOPED_TRACE(::testing::Message() << "replay " << r);
        set_x(xs[r]);
        graph.replay();
        const Result got = read();
        EXPECT_EQ(got.logits, eager[r].logits);
        EXPECT_EQ(got.ids, eager[r].ids);
        EXPECT_EQ(got.weights, eager[r].weights);
        EXPECT_EQ(got.out, eager[r].out);

        // float64: the logits; the routing from the logits the device wrote; the rest from x
        // and the routing the device chose.
        const std::vector<double>& xv = xs[r];
        std::vector<double> ref_logits(static_cast<size_t>(T * E));
        for (int64_t t = 0; t < T; ++t)
          for (int64_t e = 0; e < E; ++e) {
            double acc = 0;
            for (int64_t d = 0; d < D; ++d) acc += xv[size_t(t * D + d)] * router.values[size_t(e * D + d)];
            ref_logits[size_t(t * E + e)] = acc;
          }
        MLXN_EXPECT_CLOSE(got.logits, ref_logits, tolerance(dt));
        const RefRoute route = ref_route(got.logits, T, E, top_k, false, true, nullptr, nullptr);
        ASSERT_TRUE(route_matches(got.ids, got.weights, route, T, E, top_k, true, nullptr));
        std::vector<double> ref_out(static_cast<size_t>(T * D));
        std::vector<double> a(static_cast<size_t>(I));
        for (int64_t t = 0; t < T; ++t) {
          const double* xt = xv.data() + t * D;
          for (int64_t d = 0; d < D; ++d) ref_out[size_t(t * D + d)] = xt[d];
          for (int64_t j = 0; j < top_k; ++j) {
            const int64_t e = int64_t(got.ids[size_t(t * top_k + j)]);
            const double* wg = gu_w.data() + e * 2 * I * D;
            for (int64_t i = 0; i < I; ++i) {
              double g = 0, u = 0;
              for (int64_t d = 0; d < D; ++d) {
                g += wg[i * D + d] * xt[d];
                u += wg[(I + i) * D + d] * xt[d];
              }
              a[size_t(i)] = g / (1.0 + std::exp(-g)) * u;
            }
            const double* wd = down_w.data() + e * D * I;
            for (int64_t d = 0; d < D; ++d) {
              double acc = 0;
              for (int64_t i = 0; i < I; ++i) acc += wd[d * I + i] * a[size_t(i)];
              ref_out[size_t(t * D + d)] += got.weights[size_t(t * top_k + j)] * acc;
            }
          }
        }
        // gate/up, the activations, the down outputs and the sum each rounded to bf16 (and on
        // CUDA the weights or x of the routed products): a few roundings of 2^-9, inside twice
        // the single-rounding tolerance (as moe_experts' tests measure for the same chain).
        MLXN_EXPECT_CLOSE(got.out, ref_out, 2 * tolerance(dt));
      }
    }
}

MLXN_BACKEND_TESTS(MoeTest);

}  // namespace
}  // namespace mlxn::test
