#include "mlxn/io/gguf.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <sstream>

#include "mlxn/error.h"
#include "mlxn/io/upload.h"

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace mlxn::io {

namespace {

constexpr const char* kOp = "gguf";
constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;        // nested arrays deeper than this are refused
constexpr uint64_t kDefaultAlignment = 32;

// ggml's type ids. Retired ids keep their names (so errors can say what a file holds) but
// have no layout: block_bytes 0.
const std::array<GgmlTypeInfo, 42> kGgmlTypes = {{
    {0, "F32", 1, 4, DType::f32},
    {1, "F16", 1, 2, DType::f16},
    {2, "Q4_0", 32, 18, DType::q4_0},
    {3, "Q4_1", 32, 20, DType::q4_1},
    {4, "Q4_2", 0, 0, std::nullopt},
    {5, "Q4_3", 0, 0, std::nullopt},
    {6, "Q5_0", 32, 22, DType::q5_0},
    {7, "Q5_1", 32, 24, DType::q5_1},
    {8, "Q8_0", 32, 34, DType::q8_0},
    {9, "Q8_1", 32, 36, std::nullopt},
    {10, "Q2_K", 256, 84, DType::q2_k},
    {11, "Q3_K", 256, 110, DType::q3_k},
    {12, "Q4_K", 256, 144, DType::q4_k},
    {13, "Q5_K", 256, 176, DType::q5_k},
    {14, "Q6_K", 256, 210, DType::q6_k},
    {15, "Q8_K", 256, 292, std::nullopt},
    {16, "IQ2_XXS", 256, 66, std::nullopt},
    {17, "IQ2_XS", 256, 74, std::nullopt},
    {18, "IQ3_XXS", 256, 98, std::nullopt},
    {19, "IQ1_S", 256, 50, std::nullopt},
    {20, "IQ4_NL", 32, 18, std::nullopt},
    {21, "IQ3_S", 256, 110, std::nullopt},
    {22, "IQ2_S", 256, 82, std::nullopt},
    {23, "IQ4_XS", 256, 136, std::nullopt},
    {24, "I8", 1, 1, DType::i8},
    {25, "I16", 1, 2, std::nullopt},
    {26, "I32", 1, 4, DType::i32},
    {27, "I64", 1, 8, DType::i64},
    {28, "F64", 1, 8, std::nullopt},
    {29, "IQ1_M", 256, 56, std::nullopt},
    {30, "BF16", 1, 2, DType::bf16},
    {31, "Q4_0_4_4", 0, 0, std::nullopt},
    {32, "Q4_0_4_8", 0, 0, std::nullopt},
    {33, "Q4_0_8_8", 0, 0, std::nullopt},
    {34, "TQ1_0", 256, 54, std::nullopt},
    {35, "TQ2_0", 256, 66, std::nullopt},
    {36, "IQ4_NL_4_4", 0, 0, std::nullopt},
    {37, "IQ4_NL_4_8", 0, 0, std::nullopt},
    {38, "IQ4_NL_8_8", 0, 0, std::nullopt},
    {39, "MXFP4", 32, 17, std::nullopt},
    {40, "NVFP4", 64, 36, std::nullopt},
    {41, "Q1_0", 128, 18, std::nullopt},
}};

// Bytes of one scalar of a value type; 0 for string and array.
constexpr uint32_t scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
      return 8;
    case GgufType::string:
    case GgufType::array:
      return 0;
  }
  return 0;
}

constexpr bool is_signed_int(GgufType t) {
  return t == GgufType::i8 || t == GgufType::i16 || t == GgufType::i32 || t == GgufType::i64;
}
constexpr bool is_int(GgufType t) {
  return is_signed_int(t) || t == GgufType::u8 || t == GgufType::u16 || t == GgufType::u32 || t == GgufType::u64;
}
constexpr bool is_numeric(GgufType t) {
  return is_int(t) || t == GgufType::f32 || t == GgufType::f64 || t == GgufType::boolean;
}

