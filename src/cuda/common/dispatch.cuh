#pragma once
// dtype -> CUDA element type dispatch and float conversions (host side of the entry layer).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "mlxn/dtype.h"
#include "mlxn/error.h"

namespace mlxn::cuda {

// The run-time code of a float dtype that kernels::scalar_f32 reads: f32 0, f16 1, bf16 2.
inline int float_kind(DType t) { return t == DType::f32 ? 0 : t == DType::f16 ? 1 : 2; }

// Calls f.template operator()<T>() with T = float, __half or __nv_bfloat16.
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
      return f.template operator()<float>();
    case DType::f16:
      return f.template operator()<__half>();
    case DType::bf16:
      return f.template operator()<__nv_bfloat16>();
    default:
      throw_error<Unsupported>(op, "cuda: dtype ", name(t), " is not a float type");
  }
}

// The same for the 16-bit types alone (the tensor-core paths, whose callers have ruled out f32).
template <class F>
decltype(auto) dispatch_half(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f16:
      return f.template operator()<__half>();
    case DType::bf16:
      return f.template operator()<__nv_bfloat16>();
    default:
      throw_error<Unsupported>(op, "cuda: dtype ", name(t), " is not a 16-bit float type");
  }
}

}  // namespace mlxn::cuda
