// CUDA activations: the functors of ops/elementwise_math.h through the elementwise engine.
#include "cuda/elementwise.cuh"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::ElementwiseArgs;
using ew::Second;

namespace {

void gelu_cuda(Session& s, const ElementwiseArgs& a) {
  if (a.gelu_erf)
    elementwise_float<Second::none>(s, "gelu", a, ew::GeluErf{});
  else
    elementwise_float<Second::none>(s, "gelu", a, ew::GeluTanh{});
}

void silu_cuda(Session& s, const ElementwiseArgs& a) { elementwise_float<Second::none>(s, "silu", a, ew::Silu{}); }

void sigmoid_cuda(Session& s, const ElementwiseArgs& a) {
  elementwise_float<Second::none>(s, "sigmoid", a, ew::Sigmoid{});
}

void softcap_cuda(Session& s, const ElementwiseArgs& a) {
  elementwise_float<Second::none>(s, "softcap", a, ew::Softcap(a.param));
}

void silu_mul_cuda(Session& s, const ElementwiseArgs& a) {
  elementwise_float<Second::tensor>(s, "silu_mul", a, ew::SiluMul{});
}

void gelu_mul_cuda(Session& s, const ElementwiseArgs& a) {
  if (a.gelu_erf)
    elementwise_float<Second::tensor>(s, "gelu_mul", a, ew::GeluErfMul{});
  else
    elementwise_float<Second::tensor>(s, "gelu_mul", a, ew::GeluTanhMul{});
}

void sigmoid_mul_cuda(Session& s, const ElementwiseArgs& a) {
  elementwise_float<Second::tensor>(s, "sigmoid_mul", a, ew::SigmoidMul{});
}

}  // namespace

MLXN_REGISTER_KERNEL(gelu, activation, cuda, kFloatTypes, detail::ElementwiseArgs, gelu_cuda);
MLXN_REGISTER_KERNEL(silu, activation, cuda, kFloatTypes, detail::ElementwiseArgs, silu_cuda);
MLXN_REGISTER_KERNEL(sigmoid, activation, cuda, kFloatTypes, detail::ElementwiseArgs, sigmoid_cuda);
MLXN_REGISTER_KERNEL(softcap, activation, cuda, kFloatTypes, detail::ElementwiseArgs, softcap_cuda);
MLXN_REGISTER_KERNEL(silu_mul, activation, cuda, kFloatTypes, detail::ElementwiseArgs, silu_mul_cuda);
MLXN_REGISTER_KERNEL(gelu_mul, activation, cuda, kFloatTypes, detail::ElementwiseArgs, gelu_mul_cuda);
MLXN_REGISTER_KERNEL(sigmoid_mul, activation, cuda, kFloatTypes, detail::ElementwiseArgs, sigmoid_mul_cuda);
MLXN_REGISTER_KERNEL(silu_mul_fused, activation, cuda, kFloatTypes, detail::ElementwiseArgs, silu_mul_cuda);
MLXN_REGISTER_KERNEL(gelu_mul_fused, activation, cuda, kFloatTypes, detail::ElementwiseArgs, gelu_mul_cuda);
MLXN_REGISTER_KERNEL(sigmoid_mul_fused, activation, cuda, kFloatTypes, detail::ElementwiseArgs, sigmoid_mul_cuda);

}  // namespace mlxn::cuda
