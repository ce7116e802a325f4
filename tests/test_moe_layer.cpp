// moe_layer (include/mlxn/ops/moe_layer.h) against a float64 reference of the whole layer
// (router logits, routing, experts, weighted sum, residual), in a captured graph, and its errors.
#include <algorithm>
#include <functional>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "mlxn/ops/moe_layer.h"
#include "support/moe_reference.h"

namespace mlxn::test {
namespace {

// x and router values whose products sum exactly in f32 in any order (x multiples of 2^-10 in
// [-1/4, 1/4], 8 significant bits; router multiples of 2^-4 in [-1/2, 1/2]; |logit| < 2^9 on a
// 2^-14 grid: 23 bits), so the logits, rounded to x's dtype, are the reference's bit for bit and
// the selection (ties included) has one right answer.
Array grid_values(Session& s, std::mt19937_64& rng, Dims shape, DType dt, int range, double step,
                  std::vector<double>& values) {
  std::uniform_int_distribution<int> m(-range, range);
  values.resize(size_t(std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>())));
  for (double& v : values) v = double(m(rng)) * step;
  return from_values(s, values, shape, dt);
}

struct RouteSpec {
  MoeScoring scoring = MoeScoring::softmax;
  bool renormalize = true, scale = false, bias = false;
};

// moe_route in float64 on the rounded logits: score by softmax over E or sigmoid; select by
// logit (or score + bias), ties to the lower index; weights renormalised, then scaled.
Routing ref_route(const std::vector<double>& logits, int64_t e, int64_t k, const RouteSpec& r,
                  const std::vector<double>& scale, const std::vector<double>& bias) {
  Routing out;
  const int64_t t = int64_t(logits.size()) / e;
  for (int64_t tok = 0; tok < t; ++tok) {
    const double* l = logits.data() + tok * e;
    const double mx = *std::max_element(l, l + e);
    double z = 0;
    for (int64_t i = 0; i < e; ++i) z += std::exp(l[i] - mx);
    auto score = [&](int64_t i) {
      return r.scoring == MoeScoring::sigmoid ? 1.0 / (1.0 + std::exp(-l[i])) : std::exp(l[i] - mx) / z;
    };
    std::vector<int64_t> order(static_cast<size_t>(e));
    std::iota(order.begin(), order.end(), 0);
    auto key = [&](int64_t i) { return r.bias ? score(i) + bias[size_t(i)] : l[i]; };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) > key(b); });
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += score(order[size_t(j)]);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t id = order[size_t(j)];
      double w = score(id) / (r.renormalize ? sum : 1.0);
      if (r.scale) w *= scale[size_t(id)];
      out.ids.push_back(double(id));
      out.weights.push_back(w);
    }
  }
  return out;
}

struct Case {
  int64_t T, E, top_k, D, I;
  MlxQuant q;
  DType xdt, sdt;
  RouteSpec route;
  GluKind act;
  Residual residual;
  std::optional<DType> ids;  // the routing asked for, in this id dtype
  bool strided_x;
};

class MoeLayerTest : public BackendTest {
 protected:
  void expect_matches_reference(const Case& c) {
    Session& s = session();
    const auto [gate, up, down] = random_experts(s, rng(), c.E, c.D, c.I, c.q, c.sdt);
    const int64_t width = c.D + (c.strided_x ? 128 : 0);
    std::vector<double> xwide, rv;
    Array xa = grid_values(s, rng(), {c.T, width}, c.xdt, 256, 1.0 / 1024, xwide);
    const Tensor x = xa.tensor().slice(1, 0, c.D);
    Array router = grid_values(s, rng(), {c.E, c.D}, c.xdt, 8, 1.0 / 16, rv);
    std::vector<double> xv, logits;
    for (int64_t t = 0; t < c.T; ++t) xv.insert(xv.end(), xwide.begin() + t * width, xwide.begin() + t * width + c.D);
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t e = 0; e < c.E; ++e) {
        double dot = 0;
        for (int64_t d = 0; d < c.D; ++d) dot += xv[size_t(t * c.D + d)] * rv[size_t(e * c.D + d)];
        logits.push_back(round_to(c.xdt, dot));
      }
    MoeLayerParams p;
    p.route.top_k = int(c.top_k);
    p.route.scoring = c.route.scoring;
    p.route.renormalize = c.route.renormalize;
    p.act = c.act;
    std::vector<double> scale, bias;
    std::optional<Array> scale_a, bias_a;
    if (c.route.scale) {
      auto sa = random_array(s, rng(), {c.E}, DType::f32, 0.5, 2.0);
      scale = sa.values, scale_a = sa.array, p.route.expert_scale = scale_a->tensor();
    }
    if (c.route.bias) {
      // whole numbers apart, far above the scores' spread (< 1): the bias decides the selection
      for (int64_t e = 0; e < c.E; ++e) bias.push_back(double((e * 37) % c.E) - double(c.E) / 2);
      bias_a = from_values(s, bias, {c.E}, DType::f32), p.route.score_bias = bias_a->tensor();
    }
    const Routing r = ref_route(logits, c.E, c.top_k, c.route, scale, bias);
    const auto experts_only = ref_experts(xv, gate, up, down, c.act, r, c.top_k);
    Array out = poisoned(s, {c.T, c.D}, c.xdt);
    std::optional<TestArray> res;
    if (c.residual != Residual::none) {
      const double rs = rms(experts_only);
      res = random_array(s, rng(), {c.T, c.D}, c.xdt, -rs, rs);
      if (c.residual == Residual::in_place) out = res->array;
      p.residual = c.residual == Residual::in_place ? out.tensor() : res->tensor();
    }
    std::optional<Array> ids, weights;
    if (c.ids) {
      ids = poisoned(s, {c.T, c.top_k}, *c.ids), weights = poisoned(s, {c.T, c.top_k}, DType::f32);
      p.ids = ids->tensor(), p.weights = weights->tensor();
    }
    moe_layer(s, x, router, view(gate), view(up), view(down), c.q, out, p);
    const auto ref = res ? plus(experts_only, res->values) : experts_only;
    const double tol = experts_tol(c.xdt);
    MLXN_EXPECT_CLOSE(host_values(s, out), ref, tol);
    if (ids) {
      EXPECT_EQ(host_values(s, *ids), r.ids);
      MLXN_EXPECT_CLOSE(host_values(s, *weights), r.weights, 1e-5);
    }

