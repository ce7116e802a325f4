#pragma once
// The argument struct behind moe_layer (internal), and the op as its parts, which the CPU runs
// and CUDA runs outside its fused router's domain.
#include "mlxn/ops/moe_layer.h"
#include "ops/validate.h"

namespace mlxn::detail {

struct MoeLayerArgs {
  // The operands as given, validated.
  Tensor x, router, out;
  QuantizedExperts gate, up, down;
  MlxQuant q;
  MoeLayerParams p;
  int64_t tokens = 0, experts = 0, dim = 0;  // T, E, D
  RowView xv, router_rows;
};

// Where the routing goes: the caller's ids and weights, or the session's scratch pool (held as
// long as this lives).
struct RoutingOutputs {
  ScratchBuffer scratch;
  Tensor ids, weights;
};
RoutingOutputs routing_outputs(Session& s, const MoeLayerArgs& a);

// The experts' half given the routing: moe_experts with the layer's activation and residual.
void moe_layer_experts(Session& s, const MoeLayerArgs& a, const Tensor& ids, const Tensor& weights);

// matmul (router; logits in the scratch pool) -> moe_route -> moe_layer_experts.
void moe_layer_composed(Session& s, const MoeLayerArgs& a);

}  // namespace mlxn::detail
