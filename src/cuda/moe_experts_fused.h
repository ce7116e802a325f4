#pragma once
// What moe_experts' fused kernels accept and take (defined in moe_experts.cu), shared with
// moe_layer's kernels (moe_layer.cu), which are built from them.
#include "cuda/kernels/moe_experts_i8.cuh"
#include "ops/moe_experts_args.h"

namespace mlxn::cuda {

// Calls the fused kernels run (4 bits, group 64 or 128, x bf16/f16, few tokens, aligned).
bool moe_experts_fused_domain(const detail::MoeExpertsArgs& a);
// The kernels' parameters from validated args; ids and weights only when the args have them,
// act left for the caller.
kernels::moe_i8::MoeExpertParams moe_expert_params(const detail::MoeExpertsArgs& a);

}  // namespace mlxn::cuda
