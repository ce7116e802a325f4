#include "mlxn/session.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/backend.h"
#include "mlxn/error.h"

namespace mlxn {

namespace {
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}
}  // namespace

Session::Session(Device device, SessionOptions options) : device_(device), options_(options), pool_(device) {
  if (env_flag("MLXN_SYNC_LAUNCHES")) options_.sync_after_launch = true;
  if (device.is_cuda()) stream_ = detail::runtime_for(device, "session").create_stream(device.index);
}

Session::~Session() {
  pool_.trim();
  if (stream_) {
    if (auto* rt = detail::cuda_runtime()) rt->destroy_stream(device_.index, stream_);
  }
}

void Session::synchronize() {
  if (device_.is_cuda()) detail::runtime_for(device_, "synchronize").synchronize(stream_);
}

namespace {
void check_host_copy(const char* op, const Tensor& t, size_t bytes) {
  if (!t.is_contiguous()) throw_error<InvalidArgument>(op, "tensor ", t.str(), " is not contiguous");
  if (bytes != t.nbytes())
    throw_error<InvalidArgument>(op, "host size ", bytes, " bytes does not match ", t.str(), " (", t.nbytes(),
                                 " bytes)");
}
}  // namespace

void Session::upload(const Tensor& dst, const void* host, size_t bytes) {
  check_host_copy("upload", dst, bytes);
  if (bytes == 0) return;
  if (dst.device().is_cpu()) {
    std::memcpy(dst.data(), host, bytes);
  } else {
    detail::runtime_for(dst.device(), "upload").copy(dst.data(), dst.device(), host, Device::cpu(), bytes, stream_);
  }
}

void Session::download(void* host, const Tensor& src, size_t bytes) {
  check_host_copy("download", src, bytes);
  if (bytes == 0) return;
  if (src.device().is_cpu()) {
    std::memcpy(host, src.data(), bytes);
  } else {
    auto& rt = detail::runtime_for(src.device(), "download");
    rt.copy(host, Device::cpu(), src.data(), src.device(), bytes, stream_);
    rt.synchronize(stream_);
  }
}

void Session::copy(const Tensor& dst, const Tensor& src) {
  if (!dst.is_contiguous() || !src.is_contiguous())
    throw_error<InvalidArgument>("copy", "device copies need contiguous tensors (", src.str(), " -> ", dst.str(),
                                 "); use the layout op copy for strided views");
  if (dst.dtype() != src.dtype() || dst.numel() != src.numel())
    throw_error<InvalidArgument>("copy", "cannot copy ", src.str(), " into ", dst.str());
  const size_t bytes = src.nbytes();
  if (bytes == 0) return;
  if (dst.device().is_cpu() && src.device().is_cpu()) {
    std::memmove(dst.data(), src.data(), bytes);
    return;
  }
  const Device gpu = dst.device().is_cuda() ? dst.device() : src.device();
  auto& rt = detail::runtime_for(gpu, "copy");
  rt.copy(dst.data(), dst.device(), src.data(), src.device(), bytes, stream_);
  if (dst.device().is_cpu()) rt.synchronize(stream_);
}

void Session::begin_capture() {
  if (!device_.is_cuda()) throw_error<Unsupported>("graph", "graph capture needs a CUDA session, not ", device_.str());
  if (capturing_) throw_error<InvalidArgument>("graph", "a capture is already in progress");
  detail::runtime_for(device_, "graph").begin_capture(stream_);
  capturing_ = true;
}

Graph Session::end_capture() {
  if (!capturing_) throw_error<InvalidArgument>("graph", "end_capture without begin_capture");
  capturing_ = false;
  void* exec = detail::runtime_for(device_, "graph").end_capture(stream_);
  return Graph(device_, exec, stream_);
}

Graph::~Graph() {
  if (exec_) {
    if (auto* rt = detail::cuda_runtime()) rt->destroy_graph(exec_);
  }
}

Graph::Graph(Graph&& o) noexcept : device_(o.device_), exec_(std::exchange(o.exec_, nullptr)), stream_(o.stream_) {}

Graph& Graph::operator=(Graph&& o) noexcept {
  if (this != &o) {
    if (exec_) {
      if (auto* rt = detail::cuda_runtime()) rt->destroy_graph(exec_);
    }
    device_ = o.device_;
    exec_ = std::exchange(o.exec_, nullptr);
    stream_ = o.stream_;
  }
  return *this;
}

void Graph::replay() {
  if (!exec_) throw_error<InvalidArgument>("graph", "replay of an empty graph");
  detail::runtime_for(device_, "graph").replay(exec_, stream_);
}

}  // namespace mlxn

namespace mlxn {

namespace {
double host_now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Timer::Timer(Session& s) : s_(s) {
  if (s.device().is_cuda()) {
    auto& rt = detail::runtime_for(s.device(), "timer");
    ev_start_ = rt.create_event();
    ev_stop_ = rt.create_event();
  }
}

Timer::~Timer() {
  if (auto* rt = detail::cuda_runtime(); rt && ev_start_) {
    rt->destroy_event(ev_start_);
    rt->destroy_event(ev_stop_);
  }
}

void Timer::start() {
  if (ev_start_)
    detail::runtime_for(s_.device(), "timer").record_event(ev_start_, s_.stream());
  else
    host_start_ = host_now_ms();
}

void Timer::stop() {
  if (ev_stop_)
    detail::runtime_for(s_.device(), "timer").record_event(ev_stop_, s_.stream());
  else
    host_stop_ = host_now_ms();
}

double Timer::elapsed_ms() {
  if (ev_start_) return detail::runtime_for(s_.device(), "timer").elapsed_ms(ev_start_, ev_stop_);
  return host_stop_ - host_start_;
}

}  // namespace mlxn
