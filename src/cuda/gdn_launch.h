#pragma once
// Host-side helpers shared by the gdn CUDA entry files.
#include <cstdint>

#include "cuda/kernels/gdn_common.cuh"
#include "mlxn/error.h"
#include "mlxn/session.h"
#include "ops/gdn_args.h"

namespace mlxn::cuda {

inline int gdn_scalar_kind(DType t) { return t == DType::f32 ? 0 : t == DType::f16 ? 1 : 2; }

inline kernels::gdn::SeqLayout gdn_seq(const detail::SeqLayout& l, int64_t slots) {
  return {l.cu, l.T, l.N, slots};
}

// The state kernels move [K, V] f32 slices with 16-byte accesses.
inline void check_state_alignment(const char* op, const float* h0, const float* ht) {
  for (const float* p : {h0, static_cast<const float*>(ht)})
    if (p && (reinterpret_cast<uintptr_t>(p) & 15) != 0)
      throw_error<Unsupported>(op, "cuda: states must be 16-byte aligned");
}

// Calls f.template operator()<D>() for D in {64, 128, 256} (validated by the frontend).
template <class F>
void dispatch_head_dim(int64_t d, F&& f) {
  switch (d) {
    case 64: f.template operator()<64>(); break;
    case 128: f.template operator()<128>(); break;
    case 256: f.template operator()<256>(); break;
    default: throw_error<Unsupported>("gdn", "cuda: head dim ", d, " not built (64, 128, 256)");
  }
}

// The token-sequential kernel.
void gdn_recurrent_launch(Session& s, const detail::GdnArgs& a);
// gdn_chunk as the six stage kernels with f32 intermediates (any dtype).
void gdn_chunk_composed(Session& s, const detail::GdnArgs& a);

}  // namespace mlxn::cuda
