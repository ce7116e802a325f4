// CPU elementwise arithmetic and casts: the functors of ops/elementwise_math.h through the
// CPU elementwise loop.
#include <cstdint>

#include "cpu/elementwise.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::ElementwiseArgs;
using ew::Second;

namespace {

// y is a tensor of x's shape or one row broadcast (row stride 0): the same loop.
void add_cpu(Session&, const ElementwiseArgs& a) { elementwise_float<Second::tensor>(a, "add", ew::Add{}); }

void mul_cpu(Session&, const ElementwiseArgs& a) { elementwise_float<Second::tensor>(a, "mul", ew::Mul{}); }

void scale_cpu(Session&, const ElementwiseArgs& a) { elementwise_float<Second::none>(a, "scale", ew::Scale{a.param}); }

void scale_rows_cpu(Session&, const ElementwiseArgs& a) {
  elementwise_float<Second::row_scalar>(a, "scale_rows", ew::Mul{});
}

void cast_cpu(Session&, const ElementwiseArgs& a) {
  if (a.x.dtype == DType::i32) return elementwise_rows<Second::none, int32_t, int32_t, int32_t>(a, ew::Identity{});
  if (a.x.dtype == DType::u32) return elementwise_rows<Second::none, uint32_t, uint32_t, uint32_t>(a, ew::Identity{});
  dispatch_float(a.x.dtype, "cast", [&]<class TI>() {
    dispatch_float(a.out.dtype, "cast",
                   [&]<class TO>() { elementwise_rows<Second::none, TI, TI, TO>(a, ew::Identity{}); });
  });
}

constexpr DTypeSet kCastTypes{DType::f32, DType::f16, DType::bf16, DType::i32, DType::u32};

}  // namespace

MLXN_REGISTER_KERNEL(add, elementwise, cpu, kFloatTypes, detail::ElementwiseArgs, add_cpu);
MLXN_REGISTER_KERNEL(mul, elementwise, cpu, kFloatTypes, detail::ElementwiseArgs, mul_cpu);
MLXN_REGISTER_KERNEL(scale, elementwise, cpu, kFloatTypes, detail::ElementwiseArgs, scale_cpu);
MLXN_REGISTER_KERNEL(scale_rows, elementwise, cpu, kFloatTypes, detail::ElementwiseArgs, scale_rows_cpu);
MLXN_REGISTER_KERNEL(cast, elementwise, cpu, kCastTypes, detail::ElementwiseArgs, cast_cpu);

}  // namespace mlxn::cpu
