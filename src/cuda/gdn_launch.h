#pragma once
// Host-side helpers shared by the gdn CUDA entry files.
#include <cstdint>

#include "cuda/common/dispatch.cuh"
#include "cuda/kernels/gdn_common.cuh"
#include "mlxn/error.h"
#include "mlxn/session.h"
#include "ops/dispatch_int.h"
#include "ops/gdn_args.h"

namespace mlxn::cuda {

inline kernels::gdn::SeqLayout gdn_seq(const detail::SeqLayout& l, int64_t slots) { return {l.cu, l.T, l.N, slots}; }

// Fills the fields every token-walking gdn kernel shares (q/k/v/out pointers and strides, g,
// beta, states, sequence layout, head counts, scale, l2 option) from the op's arguments.
template <class T, class P>
void fill_gdn_operands(P& p, const detail::GdnArgs& a, int64_t slots) {
  p.q = static_cast<const T*>(a.q.data);
  p.k = static_cast<const T*>(a.k.data);
  p.v = static_cast<const T*>(a.v.data);
  p.out = static_cast<T*>(a.out.data);
  p.q_tok = a.q.token_stride, p.q_head = a.q.head_stride;
  p.k_tok = a.k.token_stride, p.k_head = a.k.head_stride;
  p.v_tok = a.v.token_stride, p.v_head = a.v.head_stride;
  p.o_tok = a.out.token_stride, p.o_head = a.out.head_stride;
  p.g = static_cast<const float*>(a.g.data);
  p.g_stride = a.g.row_stride;
  p.beta = a.beta.data;
  p.beta_stride = a.beta.row_stride;
  p.beta_kind = float_kind(a.beta.dtype);
  p.h0 = a.h0;
  p.ht = a.ht;
  p.seq = gdn_seq(a.seq, slots);
  p.H = int(a.H);
  p.group = int(a.H / a.Hk);
  p.V = int(a.V);
  p.scale = a.scale;
  p.l2_eps = a.l2_eps;
  p.l2 = a.l2_norm_qk;
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
  if (!detail::dispatch_int<64, 128, 256>(int(d), f))
    throw_error<Unsupported>("gdn", "cuda: head dim ", d, " not built (64, 128, 256)");
}

// The token-sequential kernel.
void gdn_recurrent_launch(Session& s, const detail::GdnArgs& a);
// gdn_chunk as the six stage kernels with f32 intermediates (any dtype).
void gdn_chunk_composed(Session& s, const detail::GdnArgs& a);

}  // namespace mlxn::cuda
