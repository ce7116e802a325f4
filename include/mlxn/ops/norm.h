#pragma once
// Normalisations over the last dim. Inputs are [..., dim] with the last dim contiguous and
// the leading dims collapsible into uniformly strided rows (contiguous tensors, row slices).
// x, out and every per-row operand share one dtype (f32, f16 or bf16); statistics are
// computed in f32. Outputs may be the inputs themselves (in place) but may not partly overlap.
#include <optional>

#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

struct NormWeight {
  std::optional<Tensor> weight;  // [dim]; f32 or x's dtype; absent = 1
  bool offset = false;           // multiply by (1 + w) (Gemma) instead of w
  float eps = 1e-6f;
};

// y = x * rsqrt(mean(x^2) + eps) * w
void rms_norm(Session& s, const Tensor& x, const Tensor& out, const NormWeight& p = {});
// y = rms_norm(x) * w * scale            scale: [rows, dim] like x
void rms_norm_mul(Session& s, const Tensor& x, const Tensor& scale, const Tensor& out, const NormWeight& p = {});
// sum = residual + x; y = rms_norm(sum) * w; sum is written to sum_out when given.
void rms_norm_residual(Session& s, const Tensor& x, const Tensor& residual, const Tensor& out, const NormWeight& p = {},
                       const std::optional<Tensor>& sum_out = std::nullopt);
// y = residual + rms_norm(x) * w         (post-norm residual)
void rms_norm_add(Session& s, const Tensor& x, const Tensor& residual, const Tensor& out, const NormWeight& p = {});
// x: [rows, heads, head_dim]; every head vector normalised on its own; weight [head_dim].
void rms_norm_heads(Session& s, const Tensor& x, const Tensor& out, const NormWeight& p = {});
// y = x / sqrt(sum(x^2) + eps)
void l2_norm(Session& s, const Tensor& x, const Tensor& out, float eps = 1e-6f);
// y = rms_norm(x) * w * silu(z)          z like x (the Gated DeltaNet output gate)
void ssm_norm_gate(Session& s, const Tensor& x, const Tensor& z, const Tensor& out, const NormWeight& p = {});

struct LayerNormParams {
  std::optional<Tensor> weight;  // [dim]; f32 or x's dtype
  std::optional<Tensor> bias;    // [dim]; same dtype as weight
  float eps = 1e-5f;
};
// y = (x - mean) / sqrt(var + eps) * w + b
void layer_norm(Session& s, const Tensor& x, const Tensor& out, const LayerNormParams& p = {});

}  // namespace mlxn
