#pragma once
// The argument struct behind moe_layer (internal), and the op as its parts, which the CPU runs
// and CUDA runs outside its fused kernel's domain.
#include "mlxn/ops/moe_layer.h"
#include "ops/moe_args.h"
#include "ops/moe_experts_args.h"

namespace mlxn::detail {

struct MoeLayerArgs {
  MoeExpertsArgs experts;  // all but ids and weights; top_k set
  Tensor router;           // [E, D], validated
  RowView router_rows;
  MoeRouteArgs route;                  // the routing's parameters (logits, ids, weights unset)
  MoeRouteParams route_params;         // the same as given, for the composed path
  std::optional<Tensor> ids, weights;  // the caller's outputs, if asked for
};

// matmul (router) -> moe_route -> moe_experts, the logits and (unless asked for) the routing in
// the session's scratch pool.
void moe_layer_composed(Session& s, const MoeLayerArgs& a);

}  // namespace mlxn::detail
