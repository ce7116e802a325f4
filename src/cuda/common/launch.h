#pragma once
// Small helpers shared by CUDA entry points.
#include <climits>
#include <cstdint>

#include "mlxn/error.h"
#include "ops/validate.h"

namespace mlxn::cuda {

// Null pointers count as aligned: an absent operand never blocks the vector path.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// A row view can be accessed with 16-byte vectors of `n` elements.
inline bool vectorizable(const detail::RowView& v, int n) {
  return !v.data || (aligned16(v.data) && v.cols % n == 0 && v.row_stride % n == 0);
}

// Grid extents beyond the hardware limit are rejected rather than truncated.
inline unsigned grid_dim(const char* op, int64_t blocks) {
  if (blocks > INT_MAX) throw_error<InvalidArgument>(op, blocks, " rows/blocks exceed the CUDA grid limit");
  return unsigned(blocks);
}

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

}  // namespace mlxn::cuda
