// Files written by the reference tools (gguf-py, safetensors; scripts/io_fixtures.py) must
// read back exactly as those tools report them in tests/fixtures/io/expected.json: names,
// types, shapes, offsets, byte contents, metadata values.
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>

#include "mlxn/io/gguf.h"
#include "mlxn/io/safetensors.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

using nlohmann::json;

const std::string kDir = std::string(MLXN_SOURCE_DIR) + "/tests/fixtures/io/";

const json& expected() {
  static const json j = [] {
    std::ifstream f(kDir + "expected.json");
    if (!f) throw std::runtime_error("missing " + kDir + "expected.json (run scripts/io_fixtures.py)");
    return json::parse(f);
  }();
  return j;
}

std::string fnv1a64(std::span<const uint8_t> b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t c : b) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Element i of little-endian data of a plain type named as the tools name it, as JSON.
json element(std::string_view type, std::span<const uint8_t> b, size_t i) {
  const uint8_t* p = b.data();
  if (type == "F32") return double(load<float>(p + 4 * i));
  if (type == "F64") return load<double>(p + 8 * i);
  if (type == "F16") return double(Half::to_float(load<uint16_t>(p + 2 * i)));
  if (type == "BF16") return double(bits_float(uint32_t(load<uint16_t>(p + 2 * i)) << 16));
  if (type == "I8") return load<int8_t>(p + i);
  if (type == "I16") return load<int16_t>(p + 2 * i);
  if (type == "I32") return load<int32_t>(p + 4 * i);
  if (type == "I64") return load<int64_t>(p + 8 * i);
  if (type == "U8") return load<uint8_t>(p + i);
  if (type == "U16") return load<uint16_t>(p + 2 * i);
  if (type == "U32") return load<uint32_t>(p + 4 * i);
  if (type == "U64") return load<uint64_t>(p + 8 * i);
  throw std::runtime_error("no decoder for " + std::string(type));
}

// ---- GGUF ------------------------------------------------------------------------------------

io::GgufType value_type(const std::string& n) {
  static const std::map<std::string, io::GgufType> m = {
      {"UINT8", io::GgufType::u8},    {"INT8", io::GgufType::i8},      {"UINT16", io::GgufType::u16},
      {"INT16", io::GgufType::i16},   {"UINT32", io::GgufType::u32},   {"INT32", io::GgufType::i32},
      {"FLOAT32", io::GgufType::f32}, {"BOOL", io::GgufType::boolean}, {"STRING", io::GgufType::string},
      {"ARRAY", io::GgufType::array}, {"UINT64", io::GgufType::u64},   {"INT64", io::GgufType::i64},
      {"FLOAT64", io::GgufType::f64},
  };
  return m.at(n);
}

// A scalar value as JSON (the way the tools' JSON holds it).
json scalar_json(const io::GgufValue& v) {
  switch (v.type()) {
    case io::GgufType::string:
      return std::string(v.as_string());
    case io::GgufType::boolean:
      return v.as_bool();
    case io::GgufType::f32:
    case io::GgufType::f64:
      return v.as_double();
    case io::GgufType::u8:
    case io::GgufType::u16:
    case io::GgufType::u32:
    case io::GgufType::u64:
      return v.as_uint();
    default:
      return v.as_int();
  }
}

// Leaves of a (possibly nested) array in order, and the nesting of types.
void flatten(const io::GgufValue& v, json& leaves, std::vector<io::GgufType>& types, bool first) {
  if (!v.is_array()) {
    leaves.push_back(scalar_json(v));
    return;
  }
  if (first) types.push_back(v.element_type());
  for (size_t i = 0; i < v.size(); ++i) flatten(v.at(i), leaves, types, first && i == 0);
}

