// CUDA entry for the moe family: args -> kernel parameters, launch shapes; token grouping by
// a CUB device radix sort. Nothing here waits for the device or copies to the host.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <bit>
#include <climits>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/moe.cuh"
#include "ops/moe_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::MoeGluArgs;
using detail::MoeGroupArgs;
using detail::MoeRouteArgs;
using detail::MoeSumArgs;
namespace k = kernels;

namespace {

// Kernels launch with programmatic dependent launch (see matmul.cu): each overlaps the
// tail of the previous kernel and waits for it (pdl_wait) before touching memory.

void check_int(const char* op, const char* what, int64_t v) {
  if (v > INT_MAX) throw_error<InvalidArgument>(op, what, " = ", v, " exceeds ", INT_MAX);
}

void moe_route_cuda(Session& s, const MoeRouteArgs& a) {
  const char* op = "moe_route";
  check_int(op, "tokens", a.logits.rows);
  k::RouteParams p{
      a.logits.data, a.logits.row_stride, int(a.logits.rows), int(a.logits.cols), int(a.top_k),
      a.sigmoid,     a.renormalize,       a.expert_scale,     a.score_bias,       static_cast<uint32_t*>(a.ids),
      a.weights};
  dispatch_float(a.logits.dtype, op, [&]<class T>() {
    if (p.experts <= 256) {
      // one warp per token, four tokens per block
      const unsigned grid = grid_dim(op, (a.logits.rows + 3) / 4);
      if (p.experts <= 32)
        launch_pdl(s, op, k::route_warp_kernel<T, 1>, grid, 128, 0, p);
      else if (p.experts <= 64)
        launch_pdl(s, op, k::route_warp_kernel<T, 2>, grid, 128, 0, p);
      else if (p.experts <= 128)
        launch_pdl(s, op, k::route_warp_kernel<T, 4>, grid, 128, 0, p);
      else
        launch_pdl(s, op, k::route_warp_kernel<T, 8>, grid, 128, 0, p);
    } else {
      launch_pdl(s, op, k::route_block_kernel<T>, grid_dim(op, a.logits.rows), 256, size_t(p.experts) * sizeof(float),
                 p);
    }
  });
}

template <class T, class U>
k::RowsPtr<U> rows_ptr(const detail::RowView& v) {
  return {static_cast<U*>(v.data), v.row_stride};
}

template <class T, class G>
void launch_weighted_sum(Session& s, const MoeSumArgs& a) {
  constexpr int N = k::Vec<T>::N;
  k::WeightedSumParams<T, G> p{};
  p.y = rows_ptr<T, const T>(a.y);
  p.weights = a.weights;
  p.out = rows_ptr<T, T>(a.out);
  p.shared = rows_ptr<T, const T>(a.shared);
  p.residual = rows_ptr<T, const T>(a.residual);
  p.gate = static_cast<const G*>(a.gate);
  p.gate_stride = a.gate_stride;
  p.tokens = int(a.tokens);
  p.top_k = int(a.top_k);
  p.dim = a.dim;
  const bool vec =
      vectorizable(a.y, N) && vectorizable(a.out, N) && vectorizable(a.shared, N) && vectorizable(a.residual, N);
  const int per = vec ? N : 1;
  const dim3 grid(grid_dim("moe_weighted_sum", a.tokens), unsigned((a.dim + 256 * per - 1) / (256 * per)));
  if (vec)
    launch_pdl(s, "moe_weighted_sum", k::weighted_sum_kernel<T, G, true>, grid, 256, 0, p);
  else
    launch_pdl(s, "moe_weighted_sum", k::weighted_sum_kernel<T, G, false>, grid, 256, 0, p);
}

void moe_weighted_sum_cuda(Session& s, const MoeSumArgs& a) {
  check_int("moe_weighted_sum", "tokens", a.tokens);
  check_int("moe_weighted_sum", "top_k", a.top_k);
  dispatch_float(a.dtype, "moe_weighted_sum", [&]<class T>() {
    if (a.gate && a.gate_dtype != DType::f32)
      launch_weighted_sum<T, T>(s, a);
    else
      launch_weighted_sum<T, float>(s, a);
  });
}

void moe_glu_cuda(Session& s, const MoeGluArgs& a) {
  const char* op = "moe_glu";
  dispatch_float(a.out.dtype, op, [&]<class T>() {
    constexpr int N = k::Vec<T>::N;
    k::GluParams<T> p{rows_ptr<T, const T>(a.gate_up), rows_ptr<T, T>(a.out), a.out.cols};
    const bool vec = vectorizable(a.gate_up, N) && vectorizable(a.out, N);
    const int per = vec ? N : 1;
    const dim3 grid(grid_dim(op, a.out.rows), unsigned((a.out.cols + 256 * per - 1) / (256 * per)));
    auto run = [&]<bool kGelu>() {
      if (vec)
        launch_pdl(s, op, k::glu_kernel<T, kGelu, true>, grid, 256, 0, p);
      else
        launch_pdl(s, op, k::glu_kernel<T, kGelu, false>, grid, 256, 0, p);
    };
    if (a.gelu)
      run.template operator()<true>();
    else
      run.template operator()<false>();
  });
}

// Keys (the expert of each pair) -> stable radix sort of (key, pair) -> offsets by binary
// search of the sorted keys. Scratch from the session's pool, so steady state allocates nothing.
void moe_group_tokens_cuda(Session& s, const MoeGroupArgs& a) {
  const char* op = "moe_group_tokens";
  cudaStream_t st = stream_of(s);
  auto* offsets = static_cast<uint32_t*>(a.offsets);
  if (a.pairs == 0) {
    MLXN_CUDA_CHECK(cudaMemsetAsync(offsets, 0, size_t(a.experts + 1) * sizeof(uint32_t), st));
    return;
  }
  check_int(op, "experts", a.experts);
  const int pairs = int(a.pairs), experts = int(a.experts);
  const size_t bytes = size_t(pairs) * sizeof(uint32_t);
  ScratchBuffer keys_in = s.pool().acquire(bytes), keys_out = s.pool().acquire(bytes),
                vals_in = s.pool().acquire(bytes);
  auto* kin = static_cast<uint32_t*>(keys_in.data());
  auto* kout = static_cast<uint32_t*>(keys_out.data());
  auto* vin = static_cast<uint32_t*>(vals_in.data());
  auto* rows = static_cast<uint32_t*>(a.sorted_rows);
  launch_pdl(s, op, k::group_keys_kernel, unsigned((pairs + 255) / 256), 256, 0, static_cast<const uint32_t*>(a.ids),
             pairs, uint32_t(experts), kin, vin);
  const int end_bit = std::max(1, int(std::bit_width(uint32_t(experts))));  // keys lie in [0, E]
  size_t temp_bytes = 0;
  MLXN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, kin, kout, vin, rows, pairs, 0, end_bit, st));
  ScratchBuffer temp = s.pool().acquire(std::max<size_t>(temp_bytes, 1));
  MLXN_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(temp.data(), temp_bytes, kin, kout, vin, rows, pairs, 0, end_bit, st));
  launch_pdl(s, op, k::group_offsets_kernel, unsigned((experts + 1 + 255) / 256), 256, 0, kout, pairs, experts,
             offsets);
}

}  // namespace

MLXN_REGISTER_KERNEL(moe_route, moe, cuda, kFloatTypes, detail::MoeRouteArgs, moe_route_cuda);
MLXN_REGISTER_KERNEL(moe_weighted_sum, moe, cuda, kFloatTypes, detail::MoeSumArgs, moe_weighted_sum_cuda);
MLXN_REGISTER_KERNEL(moe_glu, moe, cuda, kFloatTypes, detail::MoeGluArgs, moe_glu_cuda);
MLXN_REGISTER_KERNEL(moe_group_tokens, moe, cuda, (DTypeSet{DType::i32, DType::u32}), detail::MoeGroupArgs,
                     moe_group_tokens_cuda);

}  // namespace mlxn::cuda
