// CUDA entry for softmax: SoftmaxArgs -> kernel parameters, launch-shape choice.
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/softmax.cuh"
#include "ops/registry.h"
#include "ops/softmax_args.h"

namespace mlxn::cuda {

using detail::SoftmaxArgs;
namespace k = kernels;

namespace {

constexpr int kWarpRowsPerBlock = 4;
constexpr int kValuesPerThread = 32;  // register budget of the row-in-registers kernels

template <class T, class M, bool MASKED>
void launch_softmax(Session& s, const SoftmaxArgs& a) {
  constexpr int N = k::Vec<T>::N;
  k::SoftmaxKernelParams<T, M> p{};
  p.x = static_cast<const T*>(a.x.data);
  p.out = static_cast<T*>(a.out.data);
  p.mask = static_cast<const M*>(a.mask.data);
  p.x_stride = a.x.row_stride;
  p.out_stride = a.out.row_stride;
  p.mask_stride = a.mask.row_stride;
  p.rows = a.x.rows;
  p.mask_rows = a.mask.data ? a.mask.rows : 1;
  p.cols = int(a.x.cols);
  p.scale = a.scale;
  p.softcap = a.softcap;
  p.vec = vectorizable(a.x, N) && vectorizable(a.out, N) && vectorizable(a.mask, N);

  cudaStream_t st = stream_of(s);
  const int chunks = int((a.x.cols + N - 1) / N);
  if (chunks <= 32 * 4) {
    // Narrow rows: a warp per row, up to 4 chunks per lane.
    const dim3 block(32, kWarpRowsPerBlock);
    const unsigned grid = grid_dim("softmax", (a.x.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
    if (chunks <= 32) k::softmax_warp_kernel<T, M, MASKED, 1><<<grid, block, 0, st>>>(p);
    else if (chunks <= 64) k::softmax_warp_kernel<T, M, MASKED, 2><<<grid, block, 0, st>>>(p);
    else k::softmax_warp_kernel<T, M, MASKED, 4><<<grid, block, 0, st>>>(p);
    check_launch(s, "softmax");
    return;
  }
  const unsigned grid = grid_dim("softmax", a.x.rows);
  // Aim for 256 threads per row, each holding up to kValuesPerThread values; wider rows
  // take up to 1024 threads; rows beyond that stream through memory twice.
  constexpr int kMaxVpt = kValuesPerThread / N;
  int vpt = 1;
  while (vpt < kMaxVpt && chunks > 256 * vpt) vpt *= 2;
  const int threads = round_up((chunks + vpt - 1) / vpt, 32);
  if (threads > 1024) {
    k::softmax_wide_kernel<T, M, MASKED><<<grid, 1024, 0, st>>>(p);
  } else if (vpt == 1) {
    k::softmax_block_kernel<T, M, MASKED, 1><<<grid, threads, 0, st>>>(p);
  } else if (vpt == 2) {
    k::softmax_block_kernel<T, M, MASKED, 2><<<grid, threads, 0, st>>>(p);
  } else if (vpt == 4) {
    k::softmax_block_kernel<T, M, MASKED, 4><<<grid, threads, 0, st>>>(p);
  } else {
    if constexpr (kMaxVpt >= 8) k::softmax_block_kernel<T, M, MASKED, 8><<<grid, threads, 0, st>>>(p);
  }
  check_launch(s, "softmax");
}

void softmax_cuda(Session& s, const SoftmaxArgs& a) {
  dispatch_float(a.x.dtype, "softmax", [&]<class T>() {
    if (!a.mask.data) launch_softmax<T, T, false>(s, a);
    else if (a.mask.dtype == DType::f32) launch_softmax<T, float, true>(s, a);
    else launch_softmax<T, T, true>(s, a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(softmax, softmax, cuda, kFloatTypes, detail::SoftmaxArgs, softmax_cuda);

}  // namespace mlxn::cuda
