// CPU moe_layer: its parts, one after the other.
#include "ops/moe_layer_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

MLXN_REGISTER_KERNEL(moe_layer, moe, cpu, kFloatTypes, detail::MoeLayerArgs, detail::moe_layer_composed);

}  // namespace mlxn::cpu
