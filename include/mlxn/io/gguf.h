#pragma once
// GGUF (versions 2 and 3, little-endian): magic "GGUF", u32 version, u64 tensor count, u64
// metadata count, the metadata (key string, u32 value type, value; strings are u64 length +
// bytes; arrays are u32 element type + u64 count + elements, nestable), the tensor infos
// (name, u32 n_dims <= 4, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset), then
// padding to `general.alignment` (u32, a power of two, default 32) and the data section.
//
// Files are memory-mapped; strings and numeric arrays are views into the mapping (no
// copies), and tensors whose ggml type has an mlxn DType are zero-copy CPU views. Every
// count, length, offset and size is checked against the bytes that are actually there
// before it is used, so a truncated or hostile file raises FormatError and never reads out
// of bounds or allocates in proportion to a number it merely claims.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mlxn/dtype.h"
#include "mlxn/error.h"
#include "mlxn/io/mapped_file.h"
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn::io {

// ---- ggml tensor types -----------------------------------------------------------------
// Every type id GGUF files use, by the name ggml gives it.
struct GgmlTypeInfo {
  uint32_t id = 0;
  std::string_view name;       // "Q4_K", "F16", ...
  uint32_t block_elems = 0;    // elements per block (1 for plain types)
  uint32_t block_bytes = 0;    // bytes per block; 0 for ids ggml has retired (no layout)
  std::optional<DType> dtype;  // the mlxn DType, where one exists
};
// The entry for a type id; nullptr for ids no ggml version has used.
const GgmlTypeInfo* find_ggml_type(uint32_t id);
const GgmlTypeInfo* find_ggml_type(std::string_view name);
// "Q4_K", or "type 99" for unknown ids.
std::string ggml_type_name(uint32_t id);

// ---- metadata values -------------------------------------------------------------------
enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
std::string_view name(GgufType t);  // "u32", "string", "array", ...

// A metadata value: a scalar, a string, or an array of any of those (arrays nest). Strings
// and numeric array elements point into the file's bytes. Accessors for the wrong type
// throw FormatError naming both types (the file is not what the caller needs).
class GgufValue {
 public:
  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::array; }
  bool is_string() const { return type_ == GgufType::string; }
  bool is_integer() const;  // u8..i64
  bool is_float() const { return type_ == GgufType::f32 || type_ == GgufType::f64; }

  // Scalars. as_int/as_uint take any integer type whose value fits; as_double takes the
  // float types and any integer type.
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_double() const;
  bool as_bool() const;
  std::string_view as_string() const;

  // Arrays.
  GgufType element_type() const;  // FormatError unless an array
  size_t size() const;            // element count; FormatError unless an array
  // Element i as a value (scalars, strings and nested arrays alike). InvalidArgument when
  // i is out of range.
  GgufValue at(size_t i) const;
  // String arrays, nested arrays: the elements.
  std::span<const std::string_view> strings() const;
  std::span<const GgufValue> arrays() const;
  // Numeric and bool arrays: the raw little-endian elements (possibly unaligned).
  std::span<const uint8_t> raw() const;
  // A numeric array converted element by element to T (an arithmetic type): integers must
  // fit T exactly (FormatError otherwise); floats convert to floating T only.
  template <class T>
  std::vector<T> to_vector() const;

  // "3", "\"llama\"", "[u32 x 4: 1, 2, 3, 4]" (long arrays elided).
  std::string str() const;

 private:
  friend class GgufFile;
  friend struct GgufParser;
  GgufType type_ = GgufType::u8;
  uint64_t bits_ = 0;             // scalar value: integers sign- or zero-extended, f32/f64 as double bits
  std::string_view string_;       // string value
  GgufType elem_ = GgufType::u8;  // arrays: element type
  uint64_t count_ = 0;            // arrays: element count
  const uint8_t* raw_ = nullptr;  // arrays of numbers/bools: the elements in the file
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> arrays_;

  static GgufValue scalar_at(GgufType t, const uint8_t* p);
  [[noreturn]] void throw_range(size_t i) const;
  int64_t int_element(size_t i) const;
  uint64_t uint_element(size_t i) const;
  double double_element(size_t i) const;
};

// ---- tensors -----------------------------------------------------------------------------
struct GgufTensorInfo {
  std::string name;
  uint32_t type_id = 0;
  const GgmlTypeInfo* type = nullptr;  // never null for a parsed file
  std::vector<int64_t> ne;             // ggml order: ne[0] is the innermost (contiguous) extent
  Dims shape;                          // row-major: ne reversed ([rows, ne[0]] for a matrix)
  int64_t numel = 0;
  uint64_t offset = 0;  // bytes, relative to the data section
  uint64_t nbytes = 0;
  std::optional<DType> dtype() const { return type->dtype; }
  std::string_view type_name() const { return type->name; }
};

class GgufFile {
 public:
  GgufFile() = default;
  // Maps and validates a file. FormatError for anything malformed; Unsupported for version
  // 1, big-endian files, and tensors of a type ggml has retired (their size is unknown).
  static GgufFile open(const std::string& path);
  static GgufFile parse(const uint8_t* data, size_t size, std::string name = "<memory>");
  static GgufFile parse(ByteSource source);
  // Parses bytes it takes ownership of (so a temporary buffer is safe to pass).
  static GgufFile parse(std::vector<uint8_t> bytes, std::string name = "<memory>");

  const std::string& path() const { return src_.name; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const GgufValue* find(std::string_view key) const;
  // FormatError naming the key when absent or of the wrong type.
  const GgufValue& get(std::string_view key) const;
  std::string_view get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;
  double get_double(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // With a fallback when the key is absent (a present key of the wrong type still throws).
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_double(std::string_view key, double fallback) const;
  std::string_view architecture() const { return get_string("general.architecture"); }

  // Tensors in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor_info(std::string_view name) const;  // FormatError when absent
  // Zero-copy CPU view, shape = info.shape. Unsupported naming the ggml type when mlxn has
  // no DType for it (bytes() still gives the raw data).
  Tensor tensor(std::string_view name) const;
  Tensor tensor(const GgufTensorInfo& info) const;
  std::span<const uint8_t> bytes(std::string_view name) const;
  std::span<const uint8_t> bytes(const GgufTensorInfo& info) const;
  Array upload(Session& s, std::string_view name) const;

 private:
  friend struct GgufParser;
  ByteSource src_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// ---- template definitions ---------------------------------------------------------------
template <class T>
std::vector<T> GgufValue::to_vector() const {
  static_assert(std::is_arithmetic_v<T>, "to_vector<T> needs an arithmetic T");
  const size_t n = size();
  std::vector<T> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bool>) {
      out.push_back(int_element(i) != 0);
    } else if constexpr (std::is_floating_point_v<T>) {
      out.push_back(static_cast<T>(double_element(i)));
    } else if constexpr (std::is_signed_v<T>) {
      const int64_t v = int_element(i);
      if (v < int64_t(std::numeric_limits<T>::min()) || v > int64_t(std::numeric_limits<T>::max())) throw_range(i);
      out.push_back(static_cast<T>(v));
    } else {
      const uint64_t v = uint_element(i);
      if (v > uint64_t(std::numeric_limits<T>::max())) throw_range(i);
      out.push_back(static_cast<T>(v));
    }
  }
  return out;
}

}  // namespace mlxn::io
