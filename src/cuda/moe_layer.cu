// CUDA entry for moe_layer: a decode-sized call at 4 bits runs the router kernel and the
// experts kernel (kernels/moe_layer_i8.cuh); the rest run the op's parts (moe_layer_composed).
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/moe_layer_i8.cuh"
#include "cuda/moe_experts_fused.h"
#include "ops/dispatch_int.h"
#include "ops/moe_layer_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::MoeLayerArgs;
namespace k = kernels::moe_i8;

namespace {

using C = k::MoeLayerConfig;
constexpr int64_t kDefaultSmem = 48 * 1024;

bool layer_domain(const MoeLayerArgs& a) {
  const detail::MoeExpertsArgs& ex = a.ex;
  return moe_experts_fused_domain(ex) && ex.tokens <= C::kMaxTokens && a.experts <= C::kMaxExperts && ex.top_k <= 32 &&
         ex.width % (2 * ex.q.group_size) == 0 && aligned_to(ex.down_m.scales, 4) && aligned_to(ex.down_m.biases, 4) &&
         aligned16(a.router_rows.data) && (a.router_rows.row_stride * 2) % 16 == 0 &&
         C::smem_bytes(ex.dim, a.experts) <= kDefaultSmem;
}

void moe_layer_cuda(Session& s, const MoeLayerArgs& a) {
  if (!layer_domain(a)) {
    detail::moe_layer_composed(s, a);
    return;
  }
  const char* op = "moe_layer";
  const detail::MoeExpertsArgs& ex = a.ex;
  const int64_t t = ex.tokens, e = a.experts, kk = ex.top_k, d = ex.dim, w = ex.width;
  const int64_t logit_bytes = (t * e * 2 + 15) / 16 * 16, partial_bytes = t * kk * (w / C::kColumns) * d * 4;
  const detail::RoutingOutputs r = detail::routing_outputs(s, a);
  ScratchBuffer scratch = s.pool().acquire(size_t(logit_bytes + partial_bytes + t * 4));
  auto* base = static_cast<char*>(scratch.data());

  k::MoeRouterParams rp{};
  rp.x = ex.xv.data, rp.x_stride = ex.xv.row_stride;
  rp.router = a.router_rows.data, rp.router_stride = a.router_rows.row_stride;
  rp.tokens = int(t), rp.experts = int(e), rp.dim = int(d);
  rp.logits = base;
  rp.tickets = reinterpret_cast<uint32_t*>(base + logit_bytes + partial_bytes);

  k::MoeLayerParams p{};
  p.ex = moe_expert_params(ex);
  const MoeRouteParams& route = a.p.route;
  p.route = kernels::RouteParams{base,
                                 e,
                                 int(t),
                                 int(e),
                                 int(kk),
                                 route.scoring == MoeScoring::sigmoid,
                                 route.renormalize,
                                 route.expert_scale ? route.expert_scale->data_as<const float>() : nullptr,
                                 route.score_bias ? route.score_bias->data_as<const float>() : nullptr,
                                 static_cast<uint32_t*>(r.ids.data()),
                                 r.weights.data_as<float>()};
  p.partials = reinterpret_cast<float*>(base + logit_bytes);
  p.tickets = rp.tickets;

  const size_t smem = size_t(C::smem_bytes(d, e));
  const bool gelu = a.p.act == GluKind::gelu_tanh;
  dispatch_float(ex.gate_m.scale_dtype, op, [&]<class ST>() {
    dispatch_half(ex.x.dtype(), op, [&]<class CT>() {
      detail::dispatch_int<64, 128>(ex.q.group_size, [&]<int GS>() {
        auto experts =
            gelu ? k::moe_layer_experts_kernel<CT, ST, GS, true> : k::moe_layer_experts_kernel<CT, ST, GS, false>;
        // The finishing blocks of every token wait for the others: they must leave room for them.
        if (t * (d / C::kFinishRows) * 2 > resident_blocks(experts, C::kThreads, smem)) {
          detail::moe_layer_composed(s, a);
          return;
        }
        launch_pdl(s, op, k::moe_layer_router_kernel<CT>, dim3(unsigned((e + C::kRouterWarps - 1) / C::kRouterWarps)),
                   dim3(32 * C::kRouterWarps), 0, rp);
        MLXN_CUDA_CHECK(launch_pdl_clusters(experts, dim3(unsigned(w / 8), unsigned(t * kk)), dim3(C::kThreads), smem,
                                            stream_of(s), unsigned(C::kCluster), p));
        check_launch(s, op);
      });
    });
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(moe_layer, moe, cuda, kFloatTypes, detail::MoeLayerArgs, moe_layer_cuda);

}  // namespace mlxn::cuda
