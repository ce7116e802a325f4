#pragma once
// The routed half of an MoE layer from its input, as one op: router logits, routing, the
// experts and their weighted sum (plus the residual),
//   logits = round(x router^T)                  (rounded to x's dtype, as the router's linear
//                                                layer writes them)
//   ids, weights = moe_route(logits, p.route)
//   out = moe_experts(x, gate, up, down, ids, weights)  (+ residual).
// A shared expert, where the model has one, is added by the caller (moe_weighted_sum).
//
// The parts run one after the other on the session's backend (on CUDA each launched to overlap
// the one before, the whole layer capturable in a graph), with their numerics: a decode token's
// experts run moe_experts' two fused kernels.
#include <optional>

#include "mlxn/ops/moe.h"
#include "mlxn/ops/moe_experts.h"

namespace mlxn {

struct MoeLayerParams {
  MoeRouteParams route;  // top_k, scoring, renormalisation, expert scale and score bias
  GluKind act = GluKind::silu;
  std::optional<Tensor> residual;  // [T, D] like out, added; may be out itself
  // The routing, written when given: ids [T, top_k] i32/u32 and weights [T, top_k] f32,
  // contiguous (what moe_route would write).
  std::optional<Tensor> ids, weights;
};

// x [T, D] f32/f16/bf16 (rows may be strided); router [E, D] in x's dtype; gate, up [E, I, D]
// and down [E, D, I] MLX affine quantized with q; out [T, D] x's dtype.
void moe_layer(Session& s, const Tensor& x, const Tensor& router, const QuantizedExperts& gate,
               const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
               const MoeLayerParams& p);

}  // namespace mlxn
