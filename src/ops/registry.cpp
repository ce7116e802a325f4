#include "ops/registry.h"

#include "core/backend.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

namespace mlxn {
namespace detail {
namespace {

struct OpRecord {
  std::string family;
  KernelRecord kernels[kDeviceTypes];
};

struct Registry {
  std::mutex mu;
  std::map<std::string, OpRecord, std::less<>> ops;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_kernel_erased(const char* op, const char* family, DeviceType backend, const KernelRecord& rec) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& entry = r.ops[op];
  entry.family = family;
  entry.kernels[int(backend)] = rec;
}

const KernelRecord& find_kernel(const char* op, Device device, DType dtype) {
  auto& r = registry();
  // Registration happens during static initialisation only, so lookups need no lock.
  auto it = r.ops.find(std::string_view(op));
  if (it == r.ops.end()) throw_error<Unsupported>(op, "no kernel registered for this op");
  const KernelRecord& rec = it->second.kernels[int(device.type)];
  if (!rec.fn) throw_error<Unsupported>(op, "no ", device.str(), " implementation in this build");
  if (!rec.dtypes.contains(dtype))
    throw_error<Unsupported>(op, device.str(), " implementation does not support dtype ", name(dtype));
  if (device.is_cuda()) runtime_for(device, op).make_current(device.index);
  return rec;
}

}  // namespace detail

std::vector<OpListing> list_ops() {
  auto& r = detail::registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<OpListing> out;
  for (auto& [name, rec] : r.ops) {
    OpListing l{name, rec.family, {}};
    for (int b = 0; b < kDeviceTypes; ++b) l.dtypes[b] = rec.kernels[b].dtypes;
    out.push_back(std::move(l));
  }
  std::stable_sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.family < b.family; });
  return out;
}

bool supports(const std::string& op, Device device, DType dtype) {
  auto& r = detail::registry();
  auto it = r.ops.find(op);
  if (it == r.ops.end()) return false;
  const auto& rec = it->second.kernels[int(device.type)];
  return rec.fn && rec.dtypes.contains(dtype);
}

}  // namespace mlxn
