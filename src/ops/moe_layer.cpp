// Frontend of moe_layer: validation, dispatch, and the op as its parts.
#include "mlxn/ops/moe_layer.h"

#include "mlxn/ops/matmul.h"
#include "ops/moe_args.h"
#include "ops/moe_experts_args.h"
#include "ops/moe_layer_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

void moe_layer(Session& s, const Tensor& x, const Tensor& router, const QuantizedExperts& gate,
               const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
               const MoeLayerParams& p) {
  const char* op = "moe_layer";
  const MoeExpertsArgs ex = check_experts(op, s, x, gate, up, down, q, out, {p.act, p.residual});
  MoeLayerArgs a;
  a.tokens = ex.tokens, a.experts = ex.gate_m.experts, a.dim = ex.dim;
  check_device(op, s, "router", router);
  check_same_dtype(op, "x", x, "router", router);
  check_shape(op, "router", router, {a.experts, a.dim});
  check_no_overlap(op, "out", out, "router", router, false);
  route_args(op, s, a.experts, p.route);
  if (p.ids.has_value() != p.weights.has_value())
    throw_error<InvalidArgument>(op, "ids and weights are written together: give both or neither");
  if (p.ids) {
    check_routing(op, s, *p.ids, *p.weights, a.tokens, p.route.top_k, out);
    check_no_overlap(op, "weights", *p.weights, "ids", *p.ids, false);
  }
  a.x = x, a.router = router, a.out = out;
  a.gate = gate, a.up = up, a.down = down, a.q = q, a.p = p;
  a.xv = ex.xv;
  a.router_rows = as_rows(op, "router", router);
  if (a.tokens == 0) return;
  dispatch(op, s, x.dtype(), a);
}

namespace detail {

RoutingOutputs routing_outputs(Session& s, const MoeLayerArgs& a) {
  const int64_t t = a.tokens, k = a.p.route.top_k;
  if (a.p.ids) return {ScratchBuffer(), *a.p.ids, *a.p.weights};
  RoutingOutputs r{s.pool().acquire(size_t(t * k) * 8), {}, {}};
  auto* base = static_cast<char*>(r.scratch.data());
  r.ids = Tensor(base, DType::u32, {t, k}, s.device());
  r.weights = Tensor(base + size_t(t * k) * 4, DType::f32, {t, k}, s.device());
  return r;
}

void moe_layer_experts(Session& s, const MoeLayerArgs& a, const Tensor& ids, const Tensor& weights) {
  moe_experts(s, a.x, a.gate, a.up, a.down, a.q, ids, weights, a.out, {a.p.act, a.p.residual});
}

void moe_layer_composed(Session& s, const MoeLayerArgs& a) {
  ScratchBuffer logits = s.pool().acquire(size_t(a.tokens * a.experts) * element_size(a.x.dtype()));
  const Tensor logits_t(logits.data(), a.x.dtype(), {a.tokens, a.experts}, s.device());
  matmul(s, a.x, a.router, logits_t);  // rounded to x's dtype, as the router's linear layer writes them
  const RoutingOutputs r = routing_outputs(s, a);
  moe_route(s, logits_t, a.p.route, r.ids, r.weights);
  moe_layer_experts(s, a, r.ids, r.weights);
}

}  // namespace detail
}  // namespace mlxn
