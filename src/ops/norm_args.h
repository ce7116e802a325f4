#pragma once
// The one argument struct behind every norm op: a row statistic, then an epilogue.
#include "ops/validate.h"

namespace mlxn::detail {

enum class NormStat : int { rms, l2, layer };
// What follows y = normalised(x) * w (+ b):
enum class NormEpilogue : int {
  none,
  mul,   // y *= other
  gate,  // y *= silu(other)
  add,   // y += other
};

struct NormArgs {
  NormStat stat = NormStat::rms;
  NormEpilogue epilogue = NormEpilogue::none;
  RowView x, out;
  RowView residual;  // when residual.data: x := x + residual before the statistic
  RowView sum_out;   // when sum_out.data: the pre-norm sum is written here
  RowView other;     // the epilogue operand
  const void* weight = nullptr;
  const void* bias = nullptr;
  DType weight_dtype = DType::f32;
  bool weight_offset = false;
  float eps = 0.f;
};

}  // namespace mlxn::detail
