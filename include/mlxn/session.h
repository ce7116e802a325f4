#pragma once
// Session: ordered execution on one device. Every op takes the session it runs in; on CUDA
// ops are enqueued on the session's stream (asynchronous), on the CPU they run at once.
// On CUDA a sequence of ops can be captured into a graph and replayed with one launch.
#include <memory>

#include "mlxn/buffer.h"
#include "mlxn/device.h"
#include "mlxn/tensor.h"

namespace mlxn {

class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(Graph&& o) noexcept;
  Graph& operator=(Graph&& o) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  // Enqueues the whole captured sequence on the stream it was captured from.
  void replay();
  bool valid() const { return exec_ != nullptr; }

 private:
  friend class Session;
  Graph(Device d, void* exec, void* stream) : device_(d), exec_(exec), stream_(stream) {}
  Device device_{};
  void* exec_ = nullptr;
  void* stream_ = nullptr;
};

struct SessionOptions {
  // Synchronise and check for errors after every kernel launch (debugging; slow). Also set
  // by the environment variable MLXN_SYNC_LAUNCHES=1.
  bool sync_after_launch = false;
};

class Session;

// Measures the time of the work enqueued on a session between start() and stop(): device
// events on CUDA, a steady host clock on the CPU (where ops run synchronously).
class Timer {
 public:
  explicit Timer(Session& s);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start();
  void stop();
  double elapsed_ms();  // waits for the work to finish

 private:
  Session& s_;
  void* ev_start_ = nullptr;
  void* ev_stop_ = nullptr;
  double host_start_ = 0, host_stop_ = 0;
};

class Session {
 public:
  explicit Session(Device device = Device::cpu(), SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Device device() const { return device_; }
  const SessionOptions& options() const { return options_; }
  // cudaStream_t on CUDA, nullptr on the CPU.
  void* stream() const { return stream_; }
  // Waits for all enqueued work; throws DeviceError if any of it failed.
  void synchronize();

  ScratchPool& pool() { return pool_; }
  // A new tensor on this session's device (exact allocation, not pooled).
  Array empty(Dims shape, DType dtype) const { return Array::empty(shape, dtype, device_); }

  // Copies between host memory and a contiguous tensor on this session's device. The
  // upload is ordered on the stream; download waits for it.
  void upload(const Tensor& dst, const void* host, size_t bytes);
  void download(void* host, const Tensor& src, size_t bytes);
  // Contiguous tensor -> contiguous tensor of the same dtype and size, any two devices.
  void copy(const Tensor& dst, const Tensor& src);

  // CUDA only (Unsupported elsewhere): ops issued between the two calls are recorded, not run.
  // A graph replays on this session's stream and keeps using the scratch buffers its ops
  // took from pool(): it must not outlive the session, and pool().trim() must wait until
  // no graph that used the pool will be replayed again.
  void begin_capture();
  Graph end_capture();
  bool capturing() const { return capturing_; }

 private:
  Device device_;
  SessionOptions options_;
  void* stream_ = nullptr;
  bool capturing_ = false;
  ScratchPool pool_;
};

}  // namespace mlxn
