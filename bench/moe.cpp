// MoE benchmarks: a whole decode MoE layer replayed as a graph (router matmul, routing, gate/up
// expert products, SwiGLU, down products, weighted sum with the residual) with bf16 experts
// and 4-bit MLX experts (one moe_layer call, and the same with moe_experts as its four ops);
// and the routing ops alone.
#include <memory>
#include <vector>

#include "harness.h"
#include "mlxn/ops/matmul.h"
#include "mlxn/ops/moe.h"
#include "mlxn/ops/moe_experts.h"
#include "mlxn/ops/moe_layer.h"

namespace mlxn::bench {
namespace {

// Qwen3-MoE-like decode layer: 128 experts, top 8, hidden 2048, expert width 768.
constexpr int64_t kExperts = 128, kTopK = 8, kHidden = 2048, kWidth = 768;
// Tokens rotated between calls: each routes to other experts, so the selected experts'
// weights (75 MB in bf16) are read from memory, not found in L2.
constexpr int64_t kRotations = 8;

// Everything a layer call touches besides the expert weights.
struct LayerState {
  Array x, router, logits, ids, weights, gate_up, act, down, out;
  std::shared_ptr<int64_t> next = std::make_shared<int64_t>(0);
  LayerState(Session& s, DType dt) {
    x = random_device_array(s, {kRotations, 1, kHidden}, dt, 21);
    router = random_device_array(s, {kExperts, kHidden}, dt, 22);
    logits = Array::empty({1, kExperts}, dt, s.device());
    ids = Array::empty({1, kTopK}, DType::u32, s.device());
    weights = Array::empty({1, kTopK}, DType::f32, s.device());
    gate_up = Array::empty({1, kTopK, 2 * kWidth}, dt, s.device());
    act = Array::empty({1, kTopK, kWidth}, dt, s.device());
    down = Array::empty({1, kTopK, kHidden}, dt, s.device());
    out = Array::empty({1, kHidden}, dt, s.device());
  }
  // Router logits -> top-8 of 128, softmax weights renormalised over the 8.
  Tensor route(Session& s) {
    const Tensor xi = x.tensor().select(0, (*next)++ % kRotations);  // [1, hidden]
    matmul(s, xi, router, logits);
    MoeRouteParams p;
    p.top_k = int(kTopK);
    p.renormalize = true;
    moe_route(s, logits, p, ids, weights);
    return xi;
  }
  void finish(Session& s, const Tensor& xi) {
    MoeSumParams p;
    p.residual = xi;
    moe_weighted_sum(s, down, weights, out, p);
  }
};

Workload moe_layer_bf16(Session& s) {
  auto st = std::make_shared<LayerState>(s, DType::bf16);
  Array w_gate_up = random_device_array(s, {kExperts, 2 * kWidth, kHidden}, DType::bf16, 23);
  Array w_down = random_device_array(s, {kExperts, kHidden, kWidth}, DType::bf16, 24);
  const double bytes = double(kTopK) * double(2 * kWidth * kHidden + kHidden * kWidth) * 2.0;
  return {[&s, st, w_gate_up, w_down] {
            const Tensor xi = st->route(s);
            matmul_id(s, xi, w_gate_up, st->ids, st->gate_up);
            moe_glu(s, st->gate_up, st->act, GluKind::silu);
            matmul_id(s, st->act, w_down, st->ids, st->down);
            st->finish(s, xi);
          },
          bytes, 0};
}

// 4-bit MLX experts (group 64, bf16 scales and biases), gate and up as separate stacks as MLX
// checkpoints hold them (switch_mlp.gate_proj, up_proj). QuantizedExperts are views of the
// arrays owned here.
struct Mlx4Experts {
  static constexpr int kBits = 4, kGroup = 64;
  std::vector<Array> arrays;
  QuantizedExperts gate, up, down;
  MlxQuant q{kBits, kGroup};
  explicit Mlx4Experts(Session& s) {
    gate = stack(s, kWidth, kHidden, 31);
    up = stack(s, kWidth, kHidden, 34);
    down = stack(s, kHidden, kWidth, 37);
  }
  QuantizedExperts stack(Session& s, int64_t n, int64_t k, uint64_t seed) {
    arrays.push_back(random_device_array(s, {kExperts, n, k * kBits / 32}, DType::u32, seed));
    arrays.push_back(random_device_array(s, {kExperts, n, k / kGroup}, DType::bf16, seed + 1));
    arrays.push_back(random_device_array(s, {kExperts, n, k / kGroup}, DType::bf16, seed + 2));
    const size_t i = arrays.size() - 3;
    return QuantizedExperts{arrays[i].tensor(), arrays[i + 1].tensor(), arrays[i + 2].tensor()};
  }
  // One expert's packed weights, scales and biases of an [n, k] matrix.
  static double matrix_bytes(int64_t n, int64_t k) {
    return double(n * k * kBits / 8) + 2.0 * double(n * (k / kGroup)) * 2.0;
  }
  static double expert_bytes() { return 2 * matrix_bytes(kWidth, kHidden) + matrix_bytes(kHidden, kWidth); }
};

// The layer with 4-bit experts: one moe_layer call, or the routing ops then moe_experts' four ops.
enum class Mlx4Layer { one_op, four_ops };

template <Mlx4Layer kWay>
Workload moe_layer_mlx4(Session& s) {
  auto st = std::make_shared<LayerState>(s, DType::bf16);
  auto ex = std::make_shared<Mlx4Experts>(s);
  return {[&s, st, ex] {
            if constexpr (kWay == Mlx4Layer::one_op) {
              MoeLayerParams p;
              p.route.top_k = int(kTopK);
              p.route.renormalize = true;
              const Tensor xi = st->x.tensor().select(0, (*st->next)++ % kRotations);
              p.residual = xi;
              moe_layer(s, xi, st->router, ex->gate, ex->up, ex->down, ex->q, st->out, p);
            } else {
              const Tensor xi = st->route(s);
              const Tensor gu = st->gate_up.tensor();
              quantized_matmul_id(s, xi, ex->gate.packed, ex->gate.scales, ex->gate.biases, st->ids, ex->q,
                                  gu.slice(2, 0, kWidth));
              quantized_matmul_id(s, xi, ex->up.packed, ex->up.scales, ex->up.biases, st->ids, ex->q,
                                  gu.slice(2, kWidth, 2 * kWidth));
              moe_glu(s, st->gate_up, st->act, GluKind::silu);
              quantized_matmul_id(s, st->act, ex->down.packed, ex->down.scales, ex->down.biases, st->ids, ex->q,
                                  st->down);
              st->finish(s, xi);
            }
          },
          double(kTopK) * Mlx4Experts::expert_bytes(), 0};
}

// moe_experts alone, the routing given: ids rotate over disjoint expert sets (routed_ids), so
// no call finds its experts in L2.
Workload moe_experts_mlx4(Session& s) {
  auto st = std::make_shared<LayerState>(s, DType::bf16);
  auto ex = std::make_shared<Mlx4Experts>(s);
  auto ids = std::make_shared<Rotation<Array>>(routed_ids(s, kExperts, 1, kTopK, Mlx4Experts::expert_bytes()));
  Array w = random_device_array(s, {1, kTopK}, DType::f32, 25);
  return {[&s, st, ex, ids, w] {
            const Tensor xi = st->x.tensor().select(0, 0);
            MoeExpertsParams p;
            p.residual = xi;
            moe_experts(s, xi, ex->gate, ex->up, ex->down, ex->q, ids->next(), w, st->out, p);
          },
          double(kTopK) * Mlx4Experts::expert_bytes(), 0};
}

// moe_route alone: T tokens over E experts.
Workload route_case(Session& s, int64_t t, int64_t e, int64_t k) {
  Array logits = random_device_array(s, {t, e}, DType::f32, 41);
  Array ids = Array::empty({t, k}, DType::u32, s.device());
  Array w = Array::empty({t, k}, DType::f32, s.device());
  MoeRouteParams p;
  p.top_k = int(k);
  p.renormalize = true;
  return {[&s, logits, ids, w, p] { moe_route(s, logits, p, ids, w); }, double(t * e * 4 + t * k * 8), 0};
}

// moe_weighted_sum: T tokens x top 8 rows of D, plus the residual.
Workload weighted_sum_case(Session& s, int64_t t, int64_t d) {
  Array y = random_device_array(s, {t, kTopK, d}, DType::bf16, 42);
  Array w = random_device_array(s, {t, kTopK}, DType::f32, 43);
  Array res = random_device_array(s, {t, d}, DType::bf16, 44);
  Array out = Array::empty({t, d}, DType::bf16, s.device());
  MoeSumParams p;
  p.residual = res.tensor();
  return {[&s, y, w, res, out, p] { moe_weighted_sum(s, y, w, out, p); },
          double(t * d * (kTopK + 2) * 2 + t * kTopK * 4), 0};
}

// moe_glu: T tokens x top 8 rows of [gate | up] -> width.
Workload glu_case(Session& s, int64_t t, int64_t width) {
  Array gu = random_device_array(s, {t, kTopK, 2 * width}, DType::bf16, 45);
  Array out = Array::empty({t, kTopK, width}, DType::bf16, s.device());
  return {[&s, gu, out] { moe_glu(s, gu, out); }, double(t * kTopK * width * 3 * 2), 0};
}

// moe_group_tokens: T tokens x top 8 of 128.
Workload group_case(Session& s, int64_t t) {
  std::vector<uint32_t> host(static_cast<size_t>(t * kTopK));
  for (size_t q = 0; q < host.size(); ++q) host[q] = uint32_t((q * 7 + q / 8 * 13) % kExperts);
  Array ids = Array::empty({t, kTopK}, DType::u32, s.device());
  s.upload(ids, host.data(), host.size() * 4);
  Array rows = Array::empty({t * kTopK}, DType::u32, s.device());
  Array off = Array::empty({kExperts + 1}, DType::u32, s.device());
  return {[&s, ids, rows, off] { moe_group_tokens(s, ids, rows, off); }, double(t * kTopK * 8), 0};
}

Case moe_case(std::string name, std::function<Workload(Session&)> make, bool cuda_only, double goal_pct_copy = 0,
              double goal_us = 0) {
  Case c;
  c.name = std::move(name);
  c.family = "moe";
  c.make = std::move(make);
  c.cuda_only = cuda_only;
  c.goal_pct_copy = goal_pct_copy;
  c.goal_us = goal_us;
  return c;
}

// Bar (issue 4): the layer within 1.3x of reading the selected experts' bytes once at copy
// bandwidth, i.e. >= 77% of copy.
MLXN_BENCH(moe_case("moe decode layer bf16 E128 top8 2048/768", moe_layer_bf16, true, 77));
MLXN_BENCH(moe_case("moe decode layer mlx4 E128 top8 2048/768", moe_layer_mlx4<Mlx4Layer::one_op>, true, 77));
MLXN_BENCH(moe_case("moe decode layer mlx4 E128 top8 2048/768 (four ops)", moe_layer_mlx4<Mlx4Layer::four_ops>, true));
MLXN_BENCH(moe_case("moe_experts mlx4 T1 E128 top8 2048/768 (routing given)", moe_experts_mlx4, true));
MLXN_BENCH(moe_case(
    "moe_route f32 T1 E128 top8 (decode)", [](Session& s) { return route_case(s, 1, 128, 8); }, false, 0, 3.0));
MLXN_BENCH(moe_case(
    "moe_route f32 T4096 E128 top8", [](Session& s) { return route_case(s, 4096, 128, 8); }, false));
MLXN_BENCH(moe_case(
    "moe_route f32 T4096 E512 top8", [](Session& s) { return route_case(s, 4096, 512, 8); }, false));
MLXN_BENCH(moe_case(
    "moe_weighted_sum bf16 T1 top8 D2048 (decode)", [](Session& s) { return weighted_sum_case(s, 1, 2048); }, false));
MLXN_BENCH(moe_case(
    "moe_glu bf16 T1 top8 I768 (decode)", [](Session& s) { return glu_case(s, 1, kWidth); }, false));
MLXN_BENCH(moe_case(
    "moe_glu bf16 T4096 top8 I768", [](Session& s) { return glu_case(s, 4096, kWidth); }, false, 80));
MLXN_BENCH(moe_case(
    "moe_weighted_sum bf16 T4096 top8 D2048", [](Session& s) { return weighted_sum_case(s, 4096, 2048); }, false, 80));
MLXN_BENCH(moe_case(
    "moe_group_tokens T4096 top8 E128", [](Session& s) { return group_case(s, 4096); }, false));

}  // namespace
}  // namespace mlxn::bench
