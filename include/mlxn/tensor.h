#pragma once
// Tensor: a non-owning view (pointer, dtype, shape, strides in elements, offset, device).
// Array: a tensor that owns its buffer, for callers who want one object.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "mlxn/buffer.h"
#include "mlxn/device.h"
#include "mlxn/dtype.h"

namespace mlxn {

inline constexpr int kMaxDims = 8;

// A short list of extents or strides (at most kMaxDims).
class Dims {
 public:
  Dims() = default;
  Dims(std::initializer_list<int64_t> v);
  template <class It>
  Dims(It first, It last) {
    for (; first != last; ++first) push_back(int64_t(*first));
  }
  int size() const { return n_; }
  int64_t operator[](int i) const { return d_[size_t(i)]; }
  int64_t& operator[](int i) { return d_[size_t(i)]; }
  void push_back(int64_t v);
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }
  bool operator==(const Dims& o) const;
  std::string str() const;  // "[8192, 4096]"

 private:
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

class Tensor {
 public:
  Tensor() = default;
  // Contiguous (row-major) view when strides are omitted.
  Tensor(void* data, DType dtype, Dims shape, Device device = Device::cpu(), Dims strides = {}, int64_t offset = 0);

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int ndim() const { return shape_.size(); }
  const Dims& shape() const { return shape_; }
  const Dims& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim(int i) const { return shape_[norm_axis(i)]; }  // negative counts from the end
  int64_t stride(int i) const { return strides_[norm_axis(i)]; }
  int64_t numel() const;
  bool empty() const { return numel() == 0; }
  bool defined() const { return data_ != nullptr || numel() == 0; }
  bool is_contiguous() const;
  // Bytes spanned by a contiguous tensor of this shape.
  size_t nbytes() const;

  // Address of element 0 (base + offset).
  void* data() const;
  template <class T>
  T* data_as() const {
    return static_cast<T*>(data());
  }
  void* base() const { return data_; }

  // New views of the same memory.
  Tensor reshape(Dims shape) const;  // requires contiguous
  Tensor slice(int axis, int64_t start, int64_t stop) const;
  Tensor transpose(int a, int b) const;
  Tensor select(int axis, int64_t index) const;  // drops the axis

  std::string str() const;  // "bf16[8192, 4096] on cuda:0"
  int norm_axis(int i) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::f32;
  Device device_{};
  Dims shape_, strides_;
  int64_t offset_ = 0;
};

Dims contiguous_strides(const Dims& shape);
// Product of extents; throws InvalidArgument on negative extents or int64 overflow.
int64_t checked_numel(const Dims& shape, const char* op = "tensor");

// A tensor with its own (shared) buffer.
class Array {
 public:
  Array() = default;
  static Array empty(Dims shape, DType dtype, Device device = Device::cpu());
  const Tensor& tensor() const { return view_; }
  operator const Tensor&() const { return view_; }  // NOLINT: an Array is usable as a Tensor
  const Tensor* operator->() const { return &view_; }
  template <class T>
  T* data_as() const {
    return view_.data_as<T>();
  }

 private:
  std::shared_ptr<Buffer> buffer_;
  Tensor view_;
};

}  // namespace mlxn
