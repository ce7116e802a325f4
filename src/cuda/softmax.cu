// CUDA entry for softmax: SoftmaxArgs -> kernel parameters, launch-shape choice.
#include <type_traits>

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
constexpr int kClusterThreads = 512;  // threads per block of a cluster row

template <class T, class M, bool MASKED, bool VEC, int VPT, int CLUSTER>
void launch_cluster(Session& s, const k::SoftmaxKernelParams<T, M>& p, int threads) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid_dim("softmax", p.rows * CLUSTER));
  cfg.blockDim = dim3(unsigned(threads));
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream_of(s);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = CLUSTER;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  MLXN_CUDA_CHECK(cudaLaunchKernelEx(&cfg, k::softmax_block_kernel<T, M, MASKED, VEC, VPT, CLUSTER>, p));
}

template <class T, class M, bool MASKED, bool VEC>
void launch_softmax(Session& s, k::SoftmaxKernelParams<T, M>& p) {
  constexpr int N = k::Vec<T>::N;
  constexpr int kMaxVpt = kValuesPerThread / N;
  cudaStream_t st = stream_of(s);
  const int chunks = (p.cols + N - 1) / N;
  p.part_cols = p.cols;
  if (chunks <= 32 * 4) {
    // Narrow rows: a warp per row, up to 4 chunks per lane.
    const dim3 block(32, kWarpRowsPerBlock);
    const unsigned grid = grid_dim("softmax", (p.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
    if (chunks <= 32)
      k::softmax_warp_kernel<T, M, MASKED, VEC, 1><<<grid, block, 0, st>>>(p);
    else if (chunks <= 64)
      k::softmax_warp_kernel<T, M, MASKED, VEC, 2><<<grid, block, 0, st>>>(p);
    else
      k::softmax_warp_kernel<T, M, MASKED, VEC, 4><<<grid, block, 0, st>>>(p);
    return;
  }
  if (chunks <= kClusterThreads * kMaxVpt) {
    // A block per row, each thread holding up to kValuesPerThread values: with many rows aim
    // for 128 threads (more values per thread, more resident rows per SM, as for the norms),
    // with few rows for 256 (the shortest chain for a decode-sized call).
    const unsigned grid = grid_dim("softmax", p.rows);
    const int target = p.rows >= kManyRows ? 128 : 256;
    int vpt = 1;
    while (vpt < kMaxVpt && chunks > target * vpt) vpt *= 2;
    const int threads = round_up((chunks + vpt - 1) / vpt, 32);
    if (vpt == 1)
      k::softmax_block_kernel<T, M, MASKED, VEC, 1, 1><<<grid, threads, 0, st>>>(p);
    else if (vpt == 2)
      k::softmax_block_kernel<T, M, MASKED, VEC, 2, 1><<<grid, threads, 0, st>>>(p);
    else if (vpt == 4)
      k::softmax_block_kernel<T, M, MASKED, VEC, 4, 1><<<grid, threads, 0, st>>>(p);
    else if constexpr (kMaxVpt >= 8)
      k::softmax_block_kernel<T, M, MASKED, VEC, 8, 1><<<grid, threads, 0, st>>>(p);
    return;
  }
  if (chunks <= 4 * kClusterThreads * kMaxVpt) {
    // A cluster of 2 or 4 blocks per row, each holding a slice in registers.
    const int cluster = chunks <= 2 * kClusterThreads * kMaxVpt ? 2 : 4;
    const int part_chunks = (chunks + cluster - 1) / cluster;
    p.part_cols = part_chunks * N;
    const int threads = round_up((part_chunks + kMaxVpt - 1) / kMaxVpt, 32);
    if (cluster == 2)
      launch_cluster<T, M, MASKED, VEC, kMaxVpt, 2>(s, p, threads);
    else
      launch_cluster<T, M, MASKED, VEC, kMaxVpt, 4>(s, p, threads);
    return;
  }
  k::softmax_wide_kernel<T, M, MASKED, VEC><<<grid_dim("softmax", p.rows), 1024, 0, st>>>(p);
}

template <class T, class M, bool MASKED>
void run_softmax(Session& s, const SoftmaxArgs& a) {
  constexpr int N = k::Vec<T>::N;
  k::SoftmaxKernelParams<T, M> p{};
  p.x = static_cast<const T*>(a.x.data);
  p.out = static_cast<T*>(a.out.data);
  p.mask = static_cast<const M*>(a.mask.data);
  p.x_stride = a.x.row_stride;
  p.out_stride = a.out.row_stride;
  p.mask_stride = a.mask.row_stride;
  p.rows = a.x.rows;
  p.mask_rows = MASKED ? a.mask.rows : 1;
  p.cols = int(a.x.cols);
  p.scale = a.scale;
  p.softcap = a.softcap;
  const bool vec = vectorizable(a.x, N) && vectorizable(a.out, N) && vectorizable(a.mask, N);
  if (vec)
    launch_softmax<T, M, MASKED, true>(s, p);
  else
    launch_softmax<T, M, MASKED, false>(s, p);
  check_launch(s, "softmax");
}

void softmax_cuda(Session& s, const SoftmaxArgs& a) {
  dispatch_float(a.x.dtype, "softmax", [&]<class T>() {
    if (!a.mask.data)
      run_softmax<T, T, false>(s, a);
    else if (a.mask.dtype == DType::f32)
      run_softmax<T, float, true>(s, a);
    else if constexpr (!std::is_same_v<T, float>)
      run_softmax<T, T, true>(s, a);
    else
      run_softmax<T, float, true>(s, a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(softmax, softmax, cuda, kFloatTypes, detail::SoftmaxArgs, softmax_cuda);

}  // namespace mlxn::cuda
