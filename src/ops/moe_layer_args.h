#pragma once
// The argument struct behind moe_layer (internal), and the op as its parts, which the CPU runs
// and CUDA runs outside its fused kernels' domain.
#include "mlxn/ops/moe_layer.h"
#include "ops/moe_experts_args.h"

namespace mlxn::detail {

struct MoeLayerArgs {
  MoeExpertsArgs ex;  // the experts' operands, validated (ids, weights and top_k unset)
  Tensor router;
  RowView router_rows;
  MoeLayerParams p;
  int64_t experts = 0;  // E
};

// Where the routing goes: the caller's ids and weights, or the session's scratch pool (held as
// long as this lives).
struct RoutingOutputs {
  ScratchBuffer scratch;
  Tensor ids, weights;
};
RoutingOutputs routing_outputs(Session& s, const MoeLayerArgs& a);

// matmul (router; logits in the scratch pool) -> moe_route -> moe_experts.
void moe_layer_composed(Session& s, const MoeLayerArgs& a);

}  // namespace mlxn::detail