TEST(IoFixtures, GgufMatchesGgufPy) {
  const json& e = expected()["gguf"];
  const auto f = io::GgufFile::open(kDir + e["file"].get<std::string>());
  EXPECT_EQ(f.version(), e["version"].get<uint32_t>());
  EXPECT_EQ(f.alignment(), e["alignment"].get<uint64_t>());
  EXPECT_EQ(f.data_offset(), e["data_offset"].get<uint64_t>());

  const auto& meta = e["metadata"];
  ASSERT_EQ(f.metadata().size(), meta.size());
  for (size_t i = 0; i < meta.size(); ++i) {
    const auto& want = meta[i];
    const auto& [key, v] = f.metadata()[i];
    SCOPED_TRACE(key);
    EXPECT_EQ(key, want["key"].get<std::string>());
    std::vector<io::GgufType> types{v.type()};
    json got;
    if (v.is_array()) {
      got = json::array();
      flatten(v, got, types, true);
    } else {
      got = scalar_json(v);
    }
    ASSERT_EQ(types.size(), want["types"].size());
    for (size_t k = 0; k < types.size(); ++k) EXPECT_EQ(types[k], value_type(want["types"][k].get<std::string>()));
    EXPECT_EQ(got, want["value"]) << got.dump() << " vs " << want["value"].dump();
  }
  // Typed access to a few of them.
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get("test.arr.nested").arrays()[1].to_vector<int>(), (std::vector<int>{3, 4, 5}));
  EXPECT_EQ(f.get("test.arr.nested_strings").arrays()[0].strings()[1], "b");
  EXPECT_EQ(f.get_double("test.f32"), double(0.1f));

  const auto& tensors = e["tensors"];
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& want = tensors[i];
    const auto& t = f.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, want["name"].get<std::string>());
    EXPECT_EQ(t.type_name(), want["type"].get<std::string>());
    EXPECT_EQ(t.ne, want["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.numel, want["n_elements"].get<int64_t>());
    EXPECT_EQ(t.nbytes, want["n_bytes"].get<uint64_t>());
    EXPECT_EQ(f.data_offset() + t.offset, want["file_offset"].get<uint64_t>());
    const auto bytes = f.bytes(t);
    EXPECT_EQ(fnv1a64(bytes), want["fnv1a64"].get<std::string>());
    if (want.contains("values")) {
      for (size_t k = 0; k < want["values"].size(); ++k)
        EXPECT_EQ(element(t.type_name(), bytes, k), want["values"][k]) << "element " << k;
    }
    if (t.dtype()) {
      const Tensor v = f.tensor(t);
      EXPECT_EQ(v.data(), static_cast<const void*>(bytes.data()));
      EXPECT_EQ(v.nbytes(), t.nbytes);
      EXPECT_EQ(v.shape(), Dims(t.ne.rbegin(), t.ne.rend()));
    } else {
      EXPECT_THROW(f.tensor(t), Unsupported);
    }
  }
}

TEST(IoFixtures, GgmlTypeTableMatchesGgufPy) {
  // gguf-py still sizes Q8_1 with two f32 fields (40 bytes); ggml's block_q8_1 holds two
  // halves and 32 quants (36 bytes), and ggml's size is what files are laid out with. Q8_1
  // is an activation format that weight files do not use in practice.
  const std::map<std::string, uint32_t> ggml_differs = {{"Q8_1", 36}};
  for (const auto& [name, v] : expected()["gguf"]["ggml_types"].items()) {
    SCOPED_TRACE(name);
    const auto* t = io::find_ggml_type(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->id, v[0].get<uint32_t>());
    EXPECT_EQ(t->block_elems, v[1].get<uint32_t>());
    const auto d = ggml_differs.find(name);
    EXPECT_EQ(t->block_bytes, d != ggml_differs.end() ? d->second : v[2].get<uint32_t>());
  }
}

// ---- safetensors -----------------------------------------------------------------------------

TEST(IoFixtures, SafetensorsMatchesTheSafetensorsPackage) {
  const json& e = expected()["safetensors"];
  const auto f = io::SafetensorsFile::open(kDir + e["file"].get<std::string>());
  EXPECT_EQ(f.header_bytes(), e["header_bytes"].get<uint64_t>());
  EXPECT_EQ(f.metadata(), (e["metadata"].get<std::map<std::string, std::string>>()));
  const auto& tensors = e["tensors"];
  ASSERT_EQ(f.size(), tensors.size());
  for (const auto& want : tensors) {
    const std::string name = want["name"].get<std::string>();
    SCOPED_TRACE(name);
    const auto& t = f.info(name);
    EXPECT_EQ(t.dtype.code, want["dtype"].get<std::string>());
    EXPECT_EQ(t.shape, want["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.begin, want["begin"].get<uint64_t>());
    EXPECT_EQ(t.end, want["end"].get<uint64_t>());
    const auto bytes = f.bytes(t);
    EXPECT_EQ(fnv1a64(bytes), want["fnv1a64"].get<std::string>());
    if (want.contains("values")) {
      for (size_t k = 0; k < want["values"].size(); ++k)
        EXPECT_EQ(element(t.dtype.code, bytes, k), want["values"][k]) << "element " << k;
    }
    if (t.dtype.dtype) {
      const Tensor v = f.tensor(t);
      EXPECT_EQ(v.shape(), t.dims());
      EXPECT_EQ(v.nbytes(), bytes.size());
    } else {
      EXPECT_THROW(f.tensor(t), Unsupported);
    }
  }
}

}  // namespace
}  // namespace mlxn::test
