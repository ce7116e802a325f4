#pragma once
// The one argument struct behind every op of the activation and elementwise families: one or
// two inputs and an output as row views, and the functor's parameter. The op name picks the
// functor (src/ops/elementwise_math.h).
#include "ops/validate.h"

namespace mlxn::detail {

struct ElementwiseArgs {
  RowView x;                         // first input (gate, x, a)
  RowView y;                         // second input of binary ops (up, g, b); row_stride 0: one row broadcast
                                     // over every row of x
  RowView out;                       // rows and cols are the extent of the op
  const float* row_scale = nullptr;  // scale_rows: one factor per row, f32 [rows]
  float param = 0.f;                 // softcap: cap; scale: factor
  bool gelu_erf = false;             // gelu, gelu_mul: the erf form, not the tanh approximation
};

// Frontend helpers shared by the activation and elementwise frontends (src/ops/elementwise.cpp).
// x and out: on the session's device, x's dtype in `dtypes`, out of x's dtype and shape, out
// the same view as x or disjoint from it.
ElementwiseArgs unary_args(const char* op, Session& s, const char* x_name, const Tensor& x, const Tensor& out,
                           DTypeSet dtypes = kFloatTypes);
// unary_args plus a second input of x's dtype and shape.
ElementwiseArgs binary_args(const char* op, Session& s, const char* x_name, const Tensor& x, const char* y_name,
                            const Tensor& y, const Tensor& out);
// Dispatches `op` on x's dtype; an empty output is a no-op.
void run_elementwise(const char* op, Session& s, const ElementwiseArgs& a);

}  // namespace mlxn::detail
