// CPU moe_experts: its four ops, after checking the ids (which the ops would also refuse, but
// under their own names).
#include "ops/moe_experts_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

namespace {

void moe_experts_cpu(Session& s, const detail::MoeExpertsArgs& a) {
  const int64_t slots = a.tokens * a.top_k, e_count = a.gate_m.experts;
  const bool u32 = a.ids.dtype() == DType::u32;
  for (int64_t i = 0; i < slots; ++i) {
    const int64_t e = u32 ? int64_t(a.ids.data_as<const uint32_t>()[i]) : int64_t(a.ids.data_as<const int32_t>()[i]);
    if (e < 0 || e >= e_count)
      throw_error<InvalidArgument>("moe_experts", "ids[", i / a.top_k, ", ", i % a.top_k, "] = ", e, " is outside [0, ",
                                   e_count, ")");
  }
  detail::moe_experts_composed(s, a);
}

}  // namespace

MLXN_REGISTER_KERNEL(moe_experts, moe, cpu, kFloatTypes, detail::MoeExpertsArgs, moe_experts_cpu);

}  // namespace mlxn::cpu
