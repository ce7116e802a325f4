// CUDA entry for the norm family: NormArgs -> kernel parameters, launch-shape choice.
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/norm.cuh"
#include "ops/norm_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::NormArgs;
namespace k = kernels;

namespace {

template <class T, class U>
k::RowPtr<U> row_ptr(const detail::RowView& v) {
  return {static_cast<U*>(v.data), v.row_stride};
}

template <class T, class W>
void launch_norm(Session& s, const NormArgs& a) {
  constexpr int N = k::Vec<T>::N;
  k::NormKernelParams<T, W> p{};
  p.x = row_ptr<T, const T>(a.x);
  p.out = row_ptr<T, T>(a.out);
  p.residual = row_ptr<T, const T>(a.residual);
  p.sum_out = row_ptr<T, T>(a.sum_out);
  p.other = row_ptr<T, const T>(a.other);
  p.weight = static_cast<const W*>(a.weight);
  p.bias = static_cast<const W*>(a.bias);
  p.cols = int(a.x.cols);
  p.eps = a.eps;
  p.stat = static_cast<k::NormStatK>(a.stat);
  p.epi = static_cast<k::NormEpiK>(a.epilogue);
  p.weight_offset = a.weight_offset;
  // The vector path needs every row and vector 16-byte aligned and whole vectors per row.
  const bool vec = vectorizable(a.x, N) && vectorizable(a.out, N) && vectorizable(a.residual, N) &&
                   vectorizable(a.sum_out, N) && vectorizable(a.other, N) && aligned16(a.weight) && aligned16(a.bias);

  const unsigned grid = grid_dim("norm", a.x.rows);
  const int chunks = int((a.x.cols + N - 1) / N);
  // Many rows: 4 chunks (64 bytes of x) per thread, so each row's fixed cost (reduction,
  // block start) is spread over enough bytes; up to 256 threads per row, 8 chunks per
  // thread beyond that, and rows wider still stream through memory twice. Few rows
  // (decode) or short rows: one chunk per thread, the shortest dependency chain.
  int vpt = 1;
  if (a.x.rows >= kManyRows && chunks > 128) vpt = chunks <= 4 * 256 ? 4 : 8;
  const bool wide = chunks > (vpt == 1 ? 1024 : 8 * 256);
  if (wide && a.x.rows < kManyRows) vpt = 8;
  const int threads = round_up((chunks + vpt - 1) / vpt, 32);
  cudaStream_t st = stream_of(s);
  // Plain 16-bit rms/l2 norms (x and a weight, nothing else) keep x as loaded: half the
  // registers, so more rows in flight per SM (see RowChunks).
  const bool packed = vec && vpt > 1 && sizeof(T) == 2 && !a.residual.data && !a.bias && !a.other.data &&
                      p.stat != k::NormStatK::layer;
  // Programmatic dependent launch: the next norm's blocks are scheduled while this one's
  // last wave drains, and wait (pdl_wait) before touching memory.
  auto run = [&](auto kernel, int block) { MLXN_CUDA_CHECK(launch_pdl(kernel, dim3(grid), dim3(block), 0, st, p)); };
  auto launch = [&]<int V>() {
    if (packed) {
      if constexpr (V > 1 && sizeof(T) == 2) run(k::norm_rows_kernel<T, W, V, true, true>, threads);
    } else if (vec) {
      run(k::norm_rows_kernel<T, W, V, true, false>, threads);
    } else {
      run(k::norm_rows_kernel<T, W, V, false, false>, threads);
    }
  };
  if (threads > (vpt == 1 ? 1024 : 256))
    run(k::norm_rows_wide_kernel<T, W>, 1024);
  else if (vpt == 1)
    launch.template operator()<1>();
  else if (vpt == 4)
    launch.template operator()<4>();
  else
    launch.template operator()<8>();
  check_launch(s, "norm");
}

void norm_cuda(Session& s, const NormArgs& a) {
  dispatch_float(a.x.dtype, "norm", [&]<class T>() {
    if (a.weight_dtype == DType::f32 || (!a.weight && !a.bias))
      launch_norm<T, float>(s, a);
    else
      launch_norm<T, T>(s, a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(rms_norm, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(rms_norm_mul, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(rms_norm_residual, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(rms_norm_add, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(rms_norm_heads, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(l2_norm, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(ssm_norm_gate, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);
MLXN_REGISTER_KERNEL(layer_norm, norm, cuda, kFloatTypes, detail::NormArgs, norm_cuda);

}  // namespace mlxn::cuda
