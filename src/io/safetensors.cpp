#include "mlxn/io/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "io/json.h"
#include "mlxn/error.h"
#include "mlxn/io/upload.h"

namespace mlxn::io {

namespace {

constexpr const char* kOp = "safetensors";
// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 8;

const std::array<SafetensorsDType, 22> kDTypes = {{
    {"BOOL", 8, std::nullopt},        {"U8", 8, DType::u8},         {"I8", 8, DType::i8},
    {"U16", 16, std::nullopt},        {"I16", 16, std::nullopt},    {"F16", 16, DType::f16},
    {"BF16", 16, DType::bf16},        {"U32", 32, DType::u32},      {"I32", 32, DType::i32},
    {"F32", 32, DType::f32},          {"U64", 64, std::nullopt},    {"I64", 64, DType::i64},
    {"F64", 64, std::nullopt},        {"C64", 64, std::nullopt},    {"F8_E4M3", 8, std::nullopt},
    {"F8_E5M2", 8, std::nullopt},     {"F8_E8M0", 8, std::nullopt}, {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt}, {"F6_E2M3", 6, std::nullopt}, {"F6_E3M2", 6, std::nullopt},
    {"F4", 4, std::nullopt},
}};

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON integer as a non-negative int64, else nullopt.
std::optional<int64_t> as_nonneg_int(const nlohmann::json& j) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(v);
  }
  if (j.is_number_integer()) {
    const auto v = j.get<int64_t>();
    if (v < 0) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

template <class... Args>
[[noreturn]] void entry_error(const std::string& src, const std::string& name, Args&&... args) {
  throw_error<FormatError>(kOp, src, ": tensor '", name, "': ", std::forward<Args>(args)...);
}

SafetensorsTensorInfo parse_entry(const std::string& src, const std::string& name, const nlohmann::json& e,
                                  uint64_t data_bytes) {
#define bad(...) entry_error(src, name, __VA_ARGS__)
  if (!e.is_object()) bad("entry is a JSON ", detail::json_kind(e), ", expected an object");
  const auto dt = e.find("dtype");
  const auto sh = e.find("shape");
  const auto off = e.find("data_offsets");
  if (dt == e.end() || sh == e.end() || off == e.end()) bad("entry lacks dtype, shape or data_offsets");
  if (!dt->is_string()) bad("dtype is a JSON ", detail::json_kind(*dt), ", expected a string");
  const auto& code = dt->get_ref<const std::string&>();
  const SafetensorsDType* dtype = find_safetensors_dtype(code);
  if (!dtype) bad("unknown dtype '", code, "'");

  SafetensorsTensorInfo info;
  info.name = name;
  info.dtype = *dtype;
  if (!sh->is_array()) bad("shape is a JSON ", detail::json_kind(*sh), ", expected an array");
  // The product of the non-zero extents must fit too: strides of an empty tensor are
  // computed from them.
  int64_t span = 1;
  bool zero = false;
  for (const auto& d : *sh) {
    const auto v = as_nonneg_int(d);
    if (!v) bad("shape has an entry that is not a non-negative integer");
    info.shape.push_back(*v);
    if (*v == 0)
      zero = true;
    else if (span > std::numeric_limits<int64_t>::max() / *v)
      bad("shape overflows int64 elements");
    else
      span *= *v;
  }
  const int64_t numel = zero ? 0 : span;
  info.numel = numel;
  // Bytes of numel elements of `bits` bits, overflow-checked; sub-byte types must fill whole bytes.
  const uint64_t n = uint64_t(numel);
  if (n > std::numeric_limits<uint64_t>::max() / dtype->bits) bad("byte size overflows");
  const uint64_t bits = n * dtype->bits;
  if (bits % 8) bad(numel, " elements of ", code, " do not fill a whole number of bytes");
  const uint64_t want = bits / 8;
  if (want > uint64_t(std::numeric_limits<int64_t>::max())) bad("byte size overflows int64");

  if (!off->is_array() || off->size() != 2) bad("data_offsets is not an array of two integers");
  const auto b = as_nonneg_int((*off)[0]);
  const auto en = as_nonneg_int((*off)[1]);
  if (!b || !en) bad("data_offsets are not non-negative integers");
  if (*b > *en) bad("data_offsets begin ", *b, " > end ", *en);
  if (uint64_t(*en) > data_bytes) bad("data_offsets end ", *en, " beyond the data section (", data_bytes, " bytes)");
  info.begin = uint64_t(*b);
  info.end = uint64_t(*en);
  if (info.end - info.begin != want)
    bad("data_offsets span ", info.end - info.begin, " bytes but ", numel, " elements of ", code, " need ", want);
  return info;
#undef bad
}

}  // namespace

const SafetensorsDType* find_safetensors_dtype(std::string_view code) {
  for (const auto& d : kDTypes)
    if (d.code == code) return &d;
  return nullptr;
}

Dims SafetensorsTensorInfo::dims() const {
  if (shape.size() > size_t(kMaxDims))
    throw_error<Unsupported>(kOp, "tensor '", name, "' has ", shape.size(), " dimensions; views hold at most ",
                             kMaxDims);
  return Dims(shape.begin(), shape.end());
}

SafetensorsFile SafetensorsFile::open(const std::string& path) { return parse(ByteSource::map(path)); }

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, std::string name) {
  return parse(ByteSource::borrow(data, size, std::move(name)));
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, std::string name) {
  return parse(ByteSource::own(std::move(bytes), std::move(name)));
}

