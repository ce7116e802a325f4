// Frontend of the activation family: validation and dispatch. Every op fills one
// ElementwiseArgs; the fused gate-up forms view the two halves of their input as two
// row-strided operands, so they run on the same kernels as the two-tensor forms.
#include "mlxn/ops/activation.h"

#include <cmath>

#include "ops/elementwise_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

bool same_view(const Tensor& a, const Tensor& b) {
  return a.data() == b.data() && a.dtype() == b.dtype() && a.shape() == b.shape() && a.strides() == b.strides();
}

// fused: [..., 2n] -> first half (x), second half (y); out [..., n].
ElementwiseArgs fused_args(const char* op, Session& s, const char* name, const Tensor& fused, const char* first_name,
                           const char* second_name, const Tensor& out) {
  check_device(op, s, name, fused);
  check_device(op, s, "out", out);
  check_dtype(op, name, fused, kFloatTypes);
  check_same_dtype(op, name, fused, "out", out);
  check_ndim(op, name, fused, 1);
  const int64_t width = fused.dim(-1);
  if (width % 2 != 0)
    throw_error<InvalidArgument>(op, name, " has shape ", fused.shape().str(), ": the last dim must be even (",
                                 first_name, " then ", second_name, ")");
  const int64_t n = width / 2;
  Dims expected = fused.shape();
  expected[expected.size() - 1] = n;
  check_shape(op, "out", out, expected);
  const Tensor first = fused.slice(-1, 0, n), second = fused.slice(-1, n, width);
  // out may be exactly one half (each element is read and written by one thread), else it
  // must not touch the buffer. (The halves interleave row by row, so a byte-range check of
  // out against the other half would reject the in-place form.)
  if (!same_view(out, first) && !same_view(out, second))
    check_no_overlap(op, "out", out, name, fused, /*same_view_ok=*/false);
  ElementwiseArgs a;
  a.x = as_rows(op, name, first);
  a.y = as_rows(op, name, second);
  a.out = as_rows(op, "out", out);
  return a;
}

}  // namespace

void gelu(Session& s, const Tensor& x, const Tensor& out, GeluApprox approx) {
  ElementwiseArgs a = unary_args("gelu", s, "x", x, out);
  a.gelu_erf = approx == GeluApprox::erf;
  run_elementwise("gelu", s, a);
}

void silu(Session& s, const Tensor& x, const Tensor& out) {
  run_elementwise("silu", s, unary_args("silu", s, "x", x, out));
}

void sigmoid(Session& s, const Tensor& x, const Tensor& out) {
  run_elementwise("sigmoid", s, unary_args("sigmoid", s, "x", x, out));
}

void softcap(Session& s, const Tensor& x, const Tensor& out, float cap) {
  if (!(cap > 0.f) || !std::isfinite(cap))
    throw_error<InvalidArgument>("softcap", "cap must be finite and > 0, got ", cap);
  ElementwiseArgs a = unary_args("softcap", s, "x", x, out);
  a.param = cap;
  run_elementwise("softcap", s, a);
}

void silu_mul(Session& s, const Tensor& gate, const Tensor& up, const Tensor& out) {
  run_elementwise("silu_mul", s, binary_args("silu_mul", s, "gate", gate, "up", up, out));
}

void gelu_mul(Session& s, const Tensor& gate, const Tensor& up, const Tensor& out, GeluApprox approx) {
  ElementwiseArgs a = binary_args("gelu_mul", s, "gate", gate, "up", up, out);
  a.gelu_erf = approx == GeluApprox::erf;
  run_elementwise("gelu_mul", s, a);
}

void sigmoid_mul(Session& s, const Tensor& x, const Tensor& g, const Tensor& out) {
  run_elementwise("sigmoid_mul", s, binary_args("sigmoid_mul", s, "x", x, "g", g, out));
}

void silu_mul(Session& s, const Tensor& gate_up, const Tensor& out) {
  const char* op = "silu_mul_fused";
  run_elementwise(op, s, fused_args(op, s, "gate_up", gate_up, "gate", "up", out));
}

void gelu_mul(Session& s, const Tensor& gate_up, const Tensor& out, GeluApprox approx) {
  const char* op = "gelu_mul_fused";
  ElementwiseArgs a = fused_args(op, s, "gate_up", gate_up, "gate", "up", out);
  a.gelu_erf = approx == GeluApprox::erf;
  run_elementwise(op, s, a);
}

void sigmoid_mul(Session& s, const Tensor& x_g, const Tensor& out) {
  const char* op = "sigmoid_mul_fused";
  run_elementwise(op, s, fused_args(op, s, "x_g", x_g, "x", "g", out));
}

}  // namespace mlxn
