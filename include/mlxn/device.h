#pragma once
// Devices: the CPU, and CUDA GPUs by ordinal.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mlxn {

enum class DeviceType { cpu = 0, cuda = 1 };
inline constexpr int kDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static constexpr Device cpu() { return {DeviceType::cpu, 0}; }
  static constexpr Device cuda(int i = 0) { return {DeviceType::cuda, i}; }
  constexpr bool is_cpu() const { return type == DeviceType::cpu; }
  constexpr bool is_cuda() const { return type == DeviceType::cuda; }
  constexpr bool operator==(const Device&) const = default;
  std::string str() const;                  // "cpu", "cuda:0"
  static Device parse(std::string_view s);  // "cpu", "cuda", "cuda:1"; throws InvalidArgument
};

struct DeviceInfo {
  Device device;
  std::string name;
  size_t total_memory = 0;  // bytes
  size_t free_memory = 0;   // bytes
  int compute_major = 0;    // CUDA compute capability (0 on the CPU)
  int compute_minor = 0;
  int multiprocessors = 0;  // SMs on CUDA, hardware threads on the CPU
  size_t l2_bytes = 0;
};

// True when the library was built with the CUDA backend.
bool built_with_cuda();
// Number of usable CUDA devices (0 when built without CUDA or no GPU is present).
int cuda_device_count();
// Every device this process can use, the CPU first.
std::vector<DeviceInfo> list_devices();
DeviceInfo device_info(Device d);
// cuda:0 when a GPU is present, else the CPU.
Device best_device();

}  // namespace mlxn
