#pragma once
// The kernel parameters of moe_experts' operands, shared by the moe_experts kernels and the
// moe_layer kernel (CUDA entry points only).
#include <algorithm>
#include <climits>

#include "cuda/kernels/moe_experts_i8.cuh"
#include "ops/moe_experts_args.h"

namespace mlxn::cuda {

// act: the [T * top_k, I] scratch in x's dtype.
inline kernels::moe_i8::MoeExpertParams expert_params(const detail::MoeExpertsArgs& a, void* act) {
  kernels::moe_i8::MoeExpertParams p{};
  p.gate = static_cast<const uint32_t*>(a.gate_m.packed);
  p.up = static_cast<const uint32_t*>(a.up_m.packed);
  p.down = static_cast<const uint32_t*>(a.down_m.packed);
  p.gate_s = a.gate_m.scales, p.gate_b = a.gate_m.biases;
  p.up_s = a.up_m.scales, p.up_b = a.up_m.biases;
  p.down_s = a.down_m.scales, p.down_b = a.down_m.biases;
  p.x = a.xv.data, p.x_stride = a.xv.row_stride;
  if (a.ids.data()) p.ids = a.ids.data(), p.ids_u32 = a.ids.dtype() == DType::u32;
  if (a.weights.data()) p.weights = a.weights.data_as<const float>();
  p.act = act;
  p.out = a.outv.data, p.out_stride = a.outv.row_stride;
  p.residual = a.residual.data, p.residual_stride = a.residual.row_stride;
  p.experts = int(std::min<int64_t>(a.gate_m.experts, INT_MAX));
  p.top_k = int(a.top_k), p.dim = int(a.dim), p.width = int(a.width);
  return p;
}

}  // namespace mlxn::cuda
