// CUDA entry for the reduce family: cumsum, argmax, argsort, top_k.
//
// Scratch (argmax partials, sort buffers, top_k candidates) comes from the session's pool.
// A pooled buffer goes back to the pool when the entry returns, while the kernels that use
// it may still be queued; that is safe because the pool belongs to the session and every
// later user of the buffer is ordered after them on the session's one stream (and, in a
// captured graph, after them in the graph).
#include <algorithm>
#include <climits>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/reduce.cuh"
#include "ops/reduce_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::ArgmaxArgs;
using detail::ArgsortArgs;
using detail::CumsumArgs;
using detail::RowView;
using detail::TopKArgs;
namespace k = kernels;

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Carves aligned pieces out of one pooled buffer.
class ScratchLayout {
 public:
  size_t add(size_t bytes) {
    const size_t at = size_;
    size_ += (bytes + 255) / 256 * 256;
    return at;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

template <class P>
P* at(const ScratchBuffer& b, size_t offset) {
  return reinterpret_cast<P*>(static_cast<char*>(b.data()) + offset);
}

// ---- cumsum --------------------------------------------------------------------------------

template <class T>
void launch_cumsum(Session& s, const CumsumArgs& a) {
  constexpr int N = k::Vec<T>::N;
  const bool vec = vectorizable(a.x, N) && vectorizable(a.out, N);
  const unsigned grid = grid_dim("cumsum", a.x.rows);
  const auto* x = static_cast<const T*>(a.x.data);
  auto* y = static_cast<T*>(a.out.data);
  const int cols = int(a.x.cols);
  cudaStream_t st = stream_of(s);
  if (cols <= 128 * N) {
    k::cumsum_rows_kernel<T, 128><<<grid, 128, 0, st>>>(x, a.x.row_stride, y, a.out.row_stride, cols, vec);
  } else {
    k::cumsum_rows_kernel<T, 512><<<grid, 512, 0, st>>>(x, a.x.row_stride, y, a.out.row_stride, cols, vec);
  }
  check_launch(s, "cumsum");
}

void cumsum_cuda(Session& s, const CumsumArgs& a) {
  dispatch_float(a.x.dtype, "cumsum", [&]<class T>() { launch_cumsum<T>(s, a); });
}

// ---- argmax --------------------------------------------------------------------------------

template <class T>
void launch_argmax(Session& s, const ArgmaxArgs& a) {
  constexpr int N = k::Vec<T>::N;
  constexpr int kThreads = 256;
  const int64_t rows = a.x.rows;
  const int cols = int(a.x.cols);
  // Few rows: split each row so that about 512 blocks share the work, with segments of at
  // least 4096 columns; the partial maxima are merged by a second small kernel.
  int64_t segments = 1;
  if (rows < 512) segments = std::min(ceil_div(cols, 4096), ceil_div(512, rows));
  const int seg_len = round_up(int(ceil_div(cols, segments)), N);
  segments = ceil_div(cols, seg_len);
  const bool vec = vectorizable(a.x, N);
  cudaStream_t st = stream_of(s);
  const auto* x = static_cast<const T*>(a.x.data);
  ScratchBuffer partial;
  if (segments > 1) partial = s.pool().acquire(size_t(rows * segments) * sizeof(uint64_t));
  auto* part = segments > 1 ? static_cast<uint64_t*>(partial.data()) : nullptr;
  const dim3 grid(grid_dim("argmax", rows), unsigned(segments));
  k::argmax_kernel<T, kThreads><<<grid, kThreads, 0, st>>>(x, a.x.row_stride, cols, seg_len, vec, a.out, part);
  check_launch(s, "argmax");
  if (segments > 1) {
    k::argmax_finish_kernel<<<grid_dim("argmax", ceil_div(rows, 8)), 256, 0, st>>>(part, int(segments), rows, a.out);
    check_launch(s, "argmax");
  }
}

void argmax_cuda(Session& s, const ArgmaxArgs& a) {
  dispatch_float(a.x.dtype, "argmax", [&]<class T>() { launch_argmax<T>(s, a); });
}

// ---- argsort -------------------------------------------------------------------------------

// Rows too wide for one block: CUB's device radix sort (one row) or segmented radix sort
// (several), on complemented keys, so the stable ascending sort is the descending order.
// Rows are processed in groups whose element count fits CUB's int sizes.
void sort_rows_device(Session& s, const char* op, const RowView& x, int32_t* out, int64_t out_stride) {
  cudaStream_t st = stream_of(s);
  const int cols = int(x.cols);
  const int64_t group = std::max<int64_t>(1, INT_MAX / x.cols);
  for (int64_t r0 = 0; r0 < x.rows; r0 += group) {
    const int64_t rc = std::min(group, x.rows - r0);
    const int n = int(rc * cols);
    const bool direct = rc == 1 || out_stride == cols;  // CUB writes rows at stride cols
    int32_t* dst = out + r0 * out_stride;
    const auto* xr = static_cast<const float*>(x.data) + r0 * x.row_stride;

    size_t temp_bytes = 0;
    if (rc == 1) {
      MLXN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
          nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
          static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0, 32, st));
    } else {
      MLXN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
          nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
          static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, int(rc),
          static_cast<const int*>(nullptr), static_cast<const int*>(nullptr), 0, 32, st));
    }
    ScratchLayout lay;
    const size_t o_kin = lay.add(size_t(n) * 4), o_kout = lay.add(size_t(n) * 4), o_vin = lay.add(size_t(n) * 4);
    const size_t o_vout = direct ? 0 : lay.add(size_t(n) * 4);
    const size_t o_begin = lay.add(size_t(rc) * 4), o_end = lay.add(size_t(rc) * 4), o_temp = lay.add(temp_bytes);
    ScratchBuffer buf = s.pool().acquire(lay.size());
    auto* kin = at<uint32_t>(buf, o_kin);
    auto* kout = at<uint32_t>(buf, o_kout);
    auto* vin = at<int32_t>(buf, o_vin);
    int32_t* vout = direct ? dst : at<int32_t>(buf, o_vout);
    int* begin = at<int>(buf, o_begin);
    int* end = at<int>(buf, o_end);

    const unsigned prep_grid = unsigned(std::min<int64_t>(ceil_div(n, 256), 8192));
    k::argsort_prepare_kernel<<<prep_grid, 256, 0, st>>>(xr, x.row_stride, rc, cols, cols, kin, vin, begin, end);
    check_launch(s, op);
    if (rc == 1) {
      MLXN_CUDA_CHECK(
          cub::DeviceRadixSort::SortPairs(at<void>(buf, o_temp), temp_bytes, kin, kout, vin, vout, n, 0, 32, st));
    } else {
      MLXN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(at<void>(buf, o_temp), temp_bytes, kin, kout, vin, vout,
                                                               n, int(rc), begin, end, 0, 32, st));
    }
    check_launch(s, op);
    if (!direct) {
      MLXN_CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(out_stride) * 4, vout, size_t(cols) * 4, size_t(cols) * 4,
                                        size_t(rc), cudaMemcpyDeviceToDevice, st));
    }
  }
}

