// CUDA entry for moe_experts: decode-sized calls at 4 bits run the two fused kernels
// (kernels/moe_experts_i8.cuh); the rest run the op's four parts (moe_experts_composed).
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/moe_experts_i8.cuh"
#include "ops/moe_experts_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::MoeExpertsArgs;
namespace k = kernels::moe_i8;

namespace {

using C = k::MoeExpertConfig;
// Tokens per call up to which the fused kernels run: decode and small batches. Both kernels
// re-read their x from L2 per block, which is nothing at these sizes.
constexpr int64_t kMaxFusedTokens = 64;
// Shared memory the fused kernels take without raising their limit.
constexpr int64_t kDefaultSmem = 48 * 1024;

bool fused_domain(const MoeExpertsArgs& a) {
  const int64_t es = int64_t(element_size(a.x.dtype()));
  const bool x16 = a.x.dtype() == DType::bf16 || a.x.dtype() == DType::f16;
  return a.q.bits == 4 && (a.q.group_size == 64 || a.q.group_size == 128) && x16 && a.tokens <= kMaxFusedTokens &&
         a.top_k <= C::kMaxTopK && a.dim % 128 == 0 && a.width % 128 == 0 && a.dim <= (1 << 20) &&
         a.width <= (1 << 20) && aligned16(a.xv.data) && (a.xv.row_stride * es) % 16 == 0 &&
         aligned16(a.gate_m.packed) && aligned16(a.up_m.packed) && aligned16(a.down_m.packed) &&
         C::image_bytes(a.dim) <= kDefaultSmem && a.top_k * C::image_bytes(a.width) <= kDefaultSmem;
}

void moe_experts_cuda(Session& s, const MoeExpertsArgs& a) {
  if (!fused_domain(a)) {
    detail::moe_experts_composed(s, a);
    return;
  }
  const char* op = "moe_experts";
  const int64_t slots = a.tokens * a.top_k;
  ScratchBuffer act = s.pool().acquire(size_t(slots * a.width) * element_size(a.x.dtype()));
  k::MoeExpertParams p{};
  p.gate = static_cast<const uint32_t*>(a.gate_m.packed);
  p.up = static_cast<const uint32_t*>(a.up_m.packed);
  p.down = static_cast<const uint32_t*>(a.down_m.packed);
  p.gate_s = a.gate_m.scales, p.gate_b = a.gate_m.biases;
  p.up_s = a.up_m.scales, p.up_b = a.up_m.biases;
  p.down_s = a.down_m.scales, p.down_b = a.down_m.biases;
  p.x = a.xv.data, p.x_stride = a.xv.row_stride;
  p.ids = a.ids.data(), p.ids_u32 = a.ids.dtype() == DType::u32;
  p.weights = a.weights.data_as<const float>();
  p.act = act.data();
  p.out = a.outv.data, p.out_stride = a.outv.row_stride;
  p.residual = a.residual.data, p.residual_stride = a.residual.row_stride;
  p.experts = int(std::min<int64_t>(a.gate_m.experts, INT_MAX));
  p.top_k = int(a.top_k), p.dim = int(a.dim), p.width = int(a.width);
  const bool gelu = a.p.act == GluKind::gelu_tanh;
  dispatch_float(a.gate_m.scale_dtype, op, [&]<class ST>() {
    auto run = [&]<class CT, int GS>() {
      auto gate_up = gelu ? k::moe_gate_up_kernel<CT, ST, GS, true> : k::moe_gate_up_kernel<CT, ST, GS, false>;
      launch_pdl(s, op, gate_up, dim3(unsigned(a.width / 8), unsigned(slots)), dim3(32 * C::kGateUpWarps),
                 size_t(C::image_bytes(a.dim)), p);
      launch_pdl(s, op, k::moe_down_kernel<CT, ST, GS>, dim3(unsigned(a.dim / 16), unsigned(a.tokens)),
                 dim3(32 * C::kDownWarps), size_t(a.top_k * C::image_bytes(a.width)), p);
    };
    dispatch_half(a.x.dtype(), op, [&]<class CT>() {
      detail::dispatch_int<64, 128>(a.q.group_size, [&]<int GS>() { run.template operator()<CT, GS>(); });
    });
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(moe_experts, moe, cuda, kFloatTypes, detail::MoeExpertsArgs, moe_experts_cuda);

}  // namespace mlxn::cuda