template <class... Args>
[[noreturn]] void format_error(Args&&... args) {
  throw_error<FormatError>(kOp, std::forward<Args>(args)...);
}

}  // namespace

// ---- type tables -------------------------------------------------------------------------

const GgmlTypeInfo* find_ggml_type(uint32_t id) { return id < kGgmlTypes.size() ? &kGgmlTypes[id] : nullptr; }

const GgmlTypeInfo* find_ggml_type(std::string_view n) {
  for (const auto& t : kGgmlTypes)
    if (t.name == n) return &t;
  return nullptr;
}

std::string ggml_type_name(uint32_t id) {
  if (const auto* t = find_ggml_type(id)) return std::string(t->name);
  return "type " + std::to_string(id);
}

std::string_view name(GgufType t) {
  switch (t) {
    case GgufType::u8:
      return "u8";
    case GgufType::i8:
      return "i8";
    case GgufType::u16:
      return "u16";
    case GgufType::i16:
      return "i16";
    case GgufType::u32:
      return "u32";
    case GgufType::i32:
      return "i32";
    case GgufType::f32:
      return "f32";
    case GgufType::boolean:
      return "bool";
    case GgufType::string:
      return "string";
    case GgufType::array:
      return "array";
    case GgufType::u64:
      return "u64";
    case GgufType::i64:
      return "i64";
    case GgufType::f64:
      return "f64";
  }
  return "invalid";
}

// ---- values ------------------------------------------------------------------------------

GgufValue GgufValue::scalar_at(GgufType t, const uint8_t* p) {
  GgufValue v;
  v.type_ = t;
  switch (t) {
    case GgufType::u8:
    case GgufType::boolean:
      v.bits_ = p[0];
      break;
    case GgufType::i8:
      v.bits_ = uint64_t(int64_t(int8_t(p[0])));
      break;
    case GgufType::u16: {
      uint16_t x;
      std::memcpy(&x, p, 2);
      v.bits_ = x;
      break;
    }
    case GgufType::i16: {
      int16_t x;
      std::memcpy(&x, p, 2);
      v.bits_ = uint64_t(int64_t(x));
      break;
    }
    case GgufType::u32: {
      uint32_t x;
      std::memcpy(&x, p, 4);
      v.bits_ = x;
      break;
    }
    case GgufType::i32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      v.bits_ = uint64_t(int64_t(x));
      break;
    }
    case GgufType::u64:
    case GgufType::i64:
      std::memcpy(&v.bits_, p, 8);
      break;
    case GgufType::f32: {
      float x;
      std::memcpy(&x, p, 4);
      v.bits_ = std::bit_cast<uint64_t>(double(x));
      break;
    }
    case GgufType::f64:
      std::memcpy(&v.bits_, p, 8);
      break;
    case GgufType::string:
    case GgufType::array:
      break;
  }
  return v;
}

bool GgufValue::is_integer() const { return is_int(type_); }

int64_t GgufValue::as_int() const {
  if (!is_int(type_)) format_error("value is ", name(type_), ", expected an integer");
  if (!is_signed_int(type_) && bits_ > uint64_t(INT64_MAX)) format_error("u64 value ", bits_, " does not fit int64");
  return int64_t(bits_);
}

uint64_t GgufValue::as_uint() const {
  if (!is_int(type_)) format_error("value is ", name(type_), ", expected an integer");
  if (is_signed_int(type_) && int64_t(bits_) < 0) format_error("value ", int64_t(bits_), " is negative");
  return bits_;
}

double GgufValue::as_double() const {
  if (is_float()) return std::bit_cast<double>(bits_);
  if (is_signed_int(type_)) return double(int64_t(bits_));
  if (is_int(type_)) return double(bits_);
  format_error("value is ", name(type_), ", expected a number");
}

