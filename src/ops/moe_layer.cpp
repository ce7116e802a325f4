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
  MoeLayerArgs a;
  a.ex = check_experts(op, s, x, gate, up, down, q, out, {p.act, p.residual});
  const int64_t t = a.ex.tokens, e = a.ex.gate_m.experts, k = p.route.top_k;
  check_device(op, s, "router", router);
  check_same_dtype(op, "x", x, "router", router);
  check_shape(op, "router", router, {e, a.ex.dim});
  check_no_overlap(op, "out", out, "router", router, false);
  if (e > kMaxRouteExperts)
    throw_error<InvalidArgument>(op, "the stacks hold ", e, " experts; routing takes at most ", kMaxRouteExperts);
  route_args(op, s, e, p.route);
  if (p.ids.has_value() != p.weights.has_value())
    throw_error<InvalidArgument>(op, "ids and weights are written together: give both or neither");
  if (p.ids) {
    check_routing(op, s, *p.ids, *p.weights, t, k, out);
    check_no_overlap(op, "weights", *p.weights, "ids", *p.ids, false);
  }
  a.router = router, a.router_rows = as_rows(op, "router", router);
  a.p = p, a.experts = e;
  a.ex.top_k = k;
  if (t == 0) return;
  dispatch(op, s, x.dtype(), a);
}

namespace detail {

RoutingOutputs routing_outputs(Session& s, const MoeLayerArgs& a) {
  const int64_t t = a.ex.tokens, k = a.p.route.top_k;
  if (a.p.ids) return {ScratchBuffer(), *a.p.ids, *a.p.weights};
  RoutingOutputs r{s.pool().acquire(size_t(t * k) * 8), {}, {}};
  auto* base = static_cast<char*>(r.scratch.data());
  r.ids = Tensor(base, DType::u32, {t, k}, s.device());
  r.weights = Tensor(base + size_t(t * k) * 4, DType::f32, {t, k}, s.device());
  return r;
}

void moe_layer_composed(Session& s, const MoeLayerArgs& a) {
  const MoeExpertsArgs& ex = a.ex;
  ScratchBuffer logits = s.pool().acquire(size_t(ex.tokens * a.experts) * element_size(ex.x.dtype()));
  const Tensor logits_t(logits.data(), ex.x.dtype(), {ex.tokens, a.experts}, s.device());
  matmul(s, ex.x, a.router, logits_t);  // rounded to x's dtype, as the router's linear layer writes them
  const RoutingOutputs r = routing_outputs(s, a);
  moe_route(s, logits_t, a.p.route, r.ids, r.weights);
  moe_experts(s, ex.x, ex.gate, ex.up, ex.down, ex.q, r.ids, r.weights, ex.out, ex.p);
}

}  // namespace detail
}  // namespace mlxn
