#pragma once
// The routed-expert half of an MoE layer as one op, for MLX affine quantized experts:
//   out[t] = sum_j weights[t, j] * down_e(act(gate_e(x[t])) * up_e(x[t]))  (+ residual[t]),
//   e = ids[t, j],
// what quantized_matmul_id (gate, up) -> moe_glu -> quantized_matmul_id (down) ->
// moe_weighted_sum compute one after the other, without their intermediates in memory.
//
// On CUDA, decode-sized calls (a few tokens) at 4 bits, group size 64 or 128, x bf16/f16, run
// as two kernels: gate and up with the activation applied to the pair of rows as they finish,
// then down with the weighted sum over the token's experts and the residual, each output
// element written once. Both read x (and the activations) as the single-row integer mat-vec
// does: 15-bit fixed point per 64 values (include/mlxn/ops/quant_mlx.h, Numerics); the
// activations are rounded once to x's dtype. Other calls, and the CPU, run the four ops.
//
// Ids are data: an id outside [0, E) contributes nothing on CUDA, and the CPU raises
// InvalidArgument (as quantized_matmul_id does).
#include <optional>

#include "mlxn/ops/moe.h"
#include "mlxn/ops/quant_mlx.h"

namespace mlxn {

// A stack of E quantized matrices: packed [E, N, K*bits/32] u32, scales and biases [E, N, K/gs]
// (the three arrays of one MLX checkpoint entry: `.weight`, `.scales`, `.biases`).
struct QuantizedExperts {
  Tensor packed, scales, biases;
};

struct MoeExpertsParams {
  GluKind act = GluKind::silu;     // silu: SwiGLU (Qwen, Mixtral); gelu_tanh: GeGLU (Gemma)
  std::optional<Tensor> residual;  // [T, D] like out, added; may be out itself
};

// x [T, D] f32/f16/bf16 (rows may be strided); gate, up [E, I, D]; down [E, D, I], all with
// the same MlxQuant; ids [T, top_k] i32/u32 and weights [T, top_k] f32, contiguous (what
// moe_route writes); out [T, D] x's dtype.
void moe_experts(Session& s, const Tensor& x, const QuantizedExperts& gate, const QuantizedExperts& up,
                 const QuantizedExperts& down, MlxQuant q, const Tensor& ids, const Tensor& weights, const Tensor& out,
                 const MoeExpertsParams& p = {});

}  // namespace mlxn
