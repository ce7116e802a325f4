#include "mlxn/buffer.h"

#include <cstdlib>
#include <utility>

#include "core/backend.h"
#include "mlxn/error.h"

namespace mlxn {

Buffer Buffer::allocate(Device device, size_t bytes) {
  Buffer b;
  b.device_ = device;
  b.size_ = bytes;
  if (bytes == 0) return b;
  if (bytes > (size_t(1) << 48)) throw_error<OutOfMemory>("allocate", bytes, " bytes is beyond any device");
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (device.is_cpu()) {
    b.data_ = std::aligned_alloc(kAlignment, rounded);
    if (!b.data_) throw_error<OutOfMemory>("allocate", "host allocation of ", bytes, " bytes failed");
  } else {
    b.data_ = detail::runtime_for(device, "allocate").allocate(device.index, rounded);
  }
  return b;
}

void Buffer::release() noexcept {
  if (!data_) return;
  if (device_.is_cpu()) {
    std::free(data_);
  } else if (auto* rt = detail::cuda_runtime()) {
    rt->deallocate(device_.index, data_);
  }
  data_ = nullptr;
  size_ = 0;
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), device_(o.device_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    device_ = o.device_;
  }
  return *this;
}

ScratchBuffer::~ScratchBuffer() {
  if (pool_ && buf_.data()) pool_->give_back(std::move(buf_));
}

ScratchBuffer& ScratchBuffer::operator=(ScratchBuffer&& o) noexcept {
  if (this != &o) {
    if (pool_ && buf_.data()) pool_->give_back(std::move(buf_));
    pool_ = std::exchange(o.pool_, nullptr);
    buf_ = std::move(o.buf_);
  }
  return *this;
}

ScratchBuffer ScratchPool::acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(bytes);
    if (it != free_.end() && it->first <= 2 * bytes + Buffer::kAlignment) {
      Buffer b = std::move(it->second);
      free_.erase(it);
      return ScratchBuffer(this, std::move(b));
    }
    ++allocations_;
  }
  return ScratchBuffer(this, Buffer::allocate(device_, bytes));
}

void ScratchPool::give_back(Buffer buf) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t n = buf.size();
  free_.emplace(n, std::move(buf));
}

size_t ScratchPool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t s = 0;
  for (auto& [n, b] : free_) s += n;
  return s;
}

void ScratchPool::trim() {
  std::lock_guard<std::mutex> lock(mu_);
  free_.clear();
}

}  // namespace mlxn
