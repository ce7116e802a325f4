// CUDA entry for MLX affine quantize, dequantize and quantized embedding lookup.
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/quant_mlx.cuh"
#include "ops/quant_mlx_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::dispatch_bits;
using detail::QuantMlxArgs;
namespace k = kernels::qmlx;

namespace {

constexpr int kThreads = 256;

void quantize_cuda(Session& s, const QuantMlxArgs& a) {
  const int64_t groups = a.w.rows * a.w.groups_per_row();
  dispatch_float(a.x.dtype, "quantize", [&]<class T>() {
    dispatch_float(a.w.scale_dtype, "quantize", [&]<class S>() {
      dispatch_bits(a.w.bits, [&]<int B>() {
        k::quantize_kernel<T, S, B>
            <<<grid_dim("quantize", (groups + kThreads - 1) / kThreads), kThreads, 0, stream_of(s)>>>(
                static_cast<const T*>(a.x.data), a.x.row_stride, static_cast<uint32_t*>(a.w.packed),
                static_cast<S*>(a.w.scales), static_cast<S*>(a.w.biases), a.w.rows, a.w.cols, a.w.group_size);
      });
    });
  });
  check_launch(s, "quantize");
}

// dequantize (ids == nullptr: output row r is table row r) and embedding.
void dequant_rows(Session& s, const QuantMlxArgs& a, int64_t out_rows, const char* op) {
  const int64_t chunks = out_rows * (a.w.cols / 32);
  // 16-byte loads of the codes and stores of the values where both allow them.
  const bool vec = aligned16(a.w.packed) && aligned16(a.out.data) &&
                   (a.out.row_stride * int64_t(element_size(a.out.dtype))) % 16 == 0;
  dispatch_float(a.out.dtype, op, [&]<class T>() {
    dispatch_float(a.w.scale_dtype, op, [&]<class S>() {
      dispatch_bits(a.w.bits, [&]<int B>() {
        k::dequantize_kernel<T, S, B, true><<<grid_dim(op, (chunks + k::kDequantThreads - 1) / k::kDequantThreads),
                                              k::kDequantThreads, 0, stream_of(s)>>>(
            static_cast<const uint32_t*>(a.w.packed), static_cast<const S*>(a.w.scales),
            static_cast<const S*>(a.w.biases), static_cast<T*>(a.out.data), a.out.row_stride, out_rows, a.w.cols,
            a.w.group_size, a.ids, a.ids_dtype == DType::u32, a.w.rows, a.scale, vec);
      });
    });
  });
  check_launch(s, op);
}

void dequantize_cuda(Session& s, const QuantMlxArgs& a) { dequant_rows(s, a, a.w.rows, "dequantize"); }
void embedding_cuda(Session& s, const QuantMlxArgs& a) { dequant_rows(s, a, a.tokens, "quantized_embedding"); }

}  // namespace

MLXN_REGISTER_KERNEL(mlx_quantize, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, quantize_cuda);
MLXN_REGISTER_KERNEL(mlx_dequantize, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, dequantize_cuda);
MLXN_REGISTER_KERNEL(quantized_embedding, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, embedding_cuda);

}  // namespace mlxn::cuda
