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
  fill_gdn_operands<T>(p, a, 0);
  const dim3 grid(unsigned(a.V / k::kRecCols), unsigned(a.H), grid_dim("gdn_recurrent", a.seq.N));
  // Programmatic dependent launch: a decode step's blocks are scheduled while the previous
  // kernel drains (the kernel waits for it before touching memory).
  launch_pdl(s, "gdn_recurrent", k::recurrent_kernel<T, K>, grid, dim3(k::kRecThreads), 0, p);
}

}  // namespace

void gdn_recurrent_launch(Session& s, const detail::GdnArgs& a) {
  check_state_alignment("gdn_recurrent", a.h0, a.ht);
  dispatch_float(a.q.dtype, "gdn_recurrent",
                 [&]<class T>() { dispatch_head_dim(a.K, [&]<int K>() { launch<T, K>(s, a); }); });
}

namespace {
void gdn_recurrent_cuda(Session& s, const detail::GdnArgs& a) { gdn_recurrent_launch(s, a); }
}  // namespace

MLXN_REGISTER_KERNEL(gdn_recurrent, gdn, cuda, kFloatTypes, detail::GdnArgs, gdn_recurrent_cuda);

}  // namespace mlxn::cuda