    // Not vacuous: other experts (the k lowest-numbered ones not selected) instead of the
    // selected ones, and each token's whole weight on its last selected expert, are far outside
    // the tolerance. (Reversing the weights was the second check; with k near-equal softmax
    // weights it can land within 10x the tolerance by chance.)
    Routing other = r, one = r;
    for (int64_t t = 0; t < c.T; ++t) {
      auto first = r.ids.begin() + t * c.top_k, last = first + c.top_k;
      double sum = 0;
      for (int64_t j = 0; j < c.top_k; ++j) sum += std::exchange(one.weights[size_t(t * c.top_k + j)], 0.0);
      one.weights[size_t(t * c.top_k + c.top_k - 1)] = sum;
      int64_t j = 0;
      for (int64_t e = 0; e < c.E && j < c.top_k; ++e)
        if (std::find(first, last, double(e)) == last) other.ids[size_t(t * c.top_k + j++)] = double(e);
    }
    std::vector<std::pair<const char*, const Routing*>> wrongs;
    if (c.top_k >= 2) wrongs.push_back({"the whole weight on one expert", &one});
    if (2 * c.top_k <= c.E) wrongs.push_back({"other experts", &other});
    for (const auto& [what, wrong] : wrongs) {
      auto w = ref_experts(xv, gate, up, down, c.act, *wrong, c.top_k);
      if (res) w = plus(w, res->values);
      EXPECT_GT(rel_err(w, ref), 10 * tol) << what << " give a result within 10x the tolerance";
    }
  }
};

TEST_P(MoeLayerTest, MatchesFloat64Reference) {
  using enum Residual;
  const DType bf = DType::bf16, f16 = DType::f16, f32 = DType::f32, i32 = DType::i32, u32 = DType::u32;
  const GluKind silu = GluKind::silu, gelu = GluKind::gelu_tanh;
  const RouteSpec qwen{MoeScoring::softmax, true, false, false};
  const RouteSpec mixtral_scaled{MoeScoring::softmax, false, true, false};
  const RouteSpec deepseek{MoeScoring::sigmoid, true, true, true};
  const RouteSpec biased_softmax{MoeScoring::softmax, false, false, true};
  const Case cases[] = {
      // one token, 4 bits, groups 64/128, x bf16/f16: moe_experts' fused kernels on CUDA
      {1, 32, 8, 2048, 768, {4, 64}, bf, bf, qwen, silu, separate, u32, false},  // Qwen3-30B-A3B's widths
      {1, 128, 8, 256, 128, {4, 128}, f16, f16, mixtral_scaled, gelu, in_place, i32, false},
      {1, 512, 10, 256, 256, {4, 64}, bf, f32, deepseek, silu, none, u32, false},  // moe_route's block kernel
      {1, 64, 6, 384, 256, {4, 64}, f16, bf, biased_softmax, silu, separate, std::nullopt, true},
      {1, 16, 16, 128, 128, {4, 128}, bf, bf, qwen, gelu, separate, i32, false},  // top_k = E
      // several tokens (the fused kernels too on CUDA, at 4 bits), 8 bits, f32 (moe_experts' four ops)
      {3, 64, 4, 256, 128, {4, 64}, bf, bf, qwen, silu, separate, u32, false},
      {8, 32, 4, 128, 128, {4, 64}, f16, f32, deepseek, gelu, in_place, i32, true},
      {1, 16, 4, 256, 128, {8, 64}, f16, f16, deepseek, gelu, none, i32, true},
      {2, 16, 2, 256, 128, {4, 64}, f32, f32, mixtral_scaled, silu, in_place, u32, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "T=" << c.T << " E=" << c.E << " k=" << c.top_k << " D=" << c.D << " I=" << c.I
                                      << " bits=" << c.q.bits << " gs=" << c.q.group_size << " x " << name(c.xdt)
                                      << " scales " << name(c.sdt) << " scoring " << int(c.route.scoring) << " renorm "
                                      << c.route.renormalize << " scale " << c.route.scale << " bias " << c.route.bias
                                      << " residual " << int(c.residual));
    expect_matches_reference(c);
  }
}

