#pragma once
// Argument structs of the reduce family (cumsum, argmax, argsort, top_k).
#include "ops/validate.h"

namespace mlxn::detail {

struct CumsumArgs {
  RowView x, out;  // same dtype and shape
};

struct ArgmaxArgs {
  RowView x;               // cols >= 1
  int32_t* out = nullptr;  // [x.rows], contiguous
};

struct ArgsortArgs {
  RowView x;    // f32
  RowView out;  // i32, x's rows and cols
};

struct TopKArgs {
  RowView x;        // f32
  RowView values;   // f32 [x.rows, k]
  RowView indices;  // i32 [x.rows, k]
  int64_t k = 0;    // 1 <= k <= x.cols
};

}  // namespace mlxn::detail
