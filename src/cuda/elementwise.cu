// CUDA elementwise arithmetic and casts: the functors of ops/elementwise_math.h through the
// elementwise engine.
#include <cstdint>

#include "cuda/elementwise.cuh"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::ElementwiseArgs;
using ew::Second;

namespace {

// y is a tensor of x's shape or one row broadcast (row stride 0): the same kernel.
void add_cuda(Session& s, const ElementwiseArgs& a) { elementwise_float<Second::tensor>(s, "add", a, ew::Add{}); }

void mul_cuda(Session& s, const ElementwiseArgs& a) { elementwise_float<Second::tensor>(s, "mul", a, ew::Mul{}); }

void scale_cuda(Session& s, const ElementwiseArgs& a) {
  elementwise_float<Second::none>(s, "scale", a, ew::Scale{a.param});
}

void scale_rows_cuda(Session& s, const ElementwiseArgs& a) {
  elementwise_float<Second::row_scalar>(s, "scale_rows", a, ew::Mul{});
}

void cast_cuda(Session& s, const ElementwiseArgs& a) {
  if (a.x.dtype == DType::i32)
    return launch_elementwise<Second::none, int32_t, int32_t, int32_t>(s, "cast", a, ew::Identity{});
  if (a.x.dtype == DType::u32)
    return launch_elementwise<Second::none, uint32_t, uint32_t, uint32_t>(s, "cast", a, ew::Identity{});
  dispatch_float(a.x.dtype, "cast", [&]<class TI>() {
    dispatch_float(a.out.dtype, "cast",
                   [&]<class TO>() { launch_elementwise<Second::none, TI, TI, TO>(s, "cast", a, ew::Identity{}); });
  });
}

constexpr DTypeSet kCastTypes{DType::f32, DType::f16, DType::bf16, DType::i32, DType::u32};

}  // namespace

MLXN_REGISTER_KERNEL(add, elementwise, cuda, kFloatTypes, detail::ElementwiseArgs, add_cuda);
MLXN_REGISTER_KERNEL(mul, elementwise, cuda, kFloatTypes, detail::ElementwiseArgs, mul_cuda);
MLXN_REGISTER_KERNEL(scale, elementwise, cuda, kFloatTypes, detail::ElementwiseArgs, scale_cuda);
MLXN_REGISTER_KERNEL(scale_rows, elementwise, cuda, kFloatTypes, detail::ElementwiseArgs, scale_rows_cuda);
MLXN_REGISTER_KERNEL(cast, elementwise, cuda, kCastTypes, detail::ElementwiseArgs, cast_cuda);

}  // namespace mlxn::cuda
