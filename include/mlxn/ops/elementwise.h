#pragma once
// Elementwise arithmetic and dtype conversion over any tensor whose last dim is contiguous
// and whose leading dims collapse into uniformly strided rows (contiguous tensors, row
// slices). Float math runs in f32 and is rounded once to the output dtype. out may be an
// input itself (the same view: in place), but may not partly overlap one.
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

// y = a + b and y = a * b. a, b, out share one float dtype; b is either a's shape or a row
// vector [cols] (cols = a's last dim) broadcast over every row of a.
void add(Session& s, const Tensor& a, const Tensor& b, const Tensor& out);
void mul(Session& s, const Tensor& a, const Tensor& b, const Tensor& out);
// y = x * factor (factor finite)
void scale(Session& s, const Tensor& x, const Tensor& out, float factor);
// y[r, :] = x[r, :] * row_scale[r]; row_scale is f32 [rows], rows = the product of x's
// leading dims.
void scale_rows(Session& s, const Tensor& x, const Tensor& row_scale, const Tensor& out);
// out = x converted to out's dtype: any of f32/f16/bf16 to any of them (round to nearest
// even, NaN stays NaN, overflow becomes inf), and same-dtype copies of i32 and u32.
void cast(Session& s, const Tensor& x, const Tensor& out);

}  // namespace mlxn
