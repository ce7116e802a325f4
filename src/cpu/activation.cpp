// CPU activations: the functors of ops/elementwise_math.h through the CPU elementwise loop.
#include "cpu/elementwise.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::ElementwiseArgs;
using ew::Second;

namespace {

void gelu_cpu(Session&, const ElementwiseArgs& a) {
  if (a.gelu_erf)
    elementwise_float<Second::none>(a, "gelu", ew::GeluErf{});
  else
    elementwise_float<Second::none>(a, "gelu", ew::GeluTanh{});
}

void silu_cpu(Session&, const ElementwiseArgs& a) { elementwise_float<Second::none>(a, "silu", ew::Silu{}); }

void sigmoid_cpu(Session&, const ElementwiseArgs& a) { elementwise_float<Second::none>(a, "sigmoid", ew::Sigmoid{}); }

void softcap_cpu(Session&, const ElementwiseArgs& a) {
  elementwise_float<Second::none>(a, "softcap", ew::Softcap(a.param));
}

void silu_mul_cpu(Session&, const ElementwiseArgs& a) {
  elementwise_float<Second::tensor>(a, "silu_mul", ew::SiluMul{});
}

void gelu_mul_cpu(Session&, const ElementwiseArgs& a) {
  if (a.gelu_erf)
    elementwise_float<Second::tensor>(a, "gelu_mul", ew::GeluErfMul{});
  else
    elementwise_float<Second::tensor>(a, "gelu_mul", ew::GeluTanhMul{});
}

void sigmoid_mul_cpu(Session&, const ElementwiseArgs& a) {
  elementwise_float<Second::tensor>(a, "sigmoid_mul", ew::SigmoidMul{});
}

}  // namespace

MLXN_REGISTER_KERNEL(gelu, activation, cpu, kFloatTypes, detail::ElementwiseArgs, gelu_cpu);
MLXN_REGISTER_KERNEL(silu, activation, cpu, kFloatTypes, detail::ElementwiseArgs, silu_cpu);
MLXN_REGISTER_KERNEL(sigmoid, activation, cpu, kFloatTypes, detail::ElementwiseArgs, sigmoid_cpu);
MLXN_REGISTER_KERNEL(softcap, activation, cpu, kFloatTypes, detail::ElementwiseArgs, softcap_cpu);
MLXN_REGISTER_KERNEL(silu_mul, activation, cpu, kFloatTypes, detail::ElementwiseArgs, silu_mul_cpu);
MLXN_REGISTER_KERNEL(gelu_mul, activation, cpu, kFloatTypes, detail::ElementwiseArgs, gelu_mul_cpu);
MLXN_REGISTER_KERNEL(sigmoid_mul, activation, cpu, kFloatTypes, detail::ElementwiseArgs, sigmoid_mul_cpu);
MLXN_REGISTER_KERNEL(silu_mul_fused, activation, cpu, kFloatTypes, detail::ElementwiseArgs, silu_mul_cpu);
MLXN_REGISTER_KERNEL(gelu_mul_fused, activation, cpu, kFloatTypes, detail::ElementwiseArgs, gelu_mul_cpu);
MLXN_REGISTER_KERNEL(sigmoid_mul_fused, activation, cpu, kFloatTypes, detail::ElementwiseArgs, sigmoid_mul_cpu);

}  // namespace mlxn::cpu
