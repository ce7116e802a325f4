// CUDA entry for moe_layer: one decode token with 4-bit experts runs the persistent kernel
// (kernels/moe_layer_i8.cuh); the rest run the op's parts (moe_layer_composed).
#include <cstdlib>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/moe_layer_i8.cuh"
#include "cuda/moe_expert_params.h"
#include "ops/moe_layer_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::MoeLayerArgs;
namespace k = kernels::moe_i8;

namespace {

using C = k::MoeLayerConfig;

// The kernel's shape on this device, or nothing outside its domain.
struct Plan {
  k::MoeLayerSplit split{};
  k::MoeLayerLayout layout{};
};

bool operands_fit(const MoeLayerArgs& a) {
  const detail::MoeExpertsArgs& x = a.experts;
  const int64_t es = int64_t(element_size(x.x.dtype()));
  const bool x16 = x.x.dtype() == DType::bf16 || x.x.dtype() == DType::f16;
  const detail::MlxQuantMatrix* mats[] = {&x.gate_m, &x.up_m, &x.down_m};
  bool aligned = aligned16(x.xv.data) && aligned16(a.router_rows.data) && (a.router_rows.row_stride * es) % 16 == 0;
  for (const auto* m : mats) aligned = aligned && aligned16(m->packed) && aligned16(m->scales) && aligned16(m->biases);
  return x.tokens == 1 && x.q.bits == 4 && (x.q.group_size == 64 || x.q.group_size == 128) && x16 &&
         x.gate_m.experts <= C::kMaxExperts && x.top_k <= C::kMaxTopK && x.dim % 128 == 0 && x.width % 128 == 0 &&
         x.dim <= (1 << 16) && x.width <= (1 << 16) && aligned;
}

// The split over one block per SM (fewer when the down tiles would outweigh a block's share of
// the gate/up bytes: MoeLayerSplit's monotonic condition) and the shared memory it needs, if
// that fits the device.
std::optional<Plan> plan(const MoeLayerArgs& a, int device) {
  int major = 0, sms = 0, coop = 0, smem_max = 0;
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (major < 9 || !coop || !operands_fit(a)) return std::nullopt;  // bulk copies need sm_90
  const detail::MoeExpertsArgs& x = a.experts;
  const int64_t D = x.dim, I = x.width, topk = x.top_k, E = x.gate_m.experts, gs = x.q.group_size;
  const int64_t ss = int64_t(element_size(x.gate_m.scale_dtype));
  Plan pl;
  k::MoeLayerSplit& sp = pl.split;
  sp.gu_tiles = topk * I / C::kGateUpRows;
  sp.down_tiles = D / C::kDownRows;
  sp.gu_bytes = C::kGateUpRows * (2 * D / 2 + 4 * (D / gs) * ss);
  sp.slot_bytes = C::kDownRows * (I / 2 + 2 * (I / gs) * ss);
  sp.down_bytes = topk * sp.slot_bytes;
  sp.blocks = int(std::clamp<int64_t>(sp.gu_tiles * sp.gu_bytes / sp.down_bytes, 1, sms));
  int64_t most_gu = 0;
  for (int b = 0; b < sp.blocks; ++b) most_gu = std::max(most_gu, sp.gu_before(b + 1) - sp.gu_before(b));
  const int64_t most_down = (sp.down_tiles + sp.blocks - 1) / sp.blocks;
  auto up16 = [](int64_t v) { return (v + 15) / 16 * 16; };
  k::MoeLayerLayout& l = pl.layout;
  l.down = most_gu * sp.gu_bytes;
  l.x_image = l.down + most_down * sp.down_bytes;
  l.act_images = l.x_image + kernels::QmvI8Image::units(D) * 16;
  l.logits = l.act_images + topk * kernels::QmvI8Image::units(I) * 16;
  l.keys = l.logits + up16(E * 4);
  l.partials = l.keys + E * 8;
  l.bars = l.partials + most_gu * C::kWarps * C::kGateUpRows * 8;
  l.total = l.bars + (most_gu + most_down * topk) * 8;
  // The static shared memory (reduction, routing) comes on top: keep 4 KB for it.
  if (l.total + 4096 > smem_max) return std::nullopt;
  return pl;
}

void moe_layer_cuda(Session& s, const MoeLayerArgs& a) {
  const std::optional<Plan> pl = plan(a, s.device().index);
  if (!pl) {
    detail::moe_layer_composed(s, a);
    return;
  }
  const char* op = "moe_layer";
  const detail::MoeExpertsArgs& x = a.experts;
  ScratchBuffer act = s.pool().acquire(size_t(x.top_k * x.width) * element_size(x.x.dtype()));
  ScratchBuffer logits = s.pool().acquire(size_t(x.gate_m.experts) * sizeof(float));
  k::MoeLayerKernelParams p{};
  p.e = expert_params(x, act.data());
  p.router = a.router_rows.data, p.router_stride = a.router_rows.row_stride;
  p.logits = static_cast<float*>(logits.data());
  p.expert_scale = a.route.expert_scale, p.score_bias = a.route.score_bias;
  p.sigmoid = a.route.sigmoid, p.renormalize = a.route.renormalize;
  if (a.ids) {
    p.ids_out = a.ids->data(), p.ids_out_u32 = a.ids->dtype() == DType::u32;
    p.weights_out = a.weights->data_as<float>();
  }
  p.mode = getenv("MLXN_MOE_MODE") ? atoi(getenv("MLXN_MOE_MODE")) : 0;
  p.split = pl->split;
  p.layout = pl->layout;
  const bool gelu = x.p.act == GluKind::gelu_tanh;
  const int smem = int(pl->layout.total);
  dispatch_float(x.gate_m.scale_dtype, op, [&]<class ST>() {
    auto run = [&]<class CT, int GS>() {
      auto kernel = gelu ? k::moe_layer_kernel<CT, ST, GS, true> : k::moe_layer_kernel<CT, ST, GS, false>;
      MLXN_CUDA_CHECK(launch_cooperative(with_smem(kernel, smem), dim3(unsigned(pl->split.blocks)), dim3(C::kThreads),
                                         size_t(smem), stream_of(s), p));
      check_launch(s, op);
    };
    dispatch_half(x.x.dtype(), op, [&]<class CT>() {
      detail::dispatch_int<64, 128>(x.q.group_size, [&]<int GS>() { run.template operator()<CT, GS>(); });
    });
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(moe_layer, moe, cuda, kFloatTypes, detail::MoeLayerArgs, moe_layer_cuda);

}  // namespace mlxn::cuda
