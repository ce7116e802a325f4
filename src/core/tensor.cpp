#include "mlxn/tensor.h"

#include <sstream>

#include "mlxn/error.h"

namespace mlxn {

Dims::Dims(std::initializer_list<int64_t> v) {
  for (int64_t x : v) push_back(x);
}

void Dims::push_back(int64_t v) {
  if (n_ >= kMaxDims) throw_error<InvalidArgument>("tensor", "more than ", kMaxDims, " dimensions");
  d_[size_t(n_++)] = v;
}

bool Dims::operator==(const Dims& o) const {
  if (n_ != o.n_) return false;
  for (int i = 0; i < n_; ++i)
    if (d_[size_t(i)] != o.d_[size_t(i)]) return false;
  return true;
}

std::string Dims::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < n_; ++i) os << (i ? ", " : "") << d_[size_t(i)];
  os << ']';
  return os.str();
}

Dims contiguous_strides(const Dims& shape) {
  Dims s = shape;
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape[i] > 0 ? shape[i] : 1;
  }
  return s;
}

int64_t checked_numel(const Dims& shape, const char* op) {
  // The product of the non-zero extents must fit too: strides are computed from it even
  // when another extent is 0.
  int64_t n = 1, nonzero = 1;
  for (int64_t d : shape) {
    if (d < 0) throw_error<InvalidArgument>(op, "negative extent in shape ", shape.str());
    if (d != 0 && nonzero > INT64_MAX / d) throw_error<InvalidArgument>(op, "shape ", shape.str(), " overflows int64");
    if (d != 0) nonzero *= d;
    n *= d;
  }
  return n;
}

Tensor::Tensor(void* data, DType dtype, Dims shape, Device device, Dims strides, int64_t offset)
    : data_(data), dtype_(dtype), device_(device), shape_(shape), offset_(offset) {
  checked_numel(shape_);
  if (strides.size() == 0) {
    strides_ = contiguous_strides(shape_);
  } else {
    if (strides.size() != shape_.size())
      throw_error<InvalidArgument>("tensor", "strides ", strides.str(), " do not match shape ", shape_.str());
    strides_ = strides;
  }
  if (offset < 0) throw_error<InvalidArgument>("tensor", "negative offset ", offset);
}

int Tensor::norm_axis(int i) const {
  const int n = ndim();
  const int a = i < 0 ? i + n : i;
  if (a < 0 || a >= n) throw_error<InvalidArgument>("tensor", "axis ", i, " out of range for ", n, " dims");
  return a;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // an empty view has no layout to get wrong
  int64_t expect = 1;
  for (int i = ndim() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

size_t Tensor::nbytes() const {
  const auto& t = traits(dtype_);
  return size_t(numel()) / t.block_elems * t.block_bytes;
}

void* Tensor::data() const {
  if (!data_) return nullptr;
  const auto& t = traits(dtype_);
  return static_cast<char*>(data_) + offset_ / int64_t(t.block_elems) * int64_t(t.block_bytes);
}

Tensor Tensor::reshape(Dims shape) const {
  if (!is_contiguous()) throw_error<InvalidArgument>("reshape", "tensor ", str(), " is not contiguous");
  if (checked_numel(shape, "reshape") != numel())
    throw_error<InvalidArgument>("reshape", "cannot view ", shape_.str(), " as ", shape.str());
  return Tensor(data_, dtype_, shape, device_, {}, offset_);
}

Tensor Tensor::slice(int axis, int64_t start, int64_t stop) const {
  const int a = norm_axis(axis);
  if (start < 0 || stop < start || stop > shape_[a])
    throw_error<InvalidArgument>("slice", "range [", start, ", ", stop, ") out of bounds for extent ", shape_[a]);
  Dims shape = shape_;
  shape[a] = stop - start;
  return Tensor(data_, dtype_, shape, device_, strides_, offset_ + start * strides_[a]);
}

Tensor Tensor::transpose(int a, int b) const {
  const int x = norm_axis(a), y = norm_axis(b);
  Dims shape = shape_, strides = strides_;
  std::swap(shape[x], shape[y]);
  std::swap(strides[x], strides[y]);
  return Tensor(data_, dtype_, shape, device_, strides, offset_);
}

Tensor Tensor::select(int axis, int64_t index) const {
  const int a = norm_axis(axis);
  if (index < 0 || index >= shape_[a])
    throw_error<InvalidArgument>("select", "index ", index, " out of bounds for extent ", shape_[a]);
  Dims shape, strides;
  for (int i = 0; i < ndim(); ++i)
    if (i != a) {
      shape.push_back(shape_[i]);
      strides.push_back(strides_[i]);
    }
  return Tensor(data_, dtype_, shape, device_, strides, offset_ + index * strides_[a]);
}

std::string Tensor::str() const { return std::string(name(dtype_)) + shape_.str() + " on " + device_.str(); }

Array Array::empty(Dims shape, DType dtype, Device device) {
  const int64_t n = checked_numel(shape, "empty");
  const auto& t = traits(dtype);
  if (n % t.block_elems != 0)
    throw_error<InvalidArgument>("empty", n, " elements is not a whole number of ", name(dtype), " blocks");
  Array a;
  a.buffer_ = std::make_shared<Buffer>(Buffer::allocate(device, size_t(n) / t.block_elems * t.block_bytes));
  a.view_ = Tensor(a.buffer_->data(), dtype, shape, device);
  return a;
}

}  // namespace mlxn
