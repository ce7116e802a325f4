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

// moe_experts' checks of everything but the routing (shared with moe_layer): fills the args but
// ids, weights and top_k.
MoeExpertsArgs check_experts(const char* op, Session& s, const Tensor& x, const QuantizedExperts& gate,
                             const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
                             const MoeExpertsParams& p);
// ids [T, k] i32/u32 and weights [T, k] f32, contiguous, on the session's device, apart from out.
void check_routing(const char* op, Session& s, const Tensor& ids, const Tensor& weights, int64_t tokens,
                   int64_t top_k, const Tensor& out);

// quantized_matmul_id (gate, up) -> moe_glu -> quantized_matmul_id (down) -> moe_weighted_sum,
// intermediates in the session's scratch pool.
void moe_experts_composed(Session& s, const MoeExpertsArgs& a);

}  // namespace mlxn::detail
