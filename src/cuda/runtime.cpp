// The CUDA device runtime: memory, streams, copies and graphs. Registers itself with core at
// load time, so a CPU-only build simply has no CUDA runtime.
#include <cuda_runtime.h>

#include <string>

#include "core/backend.h"
#include "cuda/common/check.h"
#include "mlxn/error.h"

namespace mlxn::cuda {

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  const std::string msg = detail::concat("[cuda] ", cudaGetErrorName(err), ": ", cudaGetErrorString(err), " in ", what,
                                         " (", file, ":", line, ")");
  if (err == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  throw DeviceError(msg);
}

void check_launch(const Session& s, const char* op) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && s.options().sync_after_launch && !s.capturing()) err = cudaStreamSynchronize(stream_of(s));
  if (err != cudaSuccess) throw_cuda_error(err, op, "kernel launch", 0);
}

namespace {

class ScopedDevice {
 public:
  explicit ScopedDevice(int index) {
    MLXN_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != index) MLXN_CUDA_CHECK(cudaSetDevice(index));
    target_ = index;
  }
  ~ScopedDevice() {
    if (prev_ != target_) cudaSetDevice(prev_);
  }

 private:
  int prev_ = 0, target_ = 0;
};

cudaMemcpyKind kind_of(Device dst, Device src) {
  if (dst.is_cuda() && src.is_cuda()) return cudaMemcpyDeviceToDevice;
  if (dst.is_cuda()) return cudaMemcpyHostToDevice;
  if (src.is_cuda()) return cudaMemcpyDeviceToHost;
  return cudaMemcpyHostToHost;
}

class CudaRuntime final : public detail::Runtime {
 public:
  int device_count() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // no driver or no GPU: clear the sticky error, report none
      return 0;
    }
    return n;
  }

  DeviceInfo info(int index) override {
    ScopedDevice guard(index);
    cudaDeviceProp p{};
    MLXN_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
    size_t free_b = 0, total_b = 0;
    MLXN_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    DeviceInfo d;
    d.device = Device::cuda(index);
    d.name = p.name;
    d.total_memory = total_b;
    d.free_memory = free_b;
    d.compute_major = p.major;
    d.compute_minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.l2_bytes = size_t(p.l2CacheSize);
    return d;
  }

  void* allocate(int index, size_t bytes) override {
    ScopedDevice guard(index);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw_error<OutOfMemory>("allocate", "cuda:", index, " cannot allocate ", bytes, " bytes");
    }
    MLXN_CUDA_CHECK(err);
    return p;
  }

  void deallocate(int index, void* p) noexcept override {
    int prev = 0;
    cudaGetDevice(&prev);
    cudaSetDevice(index);
    cudaFree(p);
    cudaSetDevice(prev);
  }

  void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes, void* stream) override {
    MLXN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind_of(dst_dev, src_dev), static_cast<cudaStream_t>(stream)));
  }

  void* create_stream(int index) override {
    ScopedDevice guard(index);
    cudaStream_t s = nullptr;
    MLXN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }

  void destroy_stream(int, void* stream) noexcept override {
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    cudaStreamDestroy(static_cast<cudaStream_t>(stream));
  }

  void synchronize(void* stream) override { MLXN_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream))); }

  void begin_capture(void* stream) override {
    MLXN_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
  }

  void* end_capture(void* stream) override {
    cudaGraph_t graph = nullptr;
    MLXN_CUDA_CHECK(cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    MLXN_CUDA_CHECK(err);
    return exec;
  }

  void replay(void* exec, void* stream) override {
    MLXN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), static_cast<cudaStream_t>(stream)));
  }

  void destroy_graph(void* exec) noexcept override { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)); }

  void make_current(int index) override {
    // cudaGetDevice reads thread-local state (tens of ns); set only when it differs.
    int current = -1;
    MLXN_CUDA_CHECK(cudaGetDevice(&current));
    if (current != index) MLXN_CUDA_CHECK(cudaSetDevice(index));
  }

  void* create_event() override {
    cudaEvent_t ev = nullptr;
    MLXN_CUDA_CHECK(cudaEventCreate(&ev));
    return ev;
  }
  void destroy_event(void* ev) noexcept override { cudaEventDestroy(static_cast<cudaEvent_t>(ev)); }
  void record_event(void* ev, void* stream) override {
    MLXN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ev), static_cast<cudaStream_t>(stream)));
  }
  float elapsed_ms(void* start, void* stop) override {
    MLXN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
    float ms = 0;
    MLXN_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
    return ms;
  }
};

const bool registered = [] {
  static CudaRuntime rt;
  detail::set_cuda_runtime(&rt);
  return true;
}();

}  // namespace
}  // namespace mlxn::cuda
