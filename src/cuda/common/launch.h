#pragma once
// Small helpers shared by CUDA entry points.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <utility>

#include "cuda/common/check.h"
#include "mlxn/error.h"
#include "ops/validate.h"

namespace mlxn::cuda {

// Null pointers count as aligned: an absent operand never blocks the vector path.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// A row view can be accessed with 16-byte vectors of `n` elements.
inline bool vectorizable(const detail::RowView& v, int n) {
  return !v.data || (aligned16(v.data) && v.cols % n == 0 && v.row_stride % n == 0);
}

// Grid extents beyond the hardware limit are rejected rather than truncated.
inline unsigned grid_dim(const char* op, int64_t blocks) {
  if (blocks > INT_MAX) throw_error<InvalidArgument>(op, blocks, " rows/blocks exceed the CUDA grid limit");
  return unsigned(blocks);
}

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Blocks of `kernel` that fit on the current device at once (occupancy x SMs): the grid of a
// persistent kernel, which splits its work evenly instead of running a partial last wave.
template <class Kernel>
int64_t resident_blocks(Kernel kernel, int threads, size_t smem = 0) {
  int dev = 0, sms = 0, per_sm = 0;
  MLXN_CUDA_CHECK(cudaGetDevice(&dev));
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  MLXN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  return std::max<int64_t>(1, int64_t(per_sm) * sms);
}

// Leading bytes of each of `rows` weight rows of `row_bytes` that a kernel reading them once
// asks L2 to prefetch as it starts (prefetch_l2, kernels/mma.cuh): whole rows while the
// matrix fits in half of L2, else an equal share of that half per row (the front of every
// row, which the kernels read first), so that prefetched lines are not evicted by later
// prefetches before their own loads arrive. The other half is left to activations.
inline int64_t l2_prefetch_row_bytes(int64_t rows, int64_t row_bytes) {
  static int l2_bytes[64] = {};  // per device; the attribute does not change
  int dev = 0;
  MLXN_CUDA_CHECK(cudaGetDevice(&dev));
  int& l2 = l2_bytes[dev & 63];
  if (l2 == 0) MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  if (rows <= 0 || row_bytes <= 0) return 0;
  const int64_t share = int64_t(l2) / 2 / rows / 16 * 16;
  return std::min(row_bytes, share);
}

// Launches a kernel with programmatic stream serialization: its blocks may be scheduled
// while the previous kernel on the stream finishes, hiding the launch gap between dependent
// decode-sized kernels (also inside captured graphs). The kernel must call pdl_wait()
// (kernels/math.cuh) before it reads or writes global memory. Returns the launch status.
template <class... KArgs, class... Args>
cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// launch_pdl on the session's stream, checked like every launch (check_launch).
template <class... KArgs, class... Args>
void launch_pdl(Session& s, const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                Args&&... args) {
  MLXN_CUDA_CHECK(launch_pdl(kernel, grid, block, smem, stream_of(s), std::forward<Args>(args)...));
  check_launch(s, op);
}

}  // namespace mlxn::cuda