// The op recorded in a graph and replayed twice gives what the direct call gives.
TEST_P(MoeLayerTest, ReplaysInAGraph) {
  if (device().type != DeviceType::cuda) GTEST_SKIP() << "graphs are CUDA only";
  Session& s = session();
  const int64_t E = 64, k = 8, D = 512, I = 256;
  const MlxQuant q{4, 64};
  const DType dt = DType::bf16;
  const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, dt);
  std::vector<double> xv, rv;
  Array x = grid_values(s, rng(), {1, D}, dt, 256, 1.0 / 1024, xv);
  Array router = grid_values(s, rng(), {E, D}, dt, 8, 1.0 / 16, rv);
  MoeLayerParams p;
  p.route.top_k = int(k);
  p.route.renormalize = true;
  Array direct = poisoned(s, {1, D}, dt), replayed = poisoned(s, {1, D}, dt);
  moe_layer(s, x, router, view(gate), view(up), view(down), q, direct, p);
  s.begin_capture();
  moe_layer(s, x, router, view(gate), view(up), view(down), q, replayed, p);
  Graph g = s.end_capture();
  for (int i = 0; i < 2; ++i) {
    g.replay();
    EXPECT_EQ(host_values(s, replayed), host_values(s, direct)) << "replay " << i;
  }
}

TEST_P(MoeLayerTest, BadInputsRaise) {
  Session& s = session();
  const int64_t E = 8, k = 2, D = 128, I = 128;
  const MlxQuant q{4, 64};
  const DType dt = DType::bf16;
  const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, dt);
  const QuantizedExperts G = view(gate), U = view(up), Dn = view(down);
  auto x = random_array(s, rng(), {1, D}, dt);
  auto router = random_array(s, rng(), {E, D}, dt);
  Array out = poisoned(s, {1, D}, dt);
  MoeLayerParams p;
  p.route.top_k = int(k);
  ASSERT_NO_THROW(moe_layer(s, x, router, G, U, Dn, q, out, p));  // the baseline every case below breaks once

  const char* op = "moe_layer";
  auto router_e = random_array(s, rng(), {E + 1, D}, dt), router_f16 = random_array(s, rng(), {E, D}, DType::f16);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router_e, G, U, Dn, q, out, p));
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router_f16, G, U, Dn, q, out, p));
  const QMatrix down_e = random_stack(s, rng(), E + 1, D, I, q, dt);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, view(down_e), q, out, p));
  for (int bad_k : {0, int(E) + 1}) {
    MoeLayerParams pk = p;
    pk.route.top_k = bad_k;
    MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, Dn, q, out, pk));
  }
  Array ids = poisoned(s, {1, k}, DType::u32), w = poisoned(s, {1, k}, DType::f32);
  MoeLayerParams half = p;
  half.ids = ids.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, Dn, q, out, half));
  Array ids_k = poisoned(s, {1, k + 1}, DType::u32), w_f16 = poisoned(s, {1, k}, DType::f16);
  for (const auto& [bad_i, bad_w] : {std::pair{&ids_k, &w}, std::pair{&ids, &w_f16}}) {  // wrong shape, wrong dtype
    MoeLayerParams pb = p;
    pb.ids = bad_i->tensor(), pb.weights = bad_w->tensor();
    MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, Dn, q, out, pb));
  }
  Array scale_short = poisoned(s, {E - 1}, DType::f32);
  MoeLayerParams bad_scale = p;
  bad_scale.route.expert_scale = scale_short.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, Dn, q, out, bad_scale));
  Array out_shape = poisoned(s, {1, D / 2}, dt);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, Dn, q, out_shape, p));
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_layer(s, x, router, G, U, Dn, {7, 64}, out, p));
}

TEST_P(MoeLayerTest, EmptyTokensIsANoOp) {
  Session& s = session();
  const int64_t E = 4, D = 128, I = 128;
  const MlxQuant q{4, 64};
  const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, DType::bf16);
  auto router = random_array(s, rng(), {E, D}, DType::bf16);
  Array x = Array::empty({0, D}, DType::bf16, device()), out = Array::empty({0, D}, DType::bf16, device());
  MoeLayerParams p;
  p.route.top_k = 2;
  EXPECT_NO_THROW(moe_layer(s, x, router, view(gate), view(up), view(down), q, out, p));
}

MLXN_BACKEND_TESTS(MoeLayerTest);

}  // namespace
}  // namespace mlxn::test
