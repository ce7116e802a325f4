// Frontend of moe_layer: validation, dispatch, and the op as its parts.
#include "mlxn/ops/moe_layer.h"

#include "mlxn/ops/matmul.h"
#include "ops/moe_layer_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

void moe_layer(Session& s, const Tensor& x, const Tensor& router, const QuantizedExperts& gate,
               const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
               const MoeLayerParams& p) {
  const char* op = "moe_layer";
  MoeLayerArgs a;
  a.experts = check_experts(op, s, x, gate, up, down, q, out, {p.act, p.residual});
  const int64_t t = a.experts.tokens, e = a.experts.gate_m.experts, d = a.experts.dim;
  check_device(op, s, "router", router);
  check_same_dtype(op, "x", x, "router", router);
  check_shape(op, "router", router, {e, d});
  check_no_overlap(op, "out", out, "router", router, false);
  a.route = route_args(op, s, e, p.route);
  a.route_params = p.route;
  if (p.ids.has_value() != p.weights.has_value())
    throw_error<InvalidArgument>(op, "ids and weights are written together: give both or neither");
  if (p.ids) {
    check_routing(op, s, *p.ids, *p.weights, t, p.route.top_k, out);
    check_no_overlap(op, "weights", *p.weights, "ids", *p.ids, false);
    a.ids = p.ids, a.weights = p.weights;
  }
  a.router = router;
  a.router_rows = as_rows(op, "router", router);
  a.experts.top_k = p.route.top_k;
  if (t == 0) return;
  dispatch(op, s, x.dtype(), a);
}

namespace detail {

void moe_layer_composed(Session& s, const MoeLayerArgs& a) {
  const MoeExpertsArgs& ex = a.experts;
  const int64_t t = ex.tokens, k = ex.top_k, e = ex.gate_m.experts;
  const Device dev = s.device();
  ScratchBuffer logits = s.pool().acquire(size_t(t * e) * element_size(ex.x.dtype()));
  const Tensor logits_t(logits.data(), ex.x.dtype(), {t, e}, dev);
  matmul(s, ex.x, a.router, logits_t);
  ScratchBuffer routing = s.pool().acquire(size_t(t * k) * 8);
  auto* r = static_cast<char*>(routing.data());
  const Tensor ids = a.ids ? *a.ids : Tensor(r, DType::u32, {t, k}, dev);
  const Tensor weights = a.weights ? *a.weights : Tensor(r + size_t(t * k) * 4, DType::f32, {t, k}, dev);
  moe_route(s, logits_t, a.route_params, ids, weights);
  moe_experts(s, ex.x, ex.gate, ex.up, ex.down, ex.q, ids, weights, ex.out, ex.p);
}

}  // namespace detail
}  // namespace mlxn
