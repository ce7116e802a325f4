#pragma once
// Checks shared by the gdn frontends (conv, gates, delta rule, chunk stages).
#include <optional>

#include "ops/gdn_args.h"

namespace mlxn::detail {

// A [B, T, heads, dim] tensor as a HeadView; `heads` and `dim` are checked when >= 0.
// Outputs (`output`) must not have elements that overlap each other.
HeadView as_heads(const char* op, const Session& s, const char* name, const Tensor& t, int64_t B, int64_t T,
                  int64_t heads, int64_t dim, bool output = false);
// A [B, T, H] tensor (or [rows, H] when B < 0) as a RowView of B*T rows.
RowView as_token_rows(const char* op, const Session& s, const char* name, const Tensor& t, int64_t B, int64_t T,
                      int64_t H);
// cu_seqlens: i32 [N + 1] on the session's device, B == 1; on the CPU its values are checked
// (0 first, non-decreasing, T last). Fills seq.
SeqLayout seq_layout(const char* op, const Session& s, int64_t B, int64_t T, const std::optional<Tensor>& cu);
// A contiguous f32 state [N, H, K, V].
const float* state_ptr(const char* op, const Session& s, const char* name, const Tensor& t, int64_t N, int64_t H,
                       int64_t K, int64_t V);
// K and V the CUDA kernels are built for.
void check_cuda_head_dims(const char* op, const Session& s, int64_t K, int64_t V);

}  // namespace mlxn::detail
