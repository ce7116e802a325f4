#pragma once
// The routed half of an MoE layer from its input, as one op: router logits, routing, the
// experts and their weighted sum (plus the residual),
//   logits = round(x router^T)                  (rounded to x's dtype, as the router's linear
//                                                layer writes them)
//   ids, weights = moe_route(logits, p.route)
//   out = moe_experts(x, gate, up, down, ids, weights)  (+ residual).
// A shared expert, where the model has one, is added by the caller (moe_weighted_sum).
//
// On CUDA a decode-sized call (T <= 8, x bf16/f16, 4-bit experts at group 64 or 128, E <= 1024,
// top_k <= 32) runs two kernels (src/cuda/kernels/moe_layer_i8.cuh): the router, then one
// kernel whose blocks select their token's experts themselves (moe_route's selection; for
// E <= 256 its weights bit for bit), compute the experts and add up their outputs in a fixed
// order, so the result is the same on every run. Other calls, and the CPU, run the parts one
// after the other. Every launch overlaps the one before, and the whole layer can be captured
// in a graph.
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
