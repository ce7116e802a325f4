#pragma once
// Checking of CUDA runtime calls and kernel launches: every failure becomes a DeviceError
// (or OutOfMemory) naming the call site, never an abort.
#include <cuda_runtime.h>

#include "mlxn/error.h"
#include "mlxn/session.h"

namespace mlxn::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);

inline void check(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, what, file, line);
}

// After a launch: picks up launch-configuration errors, and with the session's
// sync_after_launch option (debug) also waits for the kernel and reports its faults.
void check_launch(const Session& s, const char* op);

inline cudaStream_t stream_of(const Session& s) { return static_cast<cudaStream_t>(s.stream()); }

}  // namespace mlxn::cuda

#define MLXN_CUDA_CHECK(expr) ::mlxn::cuda::check((expr), #expr, __FILE__, __LINE__)
