// Frontend of the elementwise family (add, mul, scale, scale_rows, cast), and the checks it
// shares with the activation family. Every op fills one ElementwiseArgs.
#include "mlxn/ops/elementwise.h"

#include <cmath>

#include "ops/elementwise_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace detail {

ElementwiseArgs unary_args(const char* op, Session& s, const char* x_name, const Tensor& x, const Tensor& out,
                           DTypeSet dtypes) {
  check_device(op, s, x_name, x);
  check_device(op, s, "out", out);
  check_dtype(op, x_name, x, dtypes);
  check_same_dtype(op, x_name, x, "out", out);
  check_same_shape(op, x_name, x, "out", out);
  check_no_overlap(op, "out", out, x_name, x, /*same_view_ok=*/true);
  ElementwiseArgs a;
  a.x = as_rows(op, x_name, x);
  a.out = as_rows(op, "out", out);
  return a;
}

ElementwiseArgs binary_args(const char* op, Session& s, const char* x_name, const Tensor& x, const char* y_name,
                            const Tensor& y, const Tensor& out) {
  ElementwiseArgs a = unary_args(op, s, x_name, x, out);
  check_device(op, s, y_name, y);
  check_same_dtype(op, x_name, x, y_name, y);
  check_same_shape(op, x_name, x, y_name, y);
  // Each element of out is written by the thread that read it from x and y: the same view
  // is safe, a shifted one is not.
  check_no_overlap(op, "out", out, y_name, y, /*same_view_ok=*/true);
  a.y = as_rows(op, y_name, y);
  return a;
}

void run_elementwise(const char* op, Session& s, const ElementwiseArgs& a) {
  if (a.out.rows == 0 || a.out.cols == 0) return;  // empty tensors are valid no-ops
  dispatch(op, s, a.x.dtype, a);
}

}  // namespace detail

namespace {

// a (op) b with b of a's shape, or a row vector [cols] broadcast over a's rows.
void add_or_mul(const char* op, Session& s, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_defined(op, "a", a);
  check_ndim(op, "a", a, 1);
  check_defined(op, "b", b);
  const bool broadcast = !(b.shape() == a.shape()) && b.ndim() == 1 && b.dim(0) == a.dim(-1);
  if (!broadcast) {
    if (!(b.shape() == a.shape()))
      throw_error<InvalidArgument>(op, "b has shape ", b.shape().str(), ", expected ", a.shape().str(), " or [",
                                   a.dim(-1), "]");
    run_elementwise(op, s, binary_args(op, s, "a", a, "b", b, out));
    return;
  }
  ElementwiseArgs args = unary_args(op, s, "a", a, out);
  check_device(op, s, "b", b);
  check_same_dtype(op, "a", a, "b", b);
  // out is [rows, cols] and b is [cols]: they cannot be the same view, so any overlap is
  // a row of out written while other rows still read it.
  check_no_overlap(op, "out", out, "b", b, /*same_view_ok=*/false);
  args.y = as_rows(op, "b", b);
  args.y.rows = args.x.rows;
  args.y.row_stride = 0;
  run_elementwise(op, s, args);
}

constexpr DTypeSet kCastTypes{DType::f32, DType::f16, DType::bf16, DType::i32, DType::u32};

}  // namespace

void add(Session& s, const Tensor& a, const Tensor& b, const Tensor& out) { add_or_mul("add", s, a, b, out); }

void mul(Session& s, const Tensor& a, const Tensor& b, const Tensor& out) { add_or_mul("mul", s, a, b, out); }

void scale(Session& s, const Tensor& x, const Tensor& out, float factor) {
  if (!std::isfinite(factor)) throw_error<InvalidArgument>("scale", "factor must be finite, got ", factor);
  ElementwiseArgs a = unary_args("scale", s, "x", x, out);
  a.param = factor;
  run_elementwise("scale", s, a);
}

void scale_rows(Session& s, const Tensor& x, const Tensor& row_scale, const Tensor& out) {
  const char* op = "scale_rows";
  ElementwiseArgs a = unary_args(op, s, "x", x, out);
  check_device(op, s, "row_scale", row_scale);
  check_dtype(op, "row_scale", row_scale, {DType::f32});
  Dims lead;
  for (int i = 0; i + 1 < x.ndim(); ++i) lead.push_back(x.dim(i));
  const int64_t rows = checked_numel(lead, op);
  check_shape(op, "row_scale", row_scale, {rows});
  check_contiguous(op, "row_scale", row_scale);
  check_no_overlap(op, "out", out, "row_scale", row_scale, /*same_view_ok=*/false);
  a.row_scale = static_cast<const float*>(row_scale.data());
  run_elementwise(op, s, a);
}

void cast(Session& s, const Tensor& x, const Tensor& out) {
  const char* op = "cast";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kCastTypes);
  check_dtype(op, "out", out, kCastTypes);
  if (!is_float(x.dtype()) || !is_float(out.dtype())) {
    if (x.dtype() != out.dtype())
      throw_error<InvalidArgument>(op, "cannot convert ", name(x.dtype()), " to ", name(out.dtype()),
                                   ": integer tensors are only copied to their own dtype");
  }
  check_same_shape(op, "x", x, "out", out);
  // The same view (same dtype) is a no-op copy; any other overlap, including the same bytes
  // seen as another dtype, is rejected.
  check_no_overlap(op, "out", out, "x", x, /*same_view_ok=*/true);
  ElementwiseArgs a;
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  run_elementwise(op, s, a);
}

}  // namespace mlxn
