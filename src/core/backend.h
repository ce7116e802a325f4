#pragma once
// The device runtime behind Buffer, Session and Graph. The CPU runtime lives in core; the
// CUDA runtime registers itself from src/cuda/runtime.cpp when the library is built with it,
// so nothing in core depends on the CUDA toolkit.
#include <cstddef>

#include "mlxn/device.h"

namespace mlxn::detail {

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual int device_count() = 0;
  virtual DeviceInfo info(int index) = 0;
  virtual void* allocate(int index, size_t bytes) = 0;  // throws OutOfMemory
  virtual void deallocate(int index, void* p) noexcept = 0;
  // Copy where at least one side is on this runtime's device; ordered on `stream`.
  virtual void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes, void* stream) = 0;
  virtual void* create_stream(int index) = 0;
  virtual void destroy_stream(int index, void* stream) noexcept = 0;
  virtual void synchronize(void* stream) = 0;
  virtual void begin_capture(void* stream) = 0;
  virtual void* end_capture(void* stream) = 0;  // returns an executable graph
  virtual void replay(void* exec, void* stream) = 0;
  virtual void destroy_graph(void* exec) noexcept = 0;
  // Makes `index` the calling thread's current device (kernels launch there).
  virtual void make_current(int index) = 0;
  // Timing events on a stream.
  virtual void* create_event() = 0;
  virtual void destroy_event(void* ev) noexcept = 0;
  virtual void record_event(void* ev, void* stream) = 0;
  virtual float elapsed_ms(void* start, void* stop) = 0;  // waits for `stop`
};

// The CUDA runtime, or nullptr when the library was built without CUDA.
Runtime* cuda_runtime();
void set_cuda_runtime(Runtime* rt);
// The runtime that owns `d`; throws Unsupported for CUDA in a CPU-only build and
// InvalidArgument for a device ordinal that does not exist.
Runtime& runtime_for(Device d, const char* op);

}  // namespace mlxn::detail
