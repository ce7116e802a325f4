// libFuzzer target: config.json, the MLX quantization block, and the checkpoint resolution
// that depends on it. Every input must either be read or raise an mlxn::Error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mlxn/io/checkpoint.h"
#include "mlxn/io/config.h"

namespace {

// A small MLX-style checkpoint: "q" quantized at 4 bits / group 64, "d" dense.
const std::vector<uint8_t>& tensors_file() {
  static const std::vector<uint8_t> bytes = [] {
    const std::string header = R"({"q.weight": {"dtype": "U32", "shape": [2, 8], "data_offsets": [0, 64]},)"
                               R"( "q.scales": {"dtype": "BF16", "shape": [2, 1], "data_offsets": [64, 68]},)"
                               R"( "q.biases": {"dtype": "BF16", "shape": [2, 1], "data_offsets": [68, 72]},)"
                               R"( "d.weight": {"dtype": "F16", "shape": [2, 4], "data_offsets": [72, 88]}})";
    std::vector<uint8_t> b(8 + header.size() + 88, 0);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
    for (size_t i = 0; i < header.size(); ++i) b[8 + i] = uint8_t(header[i]);
    return b;
  }();
  return bytes;
}

volatile uint64_t sink = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mlxn::io;
  try {
    const Config c = Config::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    for (const auto& k : c.keys()) {
      try {
        sink = sink + uint64_t(c.get_int(k));
      } catch (const mlxn::Error&) {
      }
      try {
        sink = sink + c.get_string(k).size();
      } catch (const mlxn::Error&) {
      }
      try {
        sink = sink + uint64_t(c.get_double(k) != 0);
      } catch (const mlxn::Error&) {
      }
      try {
        sink = sink + c.get_ints(k).size();
      } catch (const mlxn::Error&) {
      }
      try {
        sink = sink + c.get_strings(k).size();
      } catch (const mlxn::Error&) {
      }
      try {
        sink = sink + c.section(k).keys().size();
      } catch (const mlxn::Error&) {
      }
    }
    std::vector<SafetensorsFile> files;
    files.push_back(SafetensorsFile::parse(tensors_file().data(), tensors_file().size(), "fixed.safetensors"));
    const Checkpoint ck(SafetensorsSet::from_files(std::move(files)), c);
    if (const auto& q = ck.quantization()) {
      for (const auto& [path, p] : q->overrides()) sink = sink + (p ? uint64_t(p->bits) : 0) + path.size();
      sink = sink + uint64_t(q->quant_for("q") ? q->quant_for("q")->group_size : 0);
    }
    for (const char* m : {"q", "d", "x"}) {
      try {
        const auto l = ck.linear(m);
        sink = sink + uint64_t(l.in_features + l.bits());
      } catch (const mlxn::Error&) {
      }
    }
  } catch (const mlxn::Error&) {
  }
  return 0;
}
