// libFuzzer target: the safetensors header parser on arbitrary bytes. Every input must either
// parse, with every reported byte range inside the input, or raise an mlxn::Error.
#include <cstddef>
#include <cstdint>

#include "mlxn/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = mlxn::io::SafetensorsFile::parse(data, size, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
      const auto b = f.bytes(t);
      if (!b.empty()) sink = sink ^ b.front() ^ b.back();  // ASan checks both ends
      try {
        const mlxn::Tensor v = f.tensor(t);
        if (v.nbytes() != b.size()) __builtin_trap();
      } catch (const mlxn::Error&) {
      }
    }
    for (const auto& [k, v] : f.metadata()) sink = sink ^ uint8_t(k.size() + v.size());
  } catch (const mlxn::Error&) {
  }
  return 0;
}
