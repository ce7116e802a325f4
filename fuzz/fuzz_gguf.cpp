// libFuzzer target: the GGUF parser on arbitrary bytes. Every input must either parse, with
// every value and tensor byte range inside the input, or raise an mlxn::Error.
#include <cstddef>
#include <cstdint>

#include "mlxn/io/gguf.h"

namespace {
volatile uint64_t sink = 0;

void walk(const mlxn::io::GgufValue& v) {
  using mlxn::io::GgufType;
  if (!v.is_array()) {
    if (v.is_string()) {
      const auto s = v.as_string();
      if (!s.empty()) sink = sink + uint8_t(s.front()) + uint8_t(s.back());
    }
    return;
  }
  const GgufType e = v.element_type();
  if (e == GgufType::array) {
    for (const auto& a : v.arrays()) walk(a);
  } else if (e == GgufType::string) {
    for (const auto s : v.strings())
      if (!s.empty()) sink = sink + uint8_t(s.front()) + uint8_t(s.back());
  } else {
    const auto raw = v.raw();
    if (!raw.empty()) sink = sink + raw.front() + raw.back();
    try {
      sink = sink + v.to_vector<int32_t>().size();
    } catch (const mlxn::Error&) {
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = mlxn::io::GgufFile::parse(data, size, "fuzz.gguf");
    for (const auto& [key, v] : f.metadata()) {
      walk(v);
      (void)v.str();
    }
    for (const auto& t : f.tensors()) {
      const auto b = f.bytes(t);
      if (!b.empty()) sink = sink + b.front() + b.back();
      try {
        const mlxn::Tensor v = f.tensor(t);
        if (v.nbytes() != b.size()) __builtin_trap();
      } catch (const mlxn::Error&) {
      }
    }
    try {
      sink = sink + f.architecture().size() + uint64_t(f.get_int("llama.block_count", 0));
    } catch (const mlxn::Error&) {
    }
  } catch (const mlxn::Error&) {
  }
  return 0;
}
