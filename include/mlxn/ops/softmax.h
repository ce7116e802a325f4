#pragma once
// Softmax over the last dim, with the scale, logit soft-capping and additive mask that
// attention scores and router logits need. x and out are [..., cols] with the last dim
// contiguous and the leading dims collapsible into uniformly strided rows; f32, f16 or bf16,
// out in x's dtype, computed in f32. out may be x itself (in place) but may not partly
// overlap it.
#include <optional>

#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

struct SoftmaxParams {
  float scale = 1.f;  // finite
  // Additive mask, f32 or x's dtype: [cols] (every row) or [mask_rows, cols] where x's row
  // count is a multiple of mask_rows and row r uses mask row r % mask_rows (one [T, S] mask
  // shared by every head of [B, H, T, S] scores). -inf entries remove a column.
  std::optional<Tensor> mask;
  float softcap = 0.f;  // > 0: t = softcap * tanh(t / softcap); 0 = off; negative is invalid
};

// Per row: t = x * scale; t = softcap * tanh(t / softcap) when softcap > 0; t += mask;
// y = exp(t - max(t)) / sum(exp(t - max(t))).
// A row whose every t is -inf (fully masked) has no softmax; its output is defined as all
// zeros, so the row contributes nothing downstream (attention over no keys).
void softmax(Session& s, const Tensor& x, const Tensor& out, const SoftmaxParams& p = {});

}  // namespace mlxn
