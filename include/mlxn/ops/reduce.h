#pragma once
// Row reductions and orderings over the last dim: cumsum, argmax, argsort, top_k.
// Inputs are [..., cols] with the last dim contiguous and the leading dims collapsible into
// uniformly strided rows (contiguous tensors, row slices); rows are independent.
//
// Ordering of floats (argmax, argsort, top_k): NaN ranks above every number, +inf included,
// and all NaNs rank equal; -0.0 and +0.0 are equal. Equal values keep ascending index order
// (the lowest index wins ties).
#include <cstdint>

#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

// Inclusive prefix sum along the last dim: out[r, i] = sum_{j <= i} x[r, j].
// x, out: [..., cols] f32, f16 or bf16, same dtype and shape; accumulated in f32. In place
// (out = x) is allowed.
void cumsum(Session& s, const Tensor& x, const Tensor& out);

// Index of the largest element of each row. x: [..., cols] f32, f16 or bf16 with cols >= 1;
// out: i32, contiguous, shaped like x without its last dim ([1] for a 1-D x).
void argmax(Session& s, const Tensor& x, const Tensor& out);

// Indices that sort each row in descending order, stably (equal values keep ascending index
// order). x: [..., cols] f32; out: i32 of x's shape.
void argsort(Session& s, const Tensor& x, const Tensor& out);

// The k largest elements of each row, sorted descending, equal values by ascending index.
// x: [..., cols] f32; values: [..., k] f32; indices: [..., k] i32; 1 <= k <= cols.
void top_k(Session& s, const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices);

}  // namespace mlxn
