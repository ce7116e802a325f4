#pragma once
// Shared between the CUDA entry points of the GGUF quant family (quant_gguf.cu) and the
// tensor-core mat-vec launchers (quant_gguf_matvec.cu), compiled separately to keep each
// translation unit's instantiations few.
#include "mlxn/session.h"
#include "ops/quant_gguf_args.h"

namespace mlxn::cuda {

// The routed rows grouped by expert on the device (all null for a plain matmul):
// order[offsets[e] .. offsets[e + 1]) are the rows routed to expert e, bucket E holds rows
// with an out-of-range id, active[0 .. *n_active) lists the non-empty buckets.
struct GgufGroups {
  const int* offsets = nullptr;
  const int* order = nullptr;
  const int* active = nullptr;
  const int* n_active = nullptr;
  int grid_buckets = 1;  // blocks along y: an upper bound on the non-empty buckets
};

// out rows = x rows · W^T on tensor cores, for a plain matmul (M <= 64) or routed rows.
void gguf_matvec(Session& s, const detail::GgufMatmulArgs& a, const GgufGroups& groups);

// The integer tensor-core mat-vecs: one token by a Q4_0, Q4_K or Q5_K weight (plain or
// routed, no grouping of routed rows needed) or 2..8 rows by Q4_K, and whether a call is in
// their domain.
bool integer_matvec(const detail::GgufMatmulArgs& a);
void gguf_matvec_i8(Session& s, const detail::GgufMatmulArgs& a);

}  // namespace mlxn::cuda