SafetensorsFile SafetensorsFile::parse(ByteSource source) {
  SafetensorsFile f;
  f.src_ = std::move(source);
  const std::string& src = f.src_.name;
  const uint8_t* p = f.src_.data;
  const uint64_t size = f.src_.size;
  if (size < 8) throw_error<FormatError>(kOp, src, ": ", size, " bytes is too short for the 8-byte header length");
  const uint64_t n = read_le64(p);
  if (n > size - 8)
    throw_error<FormatError>(kOp, src, ": header length ", n, " runs past the end of the file (", size, " bytes)");
  if (n > kMaxHeaderBytes) throw_error<FormatError>(kOp, src, ": header length ", n, " exceeds ", kMaxHeaderBytes);
  if (n < 2 || p[8] != '{')
    throw_error<FormatError>(kOp, src, ": header does not start with a JSON object (wrong format?)");
  f.header_bytes_ = n;
  const uint64_t data_bytes = size - 8 - n;

  const auto j =
      detail::parse_json(std::string_view(reinterpret_cast<const char*>(p + 8), size_t(n)), kOp, src, kMaxJsonDepth);
  if (!j.is_object()) throw_error<FormatError>(kOp, src, ": header is a JSON ", detail::json_kind(j));

  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw_error<FormatError>(kOp, src, ": __metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw_error<FormatError>(kOp, src, ": __metadata__ value '", mk, "' is a JSON ", detail::json_kind(mv),
                                   ", expected a string");
        f.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(src, key, value, data_bytes));
  }
  // nlohmann's objects are sorted by key, and duplicate keys were refused while parsing.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });

  // Overlap: sort the non-empty byte ranges and require each to end before the next begins.
  std::vector<const SafetensorsTensorInfo*> by_off;
  for (const auto& t : f.tensors_)
    if (t.end > t.begin) by_off.push_back(&t);
  std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_off.size(); ++i)
    if (by_off[i]->begin < by_off[i - 1]->end)
      throw_error<FormatError>(kOp, src, ": tensors '", by_off[i - 1]->name, "' [", by_off[i - 1]->begin, ", ",
                               by_off[i - 1]->end, ") and '", by_off[i]->name, "' [", by_off[i]->begin, ", ",
                               by_off[i]->end, ") overlap");
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> v;
  v.reserve(tensors_.size());
  for (const auto& t : tensors_) v.push_back(t.name);
  return v;
}

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const SafetensorsTensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const SafetensorsTensorInfo& SafetensorsFile::info(std::string_view name) const {
  const auto* t = find(name);
  if (!t) throw_error<FormatError>(kOp, src_.name, ": no tensor named '", name, "'");
  return *t;
}

std::span<const uint8_t> SafetensorsFile::bytes(const SafetensorsTensorInfo& t) const {
  if (t.end == t.begin) return {};
  return {src_.data + data_offset() + t.begin, size_t(t.end - t.begin)};
}

std::span<const uint8_t> SafetensorsFile::bytes(std::string_view name) const { return bytes(info(name)); }

Tensor SafetensorsFile::tensor(const SafetensorsTensorInfo& t) const {
  if (!t.dtype.dtype)
    throw_error<Unsupported>(kOp, "tensor '", t.name, "' has dtype ", t.dtype.code,
                             ", which mlxn has no type for (read its bytes() instead)");
  // The data pointer of an empty tensor still points into the file, so the view is defined.
  auto* base = const_cast<uint8_t*>(src_.data + data_offset() + t.begin);
  return Tensor(base, *t.dtype.dtype, t.dims(), Device::cpu());
}

Tensor SafetensorsFile::tensor(std::string_view name) const { return tensor(info(name)); }

Array SafetensorsFile::upload(Session& s, std::string_view name) const { return io::upload(s, tensor(name)); }

// ---- multi-file sets ---------------------------------------------------------------------

namespace fs = std::filesystem;

namespace {

// A shard name from an index must stay inside the index's directory. A NUL (a JSON string
// may hold "\u0000") would end the path the system opens early: a name that is not the file read.
bool safe_relative(const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) return false;
  const fs::path p(name);
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory()) return false;
  for (const auto& part : p)
    if (part == "..") return false;
  return true;
}

