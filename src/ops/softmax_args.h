#pragma once
// The argument struct behind softmax.
#include "ops/validate.h"

namespace mlxn::detail {

struct SoftmaxArgs {
  RowView x, out;
  // mask.data null: no mask. Else mask.rows divides x.rows and row r reads mask row
  // r % mask.rows; mask.cols == x.cols; mask.dtype is f32 or x's dtype.
  RowView mask;
  float scale = 1.f;
  float softcap = 0.f;  // 0 = off
};

}  // namespace mlxn::detail
