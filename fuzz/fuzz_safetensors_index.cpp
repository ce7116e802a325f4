// libFuzzer target: the index of a sharded checkpoint (model.safetensors.index.json) on
// arbitrary bytes, opened against fixed shards. Every input must either open, with every
// tensor's bytes inside its shard and every shard inside the index's directory, or raise an
// mlxn::Error.
//
// The parser reads the index and its shards from disk, so the target works in a directory of
// its own, made once under the system temp directory (and removed at exit): it writes only
// the index there, and the parser may open only what the index names inside it. The shards
// never change, so a run depends on the input alone.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "mlxn/io/safetensors.h"

namespace {

namespace fs = std::filesystem;

// A safetensors file: the 8-byte header length, the header, then data_bytes bytes.
std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::string b(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[size_t(i)] = char(uint8_t(n >> (8 * i)));
  b += header;
  for (size_t i = 0; i < data_bytes; ++i) b += char(uint8_t(i * 37 + 11));
  return b;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) __builtin_trap();
}

class Scratch {
 public:
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "mlxn-fuzz-index-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) __builtin_trap();
    dir_ = tmpl;
    // Two shards as a checkpoint writer names them, a third one in a subdirectory holding a
    // name the first shard holds too, and a file that is not a safetensors file.
    write_file(dir_ / "model-00001-of-00002.safetensors",
               safetensors_bytes(R"({"a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},)"
                                 R"( "b.bias": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}})",
                                 22));
    write_file(dir_ / "model-00002-of-00002.safetensors",
               safetensors_bytes(R"({"__metadata__": {"format": "pt"},)"
                                 R"( "c.weight": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                                 R"( "d.packed": {"dtype": "F4", "shape": [2, 2], "data_offsets": [4, 6]},)"
                                 R"( "e.empty": {"dtype": "F16", "shape": [0, 3], "data_offsets": [6, 6]}})",
                                 6));
    fs::create_directory(dir_ / "sub");
    write_file(dir_ / "sub" / "extra.safetensors",
               safetensors_bytes(R"({"a.weight": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},)"
                                 R"( "f.weight": {"dtype": "I64", "shape": [1, 1], "data_offsets": [4, 12]}})",
                                 12));
    write_file(dir_ / "notes.txt", "not a safetensors file\n");
    index_ = dir_ / "model.safetensors.index.json";
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  const fs::path& dir() const { return dir_; }
  const fs::path& index() const { return index_; }

 private:
  fs::path dir_, index_;
};

Scratch& scratch() {
  static Scratch s;
  return s;
}

volatile uint8_t sink = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Scratch& sc = scratch();
  write_file(sc.index(), std::string(reinterpret_cast<const char*>(data), size));
  const std::string inside = sc.dir().string() + "/";
  try {
    const auto set = mlxn::io::SafetensorsSet::open(sc.index().string());
    for (const auto& name : set.names()) {
      const auto& info = set.info(name);
      if (set.file_of(name).path().compare(0, inside.size(), inside) != 0) __builtin_trap();
      const auto b = set.bytes(name);
      if (b.size() != info.nbytes()) __builtin_trap();
      if (!b.empty()) sink = sink ^ b.front() ^ b.back();  // ASan checks both ends
      try {
        const mlxn::Tensor v = set.tensor(name);
        if (v.nbytes() != b.size()) __builtin_trap();
      } catch (const mlxn::Error&) {
      }
    }
  } catch (const mlxn::Error&) {
  }
  return 0;
}
