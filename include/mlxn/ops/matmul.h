#pragma once
// Dense matrix products: GEMM / GEMV, batched with a broadcast batch (grouped heads), and the
// expert-routed product of mixture-of-experts layers. f32, f16 and bf16; every operand of
// one call shares a dtype; products accumulate in f32 (f32 inputs stay exact f32: no TF32).
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

struct MatmulParams {
  // true: b is [..., N, K] (weights as stored by every checkpoint, "NT"); false: b is [..., K, N].
  bool b_transposed = true;
  // out = alpha * a . b^T + beta * out. With beta == 0, out is never read (it may hold NaN).
  float alpha = 1.f;
  float beta = 0.f;
};

// a: [..., M, K]; b: [..., N, K] (or [..., K, N], see b_transposed); out: [..., M, N] with
// a's dtype. Batch dims of a and out must match; b's batch (flattened) may equal a's, divide
// it (a batch i uses b batch i / (Ba / Bb): grouped-query heads), or be absent (shared
// weights). Each matrix may be a row-major or a column-major (transposed) view, with any row
// stride; the batch dims of each tensor must collapse into one uniform stride. out must be
// row-major (last dim contiguous) and may not overlap a or b.
void matmul(Session& s, const Tensor& a, const Tensor& b, const Tensor& out, const MatmulParams& p = {});

// Expert-routed product: out[t, j, :] = x[t, :] . w[ids[t, j]]^T
//   x: [T, K] (every routed slot of a token reads the token's row) or [T, top_k, K]
//   w: [E, N, K] contiguous (experts stacked); ids: [T, top_k] i32 or u32, contiguous
//   out: [T, top_k, N] contiguous, x's dtype.
// A few tokens (decode) run a mat-vec kernel that indexes the expert per row; more tokens
// (prefill) are grouped by expert on the device so that each expert runs one GEMM. Nothing
// is copied to the host. An id outside [0, E) is not an error the device can report without
// a round trip: its output row is written as zeros, on every backend.
void matmul_id(Session& s, const Tensor& x, const Tensor& w, const Tensor& ids, const Tensor& out);

}  // namespace mlxn
