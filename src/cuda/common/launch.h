#pragma once
// Small helpers shared by CUDA entry points.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "cuda/common/check.h"
#include "mlxn/error.h"
#include "ops/validate.h"

namespace mlxn::cuda {

// Null pointers count as aligned: an absent operand never blocks the vector path.
inline bool aligned_to(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
inline bool aligned16(const void* p) { return aligned_to(p, 16); }

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

// CUDA's limit on a grid's y (and z) extent: kernels stride rows over y past it, launchers
// refuse shapes whose row tiles would need more.
inline constexpr int64_t kMaxGridY = 65535;

// Row kernels (one block per row) with at least this many rows are shaped for bandwidth
// (128 threads, several 16-byte chunks each: more rows resident per SM); fewer rows, a
// decode-sized call, for the shortest dependency chain (more threads, fewer chunks each).
inline constexpr int64_t kManyRows = 64;

// Blocks of `kernel` that fit on the current device at once (occupancy x SMs): the grid of a
// persistent kernel, which splits its work evenly instead of running a partial last wave.
// The occupancy query is a driver call made by launchers on every call; its answer is fixed
// per (kernel, block size, shared memory, device), so it is asked once per key.
template <class Kernel>
int64_t resident_blocks(Kernel kernel, int threads, size_t smem = 0) {
  using Key = std::tuple<const void*, int, size_t, int>;
  static std::mutex mutex;
  static std::map<Key, int64_t> known;
  int dev = 0;
  MLXN_CUDA_CHECK(cudaGetDevice(&dev));
  const Key key{reinterpret_cast<const void*>(kernel), threads, smem, dev};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = known.find(key); it != known.end()) return it->second;
  }
  int sms = 0, per_sm = 0;
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  MLXN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  const int64_t blocks = std::max<int64_t>(1, int64_t(per_sm) * sms);
  std::lock_guard<std::mutex> lock(mutex);
  known.emplace(key, blocks);
  return blocks;
}

// `kernel`, allowed `bytes` of dynamic shared memory (needed past the default 48 KB). Set per
// launch rather than once: the attribute belongs to the current device.
template <class Kernel>
Kernel with_smem(Kernel kernel, int bytes) {
  MLXN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  return kernel;
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
