// Frontend of the norm family: validation and dispatch. Every op fills one NormArgs.
#include "mlxn/ops/norm.h"

#include "ops/norm_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

// Checks a per-row operand against x and returns its row view.
RowView row_operand(const char* op, Session& s, const char* name, const Tensor& t, const Tensor& x, const Tensor& out,
                    bool may_alias_out) {
  check_device(op, s, name, t);
  check_same_dtype(op, "x", x, name, t);
  check_same_shape(op, "x", x, name, t);
  check_no_overlap(op, "out", out, name, t, may_alias_out);
  return as_rows(op, name, t);
}

void check_vector(const char* op, Session& s, const char* name, const Tensor& v, const Tensor& x, DType dtype_hint) {
  check_device(op, s, name, v);
  check_dtype(op, name, v, kFloatTypes);
  if (v.dtype() != DType::f32 && v.dtype() != dtype_hint)
    throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(v.dtype()), ", expected f32 or ",
                                 mlxn::name(dtype_hint));
  if (v.ndim() != 1 || v.dim(0) != x.dim(-1))
    throw_error<InvalidArgument>(op, name, " has shape ", v.shape().str(), ", expected [", x.dim(-1), "]");
  check_contiguous(op, name, v);
}

// The checks every norm shares: x and out, dtype, eps, weight.
NormArgs base_args(const char* op, Session& s, const Tensor& x, const Tensor& out, const std::optional<Tensor>& w,
                   float eps) {
  const RowPair rows = check_rowwise(op, s, x, out, kFloatTypes);
  check_eps(op, eps);
  NormArgs a;
  a.x = rows.x;
  a.out = rows.out;
  a.eps = eps;
  if (w) {
    check_vector(op, s, "weight", *w, x, x.dtype());
    a.weight = w->data();
    a.weight_dtype = w->dtype();
  }
  return a;
}

void run(const char* op, Session& s, const NormArgs& a) {
  if (a.x.rows == 0 || a.x.cols == 0) return;  // empty tensors are valid no-ops
  dispatch(op, s, a.x.dtype, a);
}

}  // namespace

void rms_norm(Session& s, const Tensor& x, const Tensor& out, const NormWeight& p) {
  NormArgs a = base_args("rms_norm", s, x, out, p.weight, p.eps);
  a.weight_offset = p.offset;
  run("rms_norm", s, a);
}

void rms_norm_mul(Session& s, const Tensor& x, const Tensor& scale, const Tensor& out, const NormWeight& p) {
  NormArgs a = base_args("rms_norm_mul", s, x, out, p.weight, p.eps);
  a.weight_offset = p.offset;
  a.epilogue = NormEpilogue::mul;
  a.other = row_operand("rms_norm_mul", s, "scale", scale, x, out, true);
  run("rms_norm_mul", s, a);
}

void rms_norm_residual(Session& s, const Tensor& x, const Tensor& residual, const Tensor& out, const NormWeight& p,
                       const std::optional<Tensor>& sum_out) {
  const char* op = "rms_norm_residual";
  NormArgs a = base_args(op, s, x, out, p.weight, p.eps);
  a.weight_offset = p.offset;
  a.residual = row_operand(op, s, "residual", residual, x, out, true);
  if (sum_out) {
    // sum_out is written while x and residual are read: the same view is fine (each
    // element is read before it is written, by the same thread), partial overlap is not.
    a.sum_out = row_operand(op, s, "sum_out", *sum_out, x, out, false);
    check_no_overlap(op, "sum_out", *sum_out, "x", x, true);
    check_no_overlap(op, "sum_out", *sum_out, "residual", residual, true);
  }
  run(op, s, a);
}

void rms_norm_add(Session& s, const Tensor& x, const Tensor& residual, const Tensor& out, const NormWeight& p) {
  NormArgs a = base_args("rms_norm_add", s, x, out, p.weight, p.eps);
  a.weight_offset = p.offset;
  a.epilogue = NormEpilogue::add;
  a.other = row_operand("rms_norm_add", s, "residual", residual, x, out, true);
  run("rms_norm_add", s, a);
}

void rms_norm_heads(Session& s, const Tensor& x, const Tensor& out, const NormWeight& p) {
  check_ndim("rms_norm_heads", "x", x, 3, 3);
  NormArgs a = base_args("rms_norm_heads", s, x, out, p.weight, p.eps);
  a.weight_offset = p.offset;
  run("rms_norm_heads", s, a);
}

void l2_norm(Session& s, const Tensor& x, const Tensor& out, float eps) {
  NormArgs a = base_args("l2_norm", s, x, out, std::nullopt, eps);
  a.stat = NormStat::l2;
  run("l2_norm", s, a);
}

void ssm_norm_gate(Session& s, const Tensor& x, const Tensor& z, const Tensor& out, const NormWeight& p) {
  NormArgs a = base_args("ssm_norm_gate", s, x, out, p.weight, p.eps);
  a.weight_offset = p.offset;
  a.epilogue = NormEpilogue::gate;
  a.other = row_operand("ssm_norm_gate", s, "z", z, x, out, true);
  run("ssm_norm_gate", s, a);
}

void layer_norm(Session& s, const Tensor& x, const Tensor& out, const LayerNormParams& p) {
  NormArgs a = base_args("layer_norm", s, x, out, p.weight, p.eps);
  a.stat = NormStat::layer;
  if (p.bias) {
    check_vector("layer_norm", s, "bias", *p.bias, x, x.dtype());
    if (p.weight && p.weight->dtype() != p.bias->dtype())
      throw_error<InvalidArgument>("layer_norm", "bias dtype ", name(p.bias->dtype()), " differs from weight dtype ",
                                   name(p.weight->dtype()));
    a.bias = p.bias->data();
    a.weight_dtype = p.bias->dtype();
  }
  run("layer_norm", s, a);
}

}  // namespace mlxn
