#pragma once
// Byte-level writers for weight files, so loader tests can build valid files and then break
// them in exactly one place. Everything is written into memory (and, where a path is
// needed, into a per-test temporary directory that is removed afterwards).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlxn::test {

using Bytes = std::vector<uint8_t>;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string tag = info ? std::string(info->test_suite_name()) + "." + info->name() : "io";
    for (char& c : tag)
      if (c == '/') c = '_';
    path_ = std::filesystem::temp_directory_path() / ("mlxn-" + tag + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const Bytes& b) const {
    const std::string p = file(name);
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    return p;
  }
  std::string write(const std::string& name, std::string_view text) const {
    return write(name, Bytes(text.begin(), text.end()));
  }

 private:
  std::filesystem::path path_;
};

inline void put_bytes(Bytes& b, const void* p, size_t n) {
  const auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}
template <class T>
void put(Bytes& b, T v) {
  put_bytes(b, &v, sizeof(T));
}

// ---- safetensors -------------------------------------------------------------------------
// Writes a header string verbatim (so tests can make it wrong) followed by the data.
inline Bytes safetensors_bytes(const std::string& header, const Bytes& data) {
  Bytes b;
  put<uint64_t>(b, header.size());
  put_bytes(b, header.data(), header.size());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// Builds a well-formed file: tensors laid out one after another.
class SafetensorsBuilder {
 public:
  // `shape` as JSON text, e.g. "[2, 3]".
  SafetensorsBuilder& add(const std::string& name, const std::string& dtype, const std::string& shape,
                          const Bytes& data) {
    entries_.push_back("\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
                       ", \"data_offsets\": [" + std::to_string(data_.size()) + ", " +
                       std::to_string(data_.size() + data.size()) + "]}");
    data_.insert(data_.end(), data.begin(), data.end());
    return *this;
  }
  SafetensorsBuilder& metadata(const std::string& json_object) {
    entries_.push_back("\"__metadata__\": " + json_object);
    return *this;
  }
  std::string header() const {
    std::string h = "{";
    for (size_t i = 0; i < entries_.size(); ++i) h += (i ? ", " : "") + entries_[i];
    h += "}";
    while (h.size() % 8) h += ' ';  // the reference writer pads the header to 8 bytes
    return h;
  }
  Bytes bytes() const { return safetensors_bytes(header(), data_); }
  const Bytes& data() const { return data_; }

 private:
  std::vector<std::string> entries_;
  Bytes data_;
};

// ---- GGUF --------------------------------------------------------------------------------
// Value type ids, as in the format.
enum : uint32_t {
  kGU8 = 0,
  kGI8 = 1,
  kGU16 = 2,
  kGI16 = 3,
  kGU32 = 4,
  kGI32 = 5,
  kGF32 = 6,
  kGBool = 7,
  kGString = 8,
  kGArray = 9,
  kGU64 = 10,
  kGI64 = 11,
  kGF64 = 12,
};

inline void put_gstr(Bytes& b, std::string_view s) {
  put<uint64_t>(b, s.size());
  put_bytes(b, s.data(), s.size());
}

// Builds a GGUF file in memory. Metadata values are given as pre-encoded bytes (type id +
// payload), so tests can write any value, valid or not.
class GgufBuilder {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // used for padding and offsets; written only via kv()

  GgufBuilder& kv(std::string_view key, uint32_t type, const Bytes& payload) {
    put_gstr(kv_, key);
    put<uint32_t>(kv_, type);
    kv_.insert(kv_.end(), payload.begin(), payload.end());
    ++n_kv_;
    return *this;
  }
  template <class T>
  GgufBuilder& scalar(std::string_view key, uint32_t type, T v) {
    Bytes p;
    put<T>(p, v);
    return kv(key, type, p);
  }
  GgufBuilder& str(std::string_view key, std::string_view v) {
    Bytes p;
    put_gstr(p, v);
    return kv(key, kGString, p);
  }
  // A tensor with explicit ne (ggml order), type id and data; placed at the next aligned
  // offset unless `offset` is given.
  GgufBuilder& tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, const Bytes& data,
                      int64_t offset = -1) {
    uint64_t off = offset >= 0 ? uint64_t(offset) : (data_.size() + alignment - 1) / alignment * alignment;
    put_gstr(ti_, name);
    put<uint32_t>(ti_, uint32_t(ne.size()));
    for (uint64_t d : ne) put<uint64_t>(ti_, d);
    put<uint32_t>(ti_, type);
    put<uint64_t>(ti_, off);
    if (!data.empty()) {
      if (data_.size() < off + data.size()) data_.resize(off + data.size());
      std::memcpy(data_.data() + off, data.data(), data.size());
    }
    ++n_tensors_;
    return *this;
  }
  Bytes bytes() const {
    Bytes b;
    put_bytes(b, "GGUF", 4);
    put<uint32_t>(b, version);
    put<uint64_t>(b, n_tensors_);
    put<uint64_t>(b, n_kv_);
    b.insert(b.end(), kv_.begin(), kv_.end());
    b.insert(b.end(), ti_.begin(), ti_.end());
    while (b.size() % alignment) b.push_back(0);
    b.insert(b.end(), data_.begin(), data_.end());
    return b;
  }
  size_t header_end() const { return 24 + kv_.size() + ti_.size(); }

 private:
  Bytes kv_, ti_, data_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
};

inline Bytes iota_bytes(size_t n, uint8_t start = 1) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t(start + i * 7);
  return b;
}

}  // namespace mlxn::test
