// CUDA entry for gdn_recurrent: GdnArgs -> kernel parameters.
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/gdn_launch.h"
#include "cuda/kernels/gdn_recurrent.cuh"
#include "ops/gdn_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

namespace k = kernels::gdn;

namespace {

template <class T, int K>
void launch(Session& s, const detail::GdnArgs& a) {
  k::RecurrentParams<T> p{};
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
  p.beta_kind = gdn_scalar_kind(a.beta.dtype);
  p.h0 = a.h0;
  p.ht = a.ht;
  p.seq = gdn_seq(a.seq, 0);
  p.H = int(a.H);
  p.group = int(a.H / a.Hk);
  p.V = int(a.V);
  p.scale = a.scale;
  p.l2_eps = a.l2_eps;
  p.l2 = a.l2_norm_qk;
  const dim3 grid(unsigned(a.V / k::kRecCols), unsigned(a.H), grid_dim("gdn_recurrent", a.seq.N));
  k::recurrent_kernel<T, K><<<grid, k::kRecThreads, 0, stream_of(s)>>>(p);
  check_launch(s, "gdn_recurrent");
}

}  // namespace

void gdn_recurrent_launch(Session& s, const detail::GdnArgs& a) {
  check_state_alignment("gdn_recurrent", a.h0, a.ht);
  dispatch_float(a.q.dtype, "gdn_recurrent", [&]<class T>() {
    dispatch_head_dim(a.K, [&]<int K>() { launch<T, K>(s, a); });
  });
}

namespace {
void gdn_recurrent_cuda(Session& s, const detail::GdnArgs& a) { gdn_recurrent_launch(s, a); }
}  // namespace

MLXN_REGISTER_KERNEL(gdn_recurrent, gdn, cuda, kFloatTypes, detail::GdnArgs, gdn_recurrent_cuda);

}  // namespace mlxn::cuda