bool GgufValue::as_bool() const {
  if (type_ != GgufType::boolean) format_error("value is ", name(type_), ", expected bool");
  return bits_ != 0;
}

std::string_view GgufValue::as_string() const {
  if (type_ != GgufType::string) format_error("value is ", name(type_), ", expected string");
  return string_;
}

GgufType GgufValue::element_type() const {
  if (!is_array()) format_error("value is ", name(type_), ", expected an array");
  return elem_;
}

size_t GgufValue::size() const {
  if (!is_array()) format_error("value is ", name(type_), ", expected an array");
  return size_t(count_);
}

void GgufValue::throw_range(size_t i) const {
  format_error("array element ", i, " (", at(i).str(), ") does not fit the requested type");
}

GgufValue GgufValue::at(size_t i) const {
  if (i >= size()) throw_error<InvalidArgument>(kOp, "array index ", i, " out of range for ", count_, " elements");
  if (elem_ == GgufType::string) {
    GgufValue v;
    v.type_ = GgufType::string;
    v.string_ = strings_[i];
    return v;
  }
  if (elem_ == GgufType::array) return arrays_[i];
  return scalar_at(elem_, raw_ + i * scalar_bytes(elem_));
}

std::span<const std::string_view> GgufValue::strings() const {
  if (element_type() != GgufType::string) format_error("array of ", name(elem_), ", expected an array of strings");
  return strings_;
}

std::span<const GgufValue> GgufValue::arrays() const {
  if (element_type() != GgufType::array) format_error("array of ", name(elem_), ", expected an array of arrays");
  return arrays_;
}

std::span<const uint8_t> GgufValue::raw() const {
  if (!is_numeric(element_type())) format_error("array of ", name(elem_), ", expected numbers");
  return {raw_, size_t(count_) * scalar_bytes(elem_)};
}

int64_t GgufValue::int_element(size_t i) const {
  if (!is_int(element_type()) && elem_ != GgufType::boolean)
    format_error("array of ", name(elem_), ", expected integers");
  GgufValue v = scalar_at(elem_, raw_ + i * scalar_bytes(elem_));
  if (elem_ == GgufType::boolean) return v.bits_ != 0;
  return v.as_int();
}

uint64_t GgufValue::uint_element(size_t i) const {
  if (!is_int(element_type()) && elem_ != GgufType::boolean)
    format_error("array of ", name(elem_), ", expected integers");
  GgufValue v = scalar_at(elem_, raw_ + i * scalar_bytes(elem_));
  if (elem_ == GgufType::boolean) return v.bits_ != 0;
  return v.as_uint();
}

double GgufValue::double_element(size_t i) const {
  if (!is_numeric(element_type()) || elem_ == GgufType::boolean)
    format_error("array of ", name(elem_), ", expected numbers");
  return scalar_at(elem_, raw_ + i * scalar_bytes(elem_)).as_double();
}

std::string GgufValue::str() const {
  std::ostringstream os;
  switch (type_) {
    case GgufType::string:
      os << '"' << string_ << '"';
      break;
    case GgufType::boolean:
      os << (bits_ ? "true" : "false");
      break;
    case GgufType::f32:
    case GgufType::f64:
      os << as_double();
      break;
    case GgufType::array: {
      os << '[' << name(elem_) << " x " << count_;
      const size_t shown = std::min<uint64_t>(count_, 8);
      for (size_t i = 0; i < shown; ++i) os << (i ? ", " : ": ") << at(i).str();
      if (count_ > shown) os << ", ...";
      os << ']';
      break;
    }
    default:
      if (is_signed_int(type_))
        os << int64_t(bits_);
      else
        os << bits_;
  }
  return os.str();
}

// ---- parsing -----------------------------------------------------------------------------

// Reads from [data, data + size), never past it: every read states how many bytes it needs
// first, and every count is bounded by the bytes left before anything is allocated for it.
struct GgufParser {
  const uint8_t* p;
  uint64_t size;
  uint64_t pos = 0;
  std::string src;

