#pragma once
// safetensors: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor
// name to {dtype, shape, data_offsets: [begin, end]} (byte offsets relative to the end of
// the header) plus an optional "__metadata__" object of strings, then the data.
//
// Files are memory-mapped and every tensor is a zero-copy CPU view into the mapping (read
// only: never write through it). Everything in the header is validated before any view is
// handed out: header length within the file, well-formed JSON, known dtypes, non-negative
// shapes whose element count and byte size fit in int64, begin <= end <= data size,
// end - begin == bytes of the shape, no two tensors overlapping, unique names. A file that
// fails any check raises FormatError; nothing outside the file is ever read.
//
// Multi-file checkpoints (model-00001-of-00004.safetensors ... with a
// model.safetensors.index.json whose "weight_map" names the file of each tensor) open as one
// SafetensorsSet.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mlxn/dtype.h"
#include "mlxn/error.h"
#include "mlxn/io/mapped_file.h"
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn::io {

// A safetensors dtype code: BOOL U8 I8 U16 I16 F16 BF16 U32 I32 F32 U64 I64 F64 C64 and the
// narrow floats F8_E4M3 F8_E5M2 F8_E8M0 F8_E4M3FNUZ F8_E5M2FNUZ F6_E2M3 F6_E3M2 F4.
struct SafetensorsDType {
  std::string_view code;       // as written in the header, e.g. "BF16"
  uint32_t bits = 0;           // bits per element (4 for F4, 6 for F6_*)
  std::optional<DType> dtype;  // the mlxn dtype, where one exists
};
// The entry for a code; nullptr when the code is unknown.
const SafetensorsDType* find_safetensors_dtype(std::string_view code);

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDType dtype;
  std::vector<int64_t> shape;  // row-major
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;  // bytes, relative to the start of the data section
  uint64_t nbytes() const { return end - begin; }
  // Row-major Dims of the shape; throws Unsupported beyond kMaxDims dimensions.
  Dims dims() const;
};

class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  // Maps and validates a file. FormatError for anything malformed.
  static SafetensorsFile open(const std::string& path);
  // Parses bytes the caller owns and keeps alive while this object (and its views) live.
  static SafetensorsFile parse(const uint8_t* data, size_t size, std::string name = "<memory>");
  static SafetensorsFile parse(ByteSource source);
  // Parses bytes it takes ownership of (so a temporary buffer is safe to pass).
  static SafetensorsFile parse(std::vector<uint8_t> bytes, std::string name = "<memory>");

  const std::string& path() const { return src_.name; }
  // Tensors sorted by name.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const SafetensorsTensorInfo* find(std::string_view name) const;
  // Throws FormatError naming the file when the tensor is absent.
  const SafetensorsTensorInfo& info(std::string_view name) const;

  // A zero-copy view on the CPU. Unsupported when the dtype has no mlxn DType (the error
  // names the code; bytes() still gives the raw data). The format does not align tensor
  // data: the reference writer pads the header to 8 bytes and places tensors largest
  // dtype first, so views are element-aligned in practice, but a view from another writer
  // may not be; upload() copies into aligned device memory either way.
  Tensor tensor(std::string_view name) const;
  Tensor tensor(const SafetensorsTensorInfo& info) const;
  // The tensor's raw little-endian bytes, any dtype.
  std::span<const uint8_t> bytes(std::string_view name) const;
  std::span<const uint8_t> bytes(const SafetensorsTensorInfo& info) const;
  // One copy of the tensor onto s.device().
  Array upload(Session& s, std::string_view name) const;

  // The "__metadata__" strings (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t header_bytes() const { return header_bytes_; }     // N
  uint64_t data_offset() const { return 8 + header_bytes_; }  // file offset of the data section

 private:
  ByteSource src_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_bytes_ = 0;
};

// The tensors of one or many safetensors files, addressed by name.
class SafetensorsSet {
 public:
  SafetensorsSet() = default;
  // `path` is one .safetensors file, a *.safetensors.index.json, or a directory. A directory
  // opens model.safetensors.index.json if present, else model.safetensors, else every
  // *.safetensors in it (sorted by name). FormatError when none exists, when the index is
  // malformed, names a file outside its directory, or names a tensor its file lacks, or
  // when two files hold a tensor of the same name.
  static SafetensorsSet open(const std::string& path);
  // Several already-parsed files (names must be unique across them).
  static SafetensorsSet from_files(std::vector<SafetensorsFile> files);

  const std::vector<SafetensorsFile>& files() const { return files_; }
  std::vector<std::string> names() const;  // sorted
  size_t size() const { return index_.size(); }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const SafetensorsTensorInfo* find(std::string_view name) const;
  const SafetensorsTensorInfo& info(std::string_view name) const;  // FormatError when absent
  const SafetensorsFile& file_of(std::string_view name) const;     // FormatError when absent
  Tensor tensor(std::string_view name) const;
  std::span<const uint8_t> bytes(std::string_view name) const;
  Array upload(Session& s, std::string_view name) const;

 private:
  struct Entry {
    size_t file;    // index into files_
    size_t tensor;  // index into files_[file].tensors()
  };
  const Entry* entry(std::string_view name) const;
  void build_index();
  std::vector<SafetensorsFile> files_;
  std::map<std::string, Entry, std::less<>> index_;
};

}  // namespace mlxn::io
