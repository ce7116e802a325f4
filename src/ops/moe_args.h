#pragma once
// Argument structs behind the moe family (internal).
#include "mlxn/ops/moe.h"
#include "ops/validate.h"

namespace mlxn::detail {

// Largest expert count moe_route accepts (the block path keeps one f32 per expert in
// shared memory).
inline constexpr int64_t kMaxRouteExperts = 8192;

struct MoeRouteArgs {
  RowView logits;  // [T, E]
  int64_t top_k = 1;
  bool sigmoid = false;  // false: softmax
  bool renormalize = false;
  const float* expert_scale = nullptr;  // [E] or null
  const float* score_bias = nullptr;    // [E] or null
  void* ids = nullptr;                  // [T, top_k] u32/i32 contiguous
  float* weights = nullptr;             // [T, top_k] contiguous
};

// The checks of moe_route's parameters for E experts (top_k in 1..E, the [E] f32 vectors), and
// the args they fill (all but logits, ids and weights).
MoeRouteArgs route_args(const char* op, Session& s, int64_t experts, const MoeRouteParams& p);

struct MoeSumArgs {
  DType dtype = DType::f32;
  int64_t tokens = 0, top_k = 0, dim = 0;
  RowView y;                       // rows t * top_k + j
  const float* weights = nullptr;  // [T, top_k]
  RowView out;                     // [T, D]
  RowView shared;                  // data may be null
  RowView residual;                // data may be null
  const void* gate = nullptr;      // [T] with stride gate_stride, or null
  int64_t gate_stride = 1;
  DType gate_dtype = DType::f32;
};

struct MoeGluArgs {
  RowView gate_up;    // [rows, 2I]
  RowView out;        // [rows, I]
  bool gelu = false;  // false: silu
};

struct MoeGroupArgs {
  const void* ids = nullptr;  // [P] i32 / u32
  int64_t pairs = 0;
  int64_t experts = 0;
  void* sorted_rows = nullptr;  // [P] i32 / u32
  void* offsets = nullptr;      // [E + 1] i32 / u32
};

}  // namespace mlxn::detail