  uint64_t left() const { return size - pos; }

  void need(uint64_t n, const char* what) const {
    if (n > left())
      format_error(src, ": truncated at byte ", pos, ": ", what, " needs ", n, " bytes, ", left(), " left");
  }

  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }

  std::string_view str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(p + pos), size_t(n));
    pos += n;
    return s;
  }

  GgufType value_type(const char* what) {
    const uint32_t t = get<uint32_t>(what);
    if (t > uint32_t(GgufType::f64)) format_error(src, ": ", what, " has unknown value type ", t, " at byte ", pos - 4);
    return GgufType(t);
  }

  // An array's element count, refused when the bytes left cannot hold that many elements
  // of at least `min_bytes` each.
  uint64_t count(uint64_t min_bytes, const std::string& key) {
    const uint64_t n = get<uint64_t>("array length");
    if (min_bytes && n > left() / min_bytes)
      format_error(src, ": array '", key, "' claims ", n, " elements but only ", left(), " bytes remain");
    return n;
  }

  GgufValue value(GgufType t, const std::string& key, int depth) {
    GgufValue v;
    v.type_ = t;
    if (t == GgufType::string) {
      v.string_ = str("string value");
      return v;
    }
    if (t != GgufType::array) {
      const uint32_t b = scalar_bytes(t);
      need(b, "scalar value");
      v = GgufValue::scalar_at(t, p + pos);
      pos += b;
      return v;
    }
    if (depth >= kMaxArrayDepth) format_error(src, ": array '", key, "' nests deeper than ", kMaxArrayDepth, " levels");
    v.elem_ = value_type("array element type");
    if (v.elem_ == GgufType::string) {
      v.count_ = count(8, key);
      v.strings_.reserve(size_t(v.count_));
      for (uint64_t i = 0; i < v.count_; ++i) v.strings_.push_back(str("array string"));
    } else if (v.elem_ == GgufType::array) {
      v.count_ = count(12, key);
      v.arrays_.reserve(size_t(v.count_));
      for (uint64_t i = 0; i < v.count_; ++i) v.arrays_.push_back(value(GgufType::array, key, depth + 1));
    } else {
      const uint32_t b = scalar_bytes(v.elem_);
      v.count_ = count(b, key);
      v.raw_ = p + pos;
      pos += v.count_ * b;  // bounded by left() through count()
    }
    return v;
  }

  void parse(GgufFile& f) {
    const uint32_t magic = get<uint32_t>("magic");
    if (magic != kMagic) format_error(src, ": not a GGUF file (magic bytes ", std::hex, magic, ")");
    const uint32_t version = get<uint32_t>("version");
    if (version == 1)
      throw_error<Unsupported>(kOp, src, ": GGUF version 1 (32-bit counts) is not supported; convert to v3");
    if (version != 2 && version != 3) {
      const uint32_t swapped =
          (version >> 24) | ((version >> 8) & 0xff00u) | ((version << 8) & 0xff0000u) | (version << 24);
      if (swapped >= 1 && swapped <= 3)
        throw_error<Unsupported>(kOp, src, ": big-endian GGUF (version ", swapped, ") is not supported");
      format_error(src, ": unknown GGUF version ", version);
    }
    f.version_ = version;
    const uint64_t n_tensors = get<uint64_t>("tensor count");
    const uint64_t n_kv = get<uint64_t>("metadata count");
    // Smallest encodings: a key/value is an empty key (8) + type (4) + a u8 (1); a tensor
    // info is an empty name (8) + n_dims (4) + type (4) + offset (8).
    if (n_kv > left() / 13)
      format_error(src, ": header claims ", n_kv, " metadata entries but only ", left(), " bytes remain");
    if (n_tensors > left() / 24)
      format_error(src, ": header claims ", n_tensors, " tensors but only ", left(), " bytes remain");

    f.metadata_.reserve(size_t(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key(str("metadata key"));
      const GgufType t = value_type("metadata value");
      GgufValue v = value(t, key, 0);
      if (!f.key_index_.emplace(key, f.metadata_.size()).second)
        format_error(src, ": metadata key '", key, "' appears twice");
      f.metadata_.emplace_back(std::move(key), std::move(v));
    }

    if (const GgufValue* a = f.find("general.alignment")) {
      if (a->type() != GgufType::u32) format_error(src, ": general.alignment is ", name(a->type()), ", expected u32");
      const uint64_t al = a->as_uint();
      if (al == 0 || !std::has_single_bit(al)) format_error(src, ": general.alignment ", al, " is not a power of two");
      f.alignment_ = al;
    } else {
      f.alignment_ = kDefaultAlignment;
    }

    f.tensors_.reserve(size_t(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) f.tensors_.push_back(tensor_info());

    f.data_offset_ = pos + (f.alignment_ - pos % f.alignment_) % f.alignment_;
    const uint64_t data_bytes = f.data_offset_ <= size ? size - f.data_offset_ : 0;
    std::vector<const GgufTensorInfo*> by_off;
    for (size_t i = 0; i < f.tensors_.size(); ++i) {
      const auto& t = f.tensors_[i];
      if (!f.tensor_index_.emplace(t.name, i).second) format_error(src, ": tensor '", t.name, "' appears twice");
      if (t.offset % f.alignment_)
        format_error(src, ": tensor '", t.name, "' offset ", t.offset, " is not a multiple of the alignment ",
                     f.alignment_);
      if (t.nbytes == 0) continue;
      if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
        format_error(src, ": tensor '", t.name, "' bytes [", t.offset, ", +", t.nbytes,
                     ") run past the end of the data section (", data_bytes, " bytes)");
      by_off.push_back(&t);
    }
    std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_off.size(); ++i)
      if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
        format_error(src, ": tensors '", by_off[i - 1]->name, "' and '", by_off[i]->name, "' overlap");
  }

  GgufTensorInfo tensor_info() {
    GgufTensorInfo t;
    t.name = std::string(str("tensor name"));
    const uint32_t n_dims = get<uint32_t>("tensor n_dims");
    if (n_dims > uint32_t(kMaxDims))
      format_error(src, ": tensor '", t.name, "' has ", n_dims, " dimensions (at most ", kMaxDims, ")");
    // The product of the non-zero extents must fit too: strides of an empty tensor are
    // computed from them.
    int64_t span = 1;
    bool zero = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = get<uint64_t>("tensor dims");
      if (ne > uint64_t(INT64_MAX)) format_error(src, ": tensor '", t.name, "' has a negative extent");
      if (ne == 0)
        zero = true;
      else if (span > INT64_MAX / int64_t(ne))
        format_error(src, ": tensor '", t.name, "' element count overflows int64");
      else
        span *= int64_t(ne);
      t.ne.push_back(int64_t(ne));
    }
    const int64_t numel = zero ? 0 : span;
    t.numel = numel;
    for (auto it = t.ne.rbegin(); it != t.ne.rend(); ++it) t.shape.push_back(*it);
    t.type_id = get<uint32_t>("tensor type");
    t.type = find_ggml_type(t.type_id);
    if (!t.type) format_error(src, ": tensor '", t.name, "' has unknown ggml type ", t.type_id);
    if (t.type->block_bytes == 0)
      throw_error<Unsupported>(kOp, src, ": tensor '", t.name, "' has type ", t.type->name, " (", t.type_id,
                               "), which ggml has retired; its layout is unknown");
    const int64_t inner = t.ne.empty() ? 1 : t.ne[0];
    if (inner % t.type->block_elems)
      format_error(src, ": tensor '", t.name, "' row of ", inner, " elements is not a whole number of ", t.type->name,
                   " blocks (", t.type->block_elems, ")");
    const uint64_t blocks = uint64_t(numel) / t.type->block_elems;
    if (blocks > uint64_t(INT64_MAX) / t.type->block_bytes)
      format_error(src, ": tensor '", t.name, "' byte size overflows int64");
    t.nbytes = blocks * t.type->block_bytes;
    t.offset = get<uint64_t>("tensor offset");
    return t;
  }
};

