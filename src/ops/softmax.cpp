// Frontend of softmax: validation and dispatch.
#include "mlxn/ops/softmax.h"

#include <cmath>

#include "ops/registry.h"
#include "ops/softmax_args.h"

namespace mlxn {

using namespace detail;

void softmax(Session& s, const Tensor& x, const Tensor& out, const SoftmaxParams& p) {
  const char* op = "softmax";
  const RowPair rows = check_rowwise(op, s, x, out, kFloatTypes);
  if (!std::isfinite(p.scale)) throw_error<InvalidArgument>(op, "scale must be finite, got ", p.scale);
  if (!(p.softcap >= 0.f) || !std::isfinite(p.softcap))
    throw_error<InvalidArgument>(op, "softcap must be finite and >= 0 (0 = off), got ", p.softcap);
  SoftmaxArgs a;
  a.x = rows.x;
  a.out = rows.out;
  a.scale = p.scale;
  a.softcap = p.softcap;
  if (p.mask) {
    const Tensor& m = *p.mask;
    check_device(op, s, "mask", m);
    check_dtype(op, "mask", m, kFloatTypes);
    if (m.dtype() != DType::f32 && m.dtype() != x.dtype())
      throw_error<InvalidArgument>(op, "mask has dtype ", name(m.dtype()), ", expected f32 or ", name(x.dtype()));
    check_ndim(op, "mask", m, 1, 2);
    if (x.ndim() < 1 || m.dim(-1) != x.dim(-1))
      throw_error<InvalidArgument>(op, "mask has shape ", m.shape().str(), ", its last dim must be x's ",
                                   x.ndim() ? x.dim(-1) : 0);
    check_no_overlap(op, "out", out, "mask", m, /*same_view_ok=*/false);
    a.mask = as_rows(op, "mask", m);
    if (m.ndim() == 1) a.mask.rows = 1;  // [cols]: one row for all (also when cols is 0)
    if (a.x.rows > 0 && (a.mask.rows == 0 || a.x.rows % a.mask.rows != 0))
      throw_error<InvalidArgument>(op, "mask has ", a.mask.rows, " rows, which do not divide x's ", a.x.rows, " rows");
  }
  if (a.x.rows == 0 || a.x.cols == 0) return;  // empty tensors are valid no-ops
  dispatch(op, s, x.dtype(), a);
}

}  // namespace mlxn
