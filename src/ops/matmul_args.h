#pragma once
// Argument structs behind the matmul family (internal).
#include "ops/validate.h"

namespace mlxn::detail {

// One matrix operand of a batched product. Element (r, c) of batch i lives at
//   data + i * batch_stride + (col_major ? c * ld + r : r * ld + c)      (elements)
// ld >= the extent it strides over (BLAS rules); batch_stride 0 = one matrix for every batch.
struct MatOperand {
  const void* data = nullptr;
  int64_t ld = 0;
  bool col_major = false;
  int64_t batch_stride = 0;
};

// out[i] = alpha * A[i] . B[i / group]^T + beta * out[i], for i in [0, batch)
//   A: logical [m, k]; B: logical [n, k]; out: row-major [m, n], row stride ldo.
// The frontend folds batches into rows wherever the layout allows (shared weights, grouped
// heads stored back to back), so group > 1 only remains where it cannot.
struct MatmulArgs {
  DType dtype = DType::f32;
  int64_t m = 0, n = 0, k = 0;
  int64_t batch = 1;
  int64_t group = 1;
  MatOperand a, b;
  void* out = nullptr;
  int64_t ldo = 0;
  int64_t out_batch_stride = 0;
  float alpha = 1.f, beta = 0.f;
};

// out[p, :] = x[row(p), :] . w[ids[p]]^T for every routed pair p = t * top_k + j.
struct MatmulIdArgs {
  DType dtype = DType::f32;
  int64_t tokens = 0, top_k = 0, experts = 0;
  int64_t n = 0, k = 0;
  const void* x = nullptr;
  int64_t x_row_stride = 0;   // elements between consecutive x rows
  bool x_per_slot = false;    // x is [T, top_k, K] (row p) rather than [T, K] (row p / top_k)
  const void* w = nullptr;    // [E, N, K] contiguous
  const void* ids = nullptr;  // [T * top_k] i32 / u32 (same bits for valid ids)
  void* out = nullptr;        // [T * top_k, N] contiguous
};

}  // namespace mlxn::detail
