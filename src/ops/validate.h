#pragma once
// Input checks shared by every frontend. Each throws a typed Error whose message starts
// with the op's name and carries the offending values.
#include <cstdint>
#include <optional>

#include "mlxn/error.h"
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn::detail {

// Largest extent a kernel indexes with 32-bit arithmetic inside one row.
inline constexpr int64_t kMaxRowWidth = int64_t(1) << 30;

void check_device(const char* op, const Session& s, const char* name, const Tensor& t);
void check_dtype(const char* op, const char* name, const Tensor& t, DTypeSet allowed);
void check_same_dtype(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b);
void check_shape(const char* op, const char* name, const Tensor& t, const Dims& expected);
void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b);
void check_ndim(const char* op, const char* name, const Tensor& t, int min_ndim, int max_ndim = kMaxDims);
void check_contiguous(const char* op, const char* name, const Tensor& t);
void check_eps(const char* op, double eps);
void check_defined(const char* op, const char* name, const Tensor& t);

// Byte range [lo, hi) that a tensor's elements can touch.
struct ByteSpan {
  uintptr_t lo = 0, hi = 0;
};
ByteSpan byte_span(const Tensor& t);
// An output may be the same view as an input (in place) only where the op allows it; any
// other overlap between an output and an input is rejected.
void check_no_overlap(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in,
                      bool same_view_ok);

// A tensor seen as a matrix [rows, cols]: the last dim contiguous and every row a fixed
// stride apart (a contiguous tensor, or a row slice of one). The layout every row-wise op
// (norms, activations, softmax) reads and writes.
struct RowView {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // elements
  DType dtype = DType::f32;
};
RowView as_rows(const char* op, const char* name, const Tensor& t);

// The checks of an op mapping x to an out of the same dtype and shape, row by row: both on
// the session's device, x's dtype in `allowed`, out like x, no partial overlap (out may be x
// itself when in_place_ok). Returns both as row views.
struct RowPair {
  RowView x, out;
};
RowPair check_rowwise(const char* op, const Session& s, const Tensor& x, const Tensor& out, DTypeSet allowed,
                      bool in_place_ok = true);

}  // namespace mlxn::detail
