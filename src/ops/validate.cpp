#include "ops/validate.h"

#include <cmath>
#include <cstdint>

namespace mlxn::detail {

void check_defined(const char* op, const char* name, const Tensor& t) {
  if (!t.defined()) throw_error<InvalidArgument>(op, name, " is a null tensor with ", t.numel(), " elements");
}

void check_device(const char* op, const Session& s, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  if (t.device() != s.device())
    throw_error<InvalidArgument>(op, name, " is on ", t.device().str(), " but the session runs on ", s.device().str());
}

void check_dtype(const char* op, const char* name, const Tensor& t, DTypeSet allowed) {
  if (!allowed.contains(t.dtype()))
    throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(t.dtype()), ", which this op does not accept");
}

void check_same_dtype(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b) {
  if (a.dtype() != b.dtype())
    throw_error<InvalidArgument>(op, nb, " has dtype ", name(b.dtype()), ", expected ", name(a.dtype()), " like ", na);
}

void check_shape(const char* op, const char* name, const Tensor& t, const Dims& expected) {
  if (!(t.shape() == expected))
    throw_error<InvalidArgument>(op, name, " has shape ", t.shape().str(), ", expected ", expected.str());
}

void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b) {
  if (!(a.shape() == b.shape()))
    throw_error<InvalidArgument>(op, nb, " has shape ", b.shape().str(), ", expected ", a.shape().str(), " like ", na);
}

void check_ndim(const char* op, const char* name, const Tensor& t, int min_ndim, int max_ndim) {
  if (t.ndim() < min_ndim || t.ndim() > max_ndim)
    throw_error<InvalidArgument>(op, name, " has ", t.ndim(), " dims, expected ", min_ndim, "..", max_ndim);
}

void check_contiguous(const char* op, const char* name, const Tensor& t) {
  if (!t.is_contiguous())
    throw_error<InvalidArgument>(op, name, " must be contiguous (strides ", t.strides().str(), ")");
}

void check_eps(const char* op, double eps) {
  if (!(eps >= 0.0) || !std::isfinite(eps)) throw_error<InvalidArgument>(op, "eps must be finite and >= 0, got ", eps);
}

ByteSpan byte_span(const Tensor& t) {
  if (t.numel() == 0 || !t.data()) return {};
  const auto base = reinterpret_cast<uintptr_t>(t.data());
  int64_t lo = 0, hi = 0;
  for (int i = 0; i < t.ndim(); ++i) {
    const int64_t reach = (t.shape()[i] - 1) * t.strides()[i];
    (reach < 0 ? lo : hi) += reach;
  }
  const auto es = int64_t(element_size(t.dtype()));
  return {base + uintptr_t(lo * es), base + uintptr_t((hi + 1) * es)};
}

void check_no_overlap(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in,
                      bool same_view_ok) {
  const ByteSpan a = byte_span(out), b = byte_span(in);
  if (a.lo >= b.hi || b.lo >= a.hi) return;
  const bool same_view = out.data() == in.data() && out.shape() == in.shape() && out.strides() == in.strides() &&
                         out.dtype() == in.dtype();
  if (same_view && same_view_ok) return;
  throw_error<InvalidArgument>(op, out_name, " overlaps ", in_name,
                               same_view ? " (in-place is not allowed for this op)" : " (partial aliasing)");
}

RowView as_rows(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  if (t.ndim() < 1) throw_error<InvalidArgument>(op, name, " must have at least 1 dim");
  RowView v;
  v.dtype = t.dtype();
  v.data = t.data();
  v.cols = t.dim(-1);
  v.rows = v.cols == 0 ? 0 : t.numel() / v.cols;
  if (v.cols > kMaxRowWidth) throw_error<InvalidArgument>(op, name, " rows of ", v.cols, " elements are too wide");
  if (t.numel() == 0) return v;
  if (t.stride(-1) != 1 && v.cols > 1)
    throw_error<InvalidArgument>(op, name, " last dim must be contiguous (stride ", t.stride(-1), ")");
  // Leading dims must collapse into one uniformly strided row axis.
  int64_t row_stride = 0, expect = 0;
  bool first = true;
  for (int i = t.ndim() - 2; i >= 0; --i) {
    if (t.shape()[i] == 1) continue;
    if (first) {
      row_stride = t.strides()[i];
      expect = row_stride * t.shape()[i];
      first = false;
    } else {
      if (t.strides()[i] != expect)
        throw_error<InvalidArgument>(op, name, " leading dims do not collapse into rows (strides ", t.strides().str(),
                                     ")");
      expect *= t.shape()[i];
    }
  }
  v.row_stride = first ? v.cols : row_stride;
  if (v.rows > 1 && v.row_stride < v.cols)
    throw_error<InvalidArgument>(op, name, " rows overlap (row stride ", v.row_stride, " < width ", v.cols, ")");
  return v;
}

RowPair check_rowwise(const char* op, const Session& s, const Tensor& x, const Tensor& out, DTypeSet allowed,
                      bool in_place_ok) {
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, allowed);
  check_same_dtype(op, "x", x, "out", out);
  check_same_shape(op, "x", x, "out", out);
  check_no_overlap(op, "out", out, "x", x, in_place_ok);
  return {as_rows(op, "x", x), as_rows(op, "out", out)};
}

}  // namespace mlxn::detail