// Every row of x sorted descending into out (i32 rows at out_stride).
void sort_rows(Session& s, const char* op, const RowView& x, int32_t* out, int64_t out_stride) {
  cudaStream_t st = stream_of(s);
  const auto* xp = static_cast<const float*>(x.data);
  const int cols = int(x.cols);
  const unsigned grid = grid_dim(op, x.rows);
  if (cols <= 512) {
    k::argsort_block_kernel<128, 4><<<grid, 128, 0, st>>>(xp, x.row_stride, out, out_stride, cols);
  } else if (cols <= 2048) {
    k::argsort_block_kernel<256, 8><<<grid, 256, 0, st>>>(xp, x.row_stride, out, out_stride, cols);
  } else if (cols <= 4096) {
    k::argsort_block_kernel<512, 8><<<grid, 512, 0, st>>>(xp, x.row_stride, out, out_stride, cols);
  } else {
    sort_rows_device(s, op, x, out, out_stride);
    return;
  }
  check_launch(s, op);
}

void argsort_cuda(Session& s, const ArgsortArgs& a) {
  sort_rows(s, "argsort", a.x, static_cast<int32_t*>(a.out.data), a.out.row_stride);
}

// ---- top_k ---------------------------------------------------------------------------------

void top_k_cuda(Session& s, const TopKArgs& a) {
  cudaStream_t st = stream_of(s);
  const int64_t rows = a.x.rows;
  const int cols = int(a.x.cols), kk = int(a.k);
  auto* values = static_cast<float*>(a.values.data);
  auto* indices = static_cast<int32_t*>(a.indices.data);
  const auto* x = static_cast<const float*>(a.x.data);

  if (kk > k::kTopKMaxK) {
    // More survivors than shared memory holds: sort whole rows, keep the first k.
    ScratchBuffer order = s.pool().acquire(size_t(rows * cols) * sizeof(int32_t));
    auto* ord = static_cast<int32_t*>(order.data());
    sort_rows(s, "top_k", a.x, ord, cols);
    const unsigned grid = unsigned(std::min<int64_t>(ceil_div(rows * kk, 256), 8192));
    k::topk_from_order_kernel<<<grid, 256, 0, st>>>(ord, cols, x, a.x.row_stride, rows, kk, values, a.values.row_stride,
                                                    indices, a.indices.row_stride);
    check_launch(s, "top_k");
    return;
  }

  k::TopKParams p{};
  p.x = x;
  p.x_stride = a.x.row_stride;
  p.cols = cols;
  p.k = kk;
  p.values = values;
  p.values_stride = a.values.row_stride;
  p.indices = indices;
  p.indices_stride = a.indices.row_stride;
  const int64_t segments = ceil_div(cols, k::kTopKSegment);
  if (rows < 128 && segments >= 4) {
    // Few wide rows: a block per 4096-column segment keeps that segment's k best (all of the
    // row's k best are among them), then one block per row selects from the candidates.
    p.cand_stride = segments * kk;
    const int64_t last = cols - (segments - 1) * k::kTopKSegment;
    p.cand_count = int((segments - 1) * kk + std::min<int64_t>(kk, last));
    ScratchLayout lay;
    const size_t o_key = lay.add(size_t(rows * p.cand_stride) * 4), o_idx = lay.add(size_t(rows * p.cand_stride) * 4);
    ScratchBuffer buf = s.pool().acquire(lay.size());
    p.cand_key = at<uint32_t>(buf, o_key);
    p.cand_idx = at<int32_t>(buf, o_idx);
    k::topk_segments_kernel<<<dim3(unsigned(segments), unsigned(rows)), k::kTopKThreads, 0, st>>>(p);
    check_launch(s, "top_k");
    k::topk_merge_kernel<<<unsigned(rows), k::kTopKThreads, 0, st>>>(p);
    check_launch(s, "top_k");
    return;
  }
  k::topk_rows_kernel<<<grid_dim("top_k", rows), k::kTopKThreads, 0, st>>>(p);
  check_launch(s, "top_k");
}

}  // namespace

MLXN_REGISTER_KERNEL(cumsum, reduce, cuda, kFloatTypes, detail::CumsumArgs, cumsum_cuda);
MLXN_REGISTER_KERNEL(argmax, reduce, cuda, kFloatTypes, detail::ArgmaxArgs, argmax_cuda);
MLXN_REGISTER_KERNEL(argsort, reduce, cuda, DTypeSet{DType::f32}, detail::ArgsortArgs, argsort_cuda);
MLXN_REGISTER_KERNEL(top_k, reduce, cuda, DTypeSet{DType::f32}, detail::TopKArgs, top_k_cuda);

}  // namespace mlxn::cuda
