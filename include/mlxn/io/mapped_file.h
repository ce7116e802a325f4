#pragma once
// Read-only memory maps, and the byte source every weight-file parser reads from.
//
// A parser never reads outside [data, data + size): files are untrusted input. Pages are
// mapped read-only, so tensor views over a mapping must not be written to. A file that
// another process truncates while it is mapped raises SIGBUS on access; that is outside
// what a reader can guard against.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mlxn/error.h"

namespace mlxn::io {

// A whole file mapped read-only (RAII, move-only). An empty file maps to no pages.
class MappedFile {
 public:
  MappedFile() = default;
  // Throws FormatError naming the path when it cannot be opened, is not a regular file,
  // or cannot be mapped.
  static MappedFile open(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Bytes a parsed file refers to: a mapping it keeps alive, or a caller's buffer (which the
// caller keeps alive for as long as the parsed object and its views are used).
struct ByteSource {
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::string name;                   // path, or a label for memory buffers (error messages)
  std::shared_ptr<const void> owner;  // keeps the bytes alive; null for borrowed buffers

  static ByteSource map(const std::string& path);
  // Borrowed: nothing is copied. Throws InvalidArgument for a null pointer with size > 0.
  static ByteSource borrow(const uint8_t* data, size_t size, std::string name = "<memory>");
  // Owned: the bytes move into the source.
  static ByteSource own(std::vector<uint8_t> bytes, std::string name = "<memory>");
  std::span<const uint8_t> bytes() const { return {data, size}; }
};

}  // namespace mlxn::io
