// Frontend of the reduce family: validation and dispatch.
#include "mlxn/ops/reduce.h"

#include "ops/reduce_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

constexpr DTypeSet kF32{DType::f32};
constexpr DTypeSet kI32{DType::i32};

// x's shape with the last dim replaced by n.
Dims with_last(const Tensor& x, int64_t n) {
  Dims d = x.shape();
  d[d.size() - 1] = n;
  return d;
}

}  // namespace

void cumsum(Session& s, const Tensor& x, const Tensor& out) {
  const char* op = "cumsum";
  // In place is fine: each tile of a row is read whole before any of it is written.
  const RowPair rows = check_rowwise(op, s, x, out, kFloatTypes);
  CumsumArgs a;
  a.x = rows.x;
  a.out = rows.out;
  if (a.x.rows == 0 || a.x.cols == 0) return;
  dispatch(op, s, x.dtype(), a);
}

void argmax(Session& s, const Tensor& x, const Tensor& out) {
  const char* op = "argmax";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kFloatTypes);
  check_dtype(op, "out", out, kI32);
  check_ndim(op, "x", x, 1);
  Dims expected;
  if (x.ndim() == 1) expected.push_back(1);
  for (int i = 0; i + 1 < x.ndim(); ++i) expected.push_back(x.dim(i));
  check_shape(op, "out", out, expected);
  check_contiguous(op, "out", out);
  check_no_overlap(op, "out", out, "x", x, /*same_view_ok=*/false);
  ArgmaxArgs a;
  a.x = as_rows(op, "x", x);
  if (x.dim(-1) == 0 && out.numel() > 0)
    throw_error<InvalidArgument>(op, "x has rows of 0 elements, which have no argmax");
  a.out = out.data_as<int32_t>();
  if (a.x.rows == 0) return;
  dispatch(op, s, x.dtype(), a);
}

void argsort(Session& s, const Tensor& x, const Tensor& out) {
  const char* op = "argsort";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kF32);
  check_dtype(op, "out", out, kI32);
  check_same_shape(op, "x", x, "out", out);
  check_no_overlap(op, "out", out, "x", x, /*same_view_ok=*/false);
  ArgsortArgs a;
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  if (a.x.rows == 0 || a.x.cols == 0) return;
  dispatch(op, s, x.dtype(), a);
}

void top_k(Session& s, const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  const char* op = "top_k";
  check_device(op, s, "x", x);
  check_device(op, s, "values", values);
  check_device(op, s, "indices", indices);
  check_dtype(op, "x", x, kF32);
  check_dtype(op, "values", values, kF32);
  check_dtype(op, "indices", indices, kI32);
  check_ndim(op, "x", x, 1);
  if (k < 1 || k > x.dim(-1))
    throw_error<InvalidArgument>(op, "k = ", k, " is out of range: rows have ", x.dim(-1),
                                 " elements, need 1 <= k <= ", x.dim(-1));
  const Dims expected = with_last(x, k);
  check_shape(op, "values", values, expected);
  check_shape(op, "indices", indices, expected);
  check_no_overlap(op, "values", values, "x", x, /*same_view_ok=*/false);
  check_no_overlap(op, "indices", indices, "x", x, /*same_view_ok=*/false);
  check_no_overlap(op, "indices", indices, "values", values, /*same_view_ok=*/false);
  TopKArgs a;
  a.x = as_rows(op, "x", x);
  a.values = as_rows(op, "values", values);
  a.indices = as_rows(op, "indices", indices);
  a.k = k;
  if (a.x.rows == 0) return;
  dispatch(op, s, x.dtype(), a);
}

}  // namespace mlxn