GgufFile GgufFile::open(const std::string& path) { return parse(ByteSource::map(path)); }

GgufFile GgufFile::parse(const uint8_t* data, size_t size, std::string name) {
  return parse(ByteSource::borrow(data, size, std::move(name)));
}

GgufFile GgufFile::parse(std::vector<uint8_t> bytes, std::string name) {
  return parse(ByteSource::own(std::move(bytes), std::move(name)));
}

GgufFile GgufFile::parse(ByteSource source) {
  GgufFile f;
  f.src_ = std::move(source);
  // Values and views point into the source bytes, which `f` keeps alive (or the caller, for
  // a borrowed buffer); moving `f` does not move them.
  GgufParser parser{f.src_.data, f.src_.size, 0, f.src_.name};
  parser.parse(f);
  return f;
}

// ---- lookups -----------------------------------------------------------------------------

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) format_error(src_.name, ": no metadata key '", key, "'");
  return *v;
}

namespace {
template <class F>
auto with_key(const std::string& src, std::string_view key, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const FormatError& e) {
    format_error(src, ": metadata '", key, "': ", std::string_view(e.what()).substr(std::strlen("[gguf] ")));
  }
}
}  // namespace

std::string_view GgufFile::get_string(std::string_view key) const {
  return with_key(src_.name, key, [&] { return get(key).as_string(); });
}
int64_t GgufFile::get_int(std::string_view key) const {
  return with_key(src_.name, key, [&] { return get(key).as_int(); });
}
uint64_t GgufFile::get_uint(std::string_view key) const {
  return with_key(src_.name, key, [&] { return get(key).as_uint(); });
}
double GgufFile::get_double(std::string_view key) const {
  return with_key(src_.name, key, [&] { return get(key).as_double(); });
}
bool GgufFile::get_bool(std::string_view key) const {
  return with_key(src_.name, key, [&] { return get(key).as_bool(); });
}
int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
double GgufFile::get_double(std::string_view key, double fallback) const {
  return has(key) ? get_double(key) : fallback;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view n) const {
  auto it = tensor_index_.find(n);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor_info(std::string_view n) const {
  const auto* t = find_tensor(n);
  if (!t) format_error(src_.name, ": no tensor named '", n, "'");
  return *t;
}

std::span<const uint8_t> GgufFile::bytes(const GgufTensorInfo& t) const {
  if (t.nbytes == 0) return {};
  return {src_.data + data_offset_ + t.offset, size_t(t.nbytes)};
}

std::span<const uint8_t> GgufFile::bytes(std::string_view n) const { return bytes(tensor_info(n)); }

Tensor GgufFile::tensor(const GgufTensorInfo& t) const {
  if (!t.type->dtype)
    throw_error<Unsupported>(kOp, "tensor '", t.name, "' has ggml type ", t.type->name,
                             ", which mlxn has no type for (read its bytes() instead)");
  // An empty tensor may sit at an offset past the end of the file; point it at the start.
  auto* base = const_cast<uint8_t*>(t.nbytes ? src_.data + data_offset_ + t.offset : src_.data);
  return Tensor(base, *t.type->dtype, t.shape, Device::cpu());
}

Tensor GgufFile::tensor(std::string_view n) const { return tensor(tensor_info(n)); }

Array GgufFile::upload(Session& s, std::string_view n) const { return io::upload(s, tensor(n)); }

}  // namespace mlxn::io
