#pragma once
// The argument struct behind moe_experts (internal), and the op as its four parts, which the
// CPU runs and CUDA runs outside its fused kernels' domain.
#include <optional>

#include "mlxn/ops/moe_experts.h"
#include "ops/quant_mlx_args.h"

namespace mlxn::detail {

struct MoeExpertsArgs {
  // The op's operands as given (for the four-op path), validated.
  Tensor x, ids, weights, out;
  QuantizedExperts gate, up, down;
  MlxQuant q;
  MoeExpertsParams p;
  // Their views (for kernels).
  MlxQuantMatrix gate_m, up_m, down_m;                // [E, I, D], [E, I, D], [E, D, I]
  RowView xv, outv, residual;                         // residual.data may be null
  int64_t tokens = 0, top_k = 0, dim = 0, width = 0;  // T, k, D, I
};

// quantized_matmul_id (gate, up) -> moe_glu -> quantized_matmul_id (down) -> moe_weighted_sum,
// intermediates in the session's scratch pool.
void moe_experts_composed(Session& s, const MoeExpertsArgs& a);

}  // namespace mlxn::detail
