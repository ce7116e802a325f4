#pragma once
// Mixture-of-experts routing on the device: router logits -> scores -> top-k experts and
// their weights; grouping of routed tokens by expert; gated activations on routed outputs;
// the weighted sum of expert outputs with an optional gated shared expert and a residual.
// Nothing here copies to the host or synchronises, so a whole MoE layer can be captured in
// a graph.
#include <optional>

#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

enum class MoeScoring { softmax, sigmoid };

struct MoeRouteParams {
  int top_k = 1;  // 1 <= top_k <= E
  MoeScoring scoring = MoeScoring::softmax;
  bool renormalize = false;            // weights divided by their sum over the top_k
  std::optional<Tensor> expert_scale;  // [E] f32: weight *= expert_scale[id], after renormalising
  std::optional<Tensor> score_bias;    // [E] f32: selection by score + bias, weights from the
                                       // unbiased score (DeepSeek-style load balancing)
};

// logits: [T, E] (f32, f16 or bf16; rows may be strided); E <= 8192.
// ids: [T, top_k] u32 or i32; weights: [T, top_k] f32; both contiguous.
// Experts are selected by descending score (+ bias); ties go to the lower expert index, and
// slot 0 holds the best. Scores: softmax over all E logits, or sigmoid of each.
void moe_route(Session& s, const Tensor& logits, const MoeRouteParams& p, const Tensor& ids, const Tensor& weights);

struct MoeSumParams {
  std::optional<Tensor> shared;       // [T, D] like out: a shared expert's output, added
  std::optional<Tensor> shared_gate;  // [T] or [T, 1] logits (f32 or y's dtype): shared is
                                      // scaled by sigmoid(gate); needs shared
  std::optional<Tensor> residual;     // [T, D] like out, added; may be out itself
};

// out[t, :] = sum_j weights[t, j] * y[t, j, :] (+ sigmoid(gate[t]) * shared[t, :]) (+ residual[t, :])
// y: [T, top_k, D] f32/f16/bf16; weights: [T, top_k] f32 contiguous; out: [T, D] y's dtype.
void moe_weighted_sum(Session& s, const Tensor& y, const Tensor& weights, const Tensor& out,
                      const MoeSumParams& p = {});

enum class GluKind { silu, gelu_tanh };

// Gated activation on routed (or any) outputs holding gate then up in one row:
//   out[..., i] = act(gate_up[..., i]) * gate_up[..., I + i]
// gate_up: [..., 2I]; out: [..., I]; same dtype (f32, f16, bf16). silu: SwiGLU; gelu_tanh: GeGLU.
void moe_glu(Session& s, const Tensor& gate_up, const Tensor& out, GluKind kind = GluKind::silu);

// Groups routed (token, slot) pairs by expert, stably: pair p = t * top_k + j of ids [T, top_k]
// (flattened: any shape, contiguous, i32 or u32). Writes
//   sorted_rows [P] (i32 or u32): the pair indices ordered by expert, ascending within one expert;
//   expert_offsets [E + 1] (i32 or u32): expert e's pairs are sorted_rows[offsets[e] .. offsets[e+1]).
// E is expert_offsets' length - 1. Pairs whose id lies outside [0, E) come last, after
// offsets[E]. On CUDA: a device radix sort, no host round trip.
void moe_group_tokens(Session& s, const Tensor& ids, const Tensor& sorted_rows, const Tensor& expert_offsets);

}  // namespace mlxn
