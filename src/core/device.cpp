#include "mlxn/device.h"

#include <charconv>
#include <thread>

#include "core/backend.h"
#include "mlxn/error.h"

namespace mlxn {

namespace detail {
namespace {
Runtime*& cuda_slot() {
  static Runtime* rt = nullptr;
  return rt;
}
}  // namespace

Runtime* cuda_runtime() { return cuda_slot(); }
void set_cuda_runtime(Runtime* rt) { cuda_slot() = rt; }

Runtime& runtime_for(Device d, const char* op) {
  if (!d.is_cuda()) throw_error<InvalidArgument>(op, "no device runtime for ", d.str());
  Runtime* rt = cuda_runtime();
  if (!rt) throw_error<Unsupported>(op, d.str(), " requested but mlxn was built without CUDA");
  const int n = rt->device_count();
  if (d.index < 0 || d.index >= n) throw_error<InvalidArgument>(op, d.str(), " does not exist (", n, " CUDA devices)");
  return *rt;
}
}  // namespace detail

std::string Device::str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }

Device Device::parse(std::string_view s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    int i = -1;
    const auto tail = s.substr(5);
    auto [p, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), i);
    if (ec == std::errc() && p == tail.data() + tail.size() && i >= 0) return cuda(i);
  }
  throw_error<InvalidArgument>("device", "cannot parse device '", s, "' (expected cpu, cuda or cuda:N)");
}

bool built_with_cuda() { return detail::cuda_runtime() != nullptr; }

int cuda_device_count() {
  auto* rt = detail::cuda_runtime();
  return rt ? rt->device_count() : 0;
}

DeviceInfo device_info(Device d) {
  if (d.is_cpu()) {
    DeviceInfo info;
    info.device = d;
    info.name = "host CPU";
    info.multiprocessors = int(std::thread::hardware_concurrency());
    return info;
  }
  return detail::runtime_for(d, "device_info").info(d.index);
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out{device_info(Device::cpu())};
  for (int i = 0; i < cuda_device_count(); ++i) out.push_back(device_info(Device::cuda(i)));
  return out;
}

Device best_device() { return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu(); }

}  // namespace mlxn
