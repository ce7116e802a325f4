#pragma once
// Typed errors. Every failure a caller or a file can cause is one of these, with a message
// of the form "[op] what is wrong, with the values".
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mlxn {

enum class ErrorKind { invalid_argument, unsupported, out_of_memory, format, device };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// Wrong shape, dtype, device, size, aliasing or value.
struct InvalidArgument : Error {
  explicit InvalidArgument(const std::string& w) : Error(ErrorKind::invalid_argument, w) {}
};
// A valid request that this backend / dtype combination does not implement.
struct Unsupported : Error {
  explicit Unsupported(const std::string& w) : Error(ErrorKind::unsupported, w) {}
};
struct OutOfMemory : Error {
  explicit OutOfMemory(const std::string& w) : Error(ErrorKind::out_of_memory, w) {}
};
// Malformed, truncated or hostile files.
struct FormatError : Error {
  explicit FormatError(const std::string& w) : Error(ErrorKind::format, w) {}
};
// A device runtime call failed (CUDA error, lost device, failed launch).
struct DeviceError : Error {
  explicit DeviceError(const std::string& w) : Error(ErrorKind::device, w) {}
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// throw_error<InvalidArgument>("rms_norm", "weight has ", n, " elements, expected ", d);
template <class E, class... Args>
[[noreturn]] void throw_error(const char* op, Args&&... args) {
  throw E(detail::concat("[", op, "] ", std::forward<Args>(args)...));
}

}  // namespace mlxn
