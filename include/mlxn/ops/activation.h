#pragma once
// Activations and gated activations, elementwise over any tensor whose last dim is contiguous
// and whose leading dims collapse into uniformly strided rows (contiguous tensors, row
// slices). Inputs and output share one dtype (f32, f16 or bf16); the math runs in f32 and
// is rounded once to the output. out may be an input itself (the same view: in place), but
// may not partly overlap one.
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

enum class GeluApprox {
  tanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  erf,   // 0.5 x (1 + erf(x / sqrt(2))), the exact form
};

// y = gelu(x)
void gelu(Session& s, const Tensor& x, const Tensor& out, GeluApprox approx = GeluApprox::tanh);
// y = x * sigmoid(x)
void silu(Session& s, const Tensor& x, const Tensor& out);
// y = 1 / (1 + exp(-x))
void sigmoid(Session& s, const Tensor& x, const Tensor& out);
// y = cap * tanh(x / cap); cap > 0 (the attention / logit soft cap)
void softcap(Session& s, const Tensor& x, const Tensor& out, float cap);

// Gated forms, from two tensors of one shape:
// y = silu(gate) * up                    (SwiGLU)
void silu_mul(Session& s, const Tensor& gate, const Tensor& up, const Tensor& out);
// y = gelu(gate) * up                    (GeGLU)
void gelu_mul(Session& s, const Tensor& gate, const Tensor& up, const Tensor& out,
              GeluApprox approx = GeluApprox::tanh);
// y = x * sigmoid(g)                     (output gates)
void sigmoid_mul(Session& s, const Tensor& x, const Tensor& g, const Tensor& out);

// The same from one fused projection [..., 2 * n] holding gate (columns [0, n)) then up
// (columns [n, 2n)); out is [..., n]. out may be exactly either half (in place).
void silu_mul(Session& s, const Tensor& gate_up, const Tensor& out);
void gelu_mul(Session& s, const Tensor& gate_up, const Tensor& out, GeluApprox approx = GeluApprox::tanh);
// x_g: [..., 2 * n] holding x then g.
void sigmoid_mul(Session& s, const Tensor& x_g, const Tensor& out);

}  // namespace mlxn