SafetensorsSet open_index(const fs::path& index_path) {
  const std::string src = index_path.string();
  const MappedFile m = MappedFile::open(src);
  const auto j =
      detail::parse_json(std::string_view(reinterpret_cast<const char*>(m.data()), m.size()), kOp, src, kMaxJsonDepth);
  if (!j.is_object()) throw_error<FormatError>(kOp, src, ": index is a JSON ", detail::json_kind(j));
  const auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) throw_error<FormatError>(kOp, src, ": index has no weight_map object");

  std::vector<std::string> shard_names;
  std::map<std::string, size_t> shard_of_name;
  std::vector<std::pair<std::string, size_t>> wanted;  // tensor name -> shard
  for (const auto& [tensor, file] : wm->items()) {
    if (!file.is_string())
      throw_error<FormatError>(kOp, src, ": weight_map entry '", tensor, "' is a JSON ", detail::json_kind(file));
    const auto& fname = file.get_ref<const std::string&>();
    if (!safe_relative(fname))
      throw_error<FormatError>(kOp, src, ": weight_map entry '", tensor, "' names '", fname,
                               "', which is not a file inside the index's directory");
    auto [it, inserted] = shard_of_name.emplace(fname, shard_names.size());
    if (inserted) shard_names.push_back(fname);
    wanted.emplace_back(tensor, it->second);
  }

  const fs::path dir = index_path.parent_path();
  std::vector<SafetensorsFile> files;
  files.reserve(shard_names.size());
  for (const auto& s : shard_names) files.push_back(SafetensorsFile::open((dir / s).string()));
  for (const auto& [tensor, shard] : wanted)
    if (!files[shard].contains(tensor))
      throw_error<FormatError>(kOp, src, ": weight_map puts '", tensor, "' in ", shard_names[shard],
                               ", which has no such tensor");
  return SafetensorsSet::from_files(std::move(files));
}

}  // namespace

SafetensorsSet SafetensorsSet::from_files(std::vector<SafetensorsFile> files) {
  SafetensorsSet s;
  s.files_ = std::move(files);
  s.build_index();
  return s;
}

void SafetensorsSet::build_index() {
  index_.clear();
  for (size_t f = 0; f < files_.size(); ++f) {
    const auto& ts = files_[f].tensors();
    for (size_t t = 0; t < ts.size(); ++t) {
      auto [it, inserted] = index_.emplace(ts[t].name, Entry{f, t});
      if (!inserted)
        throw_error<FormatError>(kOp, "tensor '", ts[t].name, "' is in both ", files_[it->second.file].path(), " and ",
                                 files_[f].path());
    }
  }
}

SafetensorsSet SafetensorsSet::open(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json", ec)) return open_index(p / "model.safetensors.index.json");
    if (fs::exists(p / "model.safetensors", ec)) {
      std::vector<SafetensorsFile> one;
      one.push_back(SafetensorsFile::open((p / "model.safetensors").string()));
      return from_files(std::move(one));
    }
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(p, ec))
      if (e.path().extension() == ".safetensors") found.push_back(e.path().string());
    if (ec) throw_error<FormatError>(kOp, "cannot list '", path, "': ", ec.message());
    if (found.empty()) throw_error<FormatError>(kOp, "no .safetensors files in '", path, "'");
    std::sort(found.begin(), found.end());
    std::vector<SafetensorsFile> files;
    for (const auto& f : found) files.push_back(SafetensorsFile::open(f));
    return from_files(std::move(files));
  }
  const std::string name = p.filename().string();
  if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".json") == 0) return open_index(p);
  std::vector<SafetensorsFile> one;
  one.push_back(SafetensorsFile::open(path));
  return from_files(std::move(one));
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> v;
  v.reserve(index_.size());
  for (const auto& [k, e] : index_) v.push_back(k);
  return v;
}

const SafetensorsSet::Entry* SafetensorsSet::entry(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &it->second;
}

const SafetensorsTensorInfo* SafetensorsSet::find(std::string_view name) const {
  const Entry* e = entry(name);
  return e ? &files_[e->file].tensors()[e->tensor] : nullptr;
}

const SafetensorsFile& SafetensorsSet::file_of(std::string_view name) const {
  const Entry* e = entry(name);
  if (!e) {
    if (files_.size() == 1) throw_error<FormatError>(kOp, files_[0].path(), ": no tensor named '", name, "'");
    throw_error<FormatError>(kOp, "no tensor named '", name, "' in ", files_.size(), " files");
  }
  return files_[e->file];
}

const SafetensorsTensorInfo& SafetensorsSet::info(std::string_view name) const {
  const auto& f = file_of(name);
  return f.info(name);
}

Tensor SafetensorsSet::tensor(std::string_view name) const { return file_of(name).tensor(name); }
std::span<const uint8_t> SafetensorsSet::bytes(std::string_view name) const { return file_of(name).bytes(name); }
Array SafetensorsSet::upload(Session& s, std::string_view name) const { return file_of(name).upload(s, name); }

}  // namespace mlxn::io
