// moe_layer: validation, then its parts (the router's matmul, moe_route, moe_experts), each
// dispatched to the session's backend.
#include "mlxn/ops/moe_layer.h"

#include "mlxn/ops/matmul.h"
#include "ops/moe_args.h"
#include "ops/moe_experts_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

void moe_layer(Session& s, const Tensor& x, const Tensor& router, const QuantizedExperts& gate,
               const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
               const MoeLayerParams& p) {
  const char* op = "moe_layer";
  MoeExpertsArgs a = check_experts(op, s, x, gate, up, down, q, out, {p.act, p.residual});
  const int64_t t = a.tokens, e = a.gate_m.experts, d = a.dim, k = p.route.top_k;
  check_device(op, s, "router", router);
  check_same_dtype(op, "x", x, "router", router);
  check_shape(op, "router", router, {e, d});
  check_no_overlap(op, "out", out, "router", router, false);
  if (e > kMaxRouteExperts)
    throw_error<InvalidArgument>(op, "the stacks hold ", e, " experts; routing takes at most ", kMaxRouteExperts);
  MoeRouteArgs r = route_args(op, s, e, p.route);
  if (p.ids.has_value() != p.weights.has_value())
    throw_error<InvalidArgument>(op, "ids and weights are written together: give both or neither");
  if (p.ids) {
    check_routing(op, s, *p.ids, *p.weights, t, k, out);
    check_no_overlap(op, "weights", *p.weights, "ids", *p.ids, false);
  }
  if (t == 0) return;

  // Everything is validated above, so the parts after the router's matmul are dispatched with
  // their args filled here rather than through their frontends, which would check it all again.
  const Device dev = s.device();
  ScratchBuffer logits = s.pool().acquire(size_t(t * e) * element_size(x.dtype()));
  const Tensor logits_t(logits.data(), x.dtype(), {t, e}, dev);
  matmul(s, x, router, logits_t);  // rounded to x's dtype, as the router's linear layer writes them
  // The routing goes to the caller's ids and weights, or to the scratch pool.
  ScratchBuffer routing;
  if (!p.ids) routing = s.pool().acquire(size_t(t * k) * 8);
  auto* rb = static_cast<char*>(routing.data());
  a.ids = p.ids ? *p.ids : Tensor(rb, DType::u32, {t, k}, dev);
  a.weights = p.weights ? *p.weights : Tensor(rb + size_t(t * k) * 4, DType::f32, {t, k}, dev);
  a.top_k = k;
  r.logits = as_rows(op, "logits", logits_t);
  r.ids = a.ids.data();
  r.weights = a.weights.data_as<float>();
  dispatch("moe_route", s, x.dtype(), r);
  dispatch("moe_experts", s, x.dtype(), a);
}

}  // namespace mlxn
