#pragma once
// Buffer: owning, aligned device or host memory (RAII, move-only).
// ScratchPool: reuses freed scratch buffers between steps so a steady-state decode loop
// allocates nothing. Weights should use Buffer directly (exact size, never pooled).
#include <cstddef>
#include <map>
#include <mutex>

#include "mlxn/device.h"

namespace mlxn {

class Buffer {
 public:
  static constexpr size_t kAlignment = 256;  // bytes; enough for any vector load

  Buffer() = default;
  // Allocates exactly `bytes` (rounded up to the alignment); throws OutOfMemory.
  static Buffer allocate(Device device, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  Device device() const { return device_; }

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_{};
};

class ScratchPool;

// A pooled buffer; returns itself to its pool on destruction.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(ScratchPool* pool, Buffer buf) : pool_(pool), buf_(std::move(buf)) {}
  ~ScratchBuffer();
  ScratchBuffer(ScratchBuffer&&) noexcept = default;
  ScratchBuffer& operator=(ScratchBuffer&& o) noexcept;
  void* data() const { return buf_.data(); }
  size_t size() const { return buf_.size(); }

 private:
  ScratchPool* pool_ = nullptr;
  Buffer buf_;
};

class ScratchPool {
 public:
  explicit ScratchPool(Device device) : device_(device) {}
  // A buffer of at least `bytes`: a free one no more than twice as large, else a new one.
  ScratchBuffer acquire(size_t bytes);
  size_t cached_bytes() const;
  size_t allocations() const { return allocations_; }  // buffers ever created
  void trim();                                         // frees every cached buffer

 private:
  friend class ScratchBuffer;
  void give_back(Buffer buf);
  Device device_;
  mutable std::mutex mu_;
  std::multimap<size_t, Buffer> free_;
  size_t allocations_ = 0;
};

}  // namespace mlxn
