// moe_layer: validation, then its parts (the router's matmul, moe_route, moe_experts), each
// dispatched to the session's backend.
#include "mlxn/ops/moe_layer.h"

#include "mlxn/ops/matmul.h"
#include "ops/moe_args.h"
#include "ops/moe_experts_args.h"

namespace mlxn {

using namespace detail;

void moe_layer(Session& s, const Tensor& x, const Tensor& router, const QuantizedExperts& gate,
               const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
               const MoeLayerParams& p) {
  const char* op = "moe_layer";
  const MoeExpertsParams ep{p.act, p.residual};
  const MoeExpertsArgs a = check_experts(op, s, x, gate, up, down, q, out, ep);
  const int64_t t = a.tokens, e = a.gate_m.experts, d = a.dim, k = p.route.top_k;
  check_device(op, s, "router", router);
  check_same_dtype(op, "x", x, "router", router);
  check_shape(op, "router", router, {e, d});
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
  if (t == 0) return;

  const Device dev = s.device();
  ScratchBuffer logits = s.pool().acquire(size_t(t * e) * element_size(x.dtype()));
  const Tensor logits_t(logits.data(), x.dtype(), {t, e}, dev);
  matmul(s, x, router, logits_t);  // rounded to x's dtype, as the router's linear layer writes them
  ScratchBuffer routing;  // the routing, unless the caller asked for it
  if (!p.ids) routing = s.pool().acquire(size_t(t * k) * 8);
  auto* r = static_cast<char*>(routing.data());
  const Tensor ids = p.ids ? *p.ids : Tensor(r, DType::u32, {t, k}, dev);
  const Tensor weights = p.weights ? *p.weights : Tensor(r + size_t(t * k) * 4, DType::f32, {t, k}, dev);
  moe_route(s, logits_t, p.route, ids, weights);
  moe_experts(s, x, gate, up, down, q, ids, weights, out, ep);
}

}  // namespace mlxn
