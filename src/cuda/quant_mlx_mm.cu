// CUDA entry for MLX affine quantized matmuls: picks the tensor-core mat-vec (x bf16/f16,
// up to 16 rows, and every expert-routed call), the tensor-core tiled kernel (x bf16/f16,
// more rows), or the plain f32 kernel (x f32, or data the vector paths cannot read).
#include <algorithm>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/quant_mlx_qmm.cuh"
#include "ops/quant_mlx_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::dispatch_bits;
using detail::QuantMlxArgs;
namespace k = kernels::qmlx;

namespace {

constexpr int64_t kMaxGridY = 65535;

// Raises a kernel's dynamic shared memory limit to `bytes` when above the default 48 KB
// (a host-side attribute call, valid during graph capture too).
template <class Kernel>
void allow_smem(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024)
    MLXN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

k::QmmParams params(const QuantMlxArgs& a, bool routed) {
  k::QmmParams p{};
  p.packed = static_cast<const uint32_t*>(a.w.packed);
  p.scales = a.w.scales;
  p.biases = a.w.biases;
  p.experts = a.w.experts;
  p.n = a.w.rows;
  p.k = a.w.cols;
  p.gs = a.w.group_size;
  p.gs_shift = a.w.group_size == 32 ? 5 : a.w.group_size == 64 ? 6 : 7;
  p.x = a.x.data;
  p.x_stride = a.x.row_stride;
  p.out = a.out.data;
  p.out_stride = a.out.row_stride;
  p.m = a.x.rows;
  if (routed) {
    p.ids = a.ids;
    p.ids_u32 = a.ids_dtype == DType::u32;
    p.top_k = a.top_k;
    p.x_per_slot = a.x_per_slot;
    p.slots = a.tokens * a.top_k;
  }
  const int64_t es = int64_t(element_size(a.x.dtype));
  p.x_vec = aligned16(a.x.data) && (a.x.row_stride * es) % 16 == 0;
  return p;
}

void run_matmul(Session& s, const QuantMlxArgs& a, bool routed, const char* op) {
  const k::QmmParams p = params(a, routed);
  const int64_t N = a.w.rows, M = a.x.rows;
  const bool packed_vec = aligned16(a.w.packed);
  cudaStream_t st = stream_of(s);
  dispatch_float(a.w.scale_dtype, op, [&]<class ST>() {
    dispatch_bits(a.w.bits, [&]<int B>() {
      auto simt = [&]<class XT>() {
        constexpr int MT = 4;
        const int64_t units = routed ? p.slots : (M + MT - 1) / MT;
        const dim3 grid(grid_dim(op, (N + 3) / 4), unsigned(std::min(units, kMaxGridY)));
        k::qmm_simt_kernel<XT, ST, B, MT><<<grid, 128, 0, st>>>(p);
      };
      if (a.x.dtype == DType::f32 || !packed_vec) {
        dispatch_float(a.x.dtype, op, [&]<class XT>() { simt.template operator()<XT>(); });
        return;
      }
      auto tensor_core = [&]<class CT>() {
        if (routed || M <= 16) {
          // Mat-vec: x rows of a unit staged in shared memory, K in segments if needed.
          using C = k::QmvConfig<B>;
          k::QmmParams q = p;
          q.xs_rows = routed ? 1 : std::min<int64_t>(M, 16);
          const int64_t k_pad = (a.w.cols + 127) / 128 * 128;
          q.kseg = std::min(k_pad, std::max<int64_t>(128, (C::kXsBudget / (2 * q.xs_rows) - 8) / 128 * 128));
          const int smem = int(C::kRingBytes + q.xs_rows * (q.kseg + 8) * 2);
          const int64_t units = routed ? p.slots : 1;
          const dim3 grid(grid_dim(op, (N + 15) / 16), unsigned(std::min(units, kMaxGridY)));
          if (routed || M <= 8) {
            allow_smem(k::qmv_mma_kernel<CT, ST, B, 1>, smem);
            k::qmv_mma_kernel<CT, ST, B, 1><<<grid, 128, smem, st>>>(q);
          } else {
            allow_smem(k::qmv_mma_kernel<CT, ST, B, 2>, smem);
            k::qmv_mma_kernel<CT, ST, B, 2><<<grid, 128, smem, st>>>(q);
          }
        } else if (p.x_vec) {
          using Tl = k::QmmTile;
          constexpr int smem = Tl::smem_bytes<B>();
          allow_smem(k::qmm_mma_kernel<CT, ST, B>, smem);
          const int64_t mt = (M + Tl::kBM - 1) / Tl::kBM;
          if (mt > kMaxGridY)
            throw_error<InvalidArgument>(op, "x has ", M, " rows, more than this kernel's grid holds");
          k::qmm_mma_kernel<CT, ST, B>
              <<<dim3(grid_dim(op, (N + Tl::kBN - 1) / Tl::kBN), unsigned(mt)), Tl::kThreads, smem, st>>>(p);
        } else {
          simt.template operator()<CT>();
        }
      };
      if (a.x.dtype == DType::bf16)
        tensor_core.template operator()<__nv_bfloat16>();
      else
        tensor_core.template operator()<__half>();
    });
  });
  check_launch(s, op);
}

void matmul_cuda(Session& s, const QuantMlxArgs& a) { run_matmul(s, a, false, "quantized_matmul"); }
void matmul_id_cuda(Session& s, const QuantMlxArgs& a) { run_matmul(s, a, true, "quantized_matmul_id"); }

}  // namespace

MLXN_REGISTER_KERNEL(quantized_matmul, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, matmul_cuda);
MLXN_REGISTER_KERNEL(quantized_matmul_id, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, matmul_id_cuda);

}  // namespace mlxn::cuda
