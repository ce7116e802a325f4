// GGUF loader: metadata of every value type (nested arrays included), tensor infos and views
// for every ggml type, alignment, and hand-broken files that must raise typed errors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mlxn/io/gguf.h"
#include "support/io_builders.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

using io::GgufFile;
using io::GgufType;

Bytes pay_str(std::string_view s) {
  Bytes b;
  put_gstr(b, s);
  return b;
}

// Array payload: element type, count, elements (already encoded).
Bytes pay_array(uint32_t elem, uint64_t count, const Bytes& elems) {
  Bytes b;
  put<uint32_t>(b, elem);
  put<uint64_t>(b, count);
  b.insert(b.end(), elems.begin(), elems.end());
  return b;
}

template <class T>
Bytes pay_nums(std::initializer_list<T> v) {
  Bytes b;
  for (T x : v) put<T>(b, x);
  return b;
}

// GGML ids used below.
enum : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  TQ2_0 = 35,
  MXFP4 = 39,
};

GgufBuilder every_value_file() {
  GgufBuilder g;
  g.str("general.architecture", "llama");
  g.scalar<uint8_t>("v.u8", kGU8, 200);
  g.scalar<int8_t>("v.i8", kGI8, -100);
  g.scalar<uint16_t>("v.u16", kGU16, 60000);
  g.scalar<int16_t>("v.i16", kGI16, -30000);
  g.scalar<uint32_t>("v.u32", kGU32, 4000000000u);
  g.scalar<int32_t>("v.i32", kGI32, -2000000000);
  g.scalar<float>("v.f32", kGF32, 0.15625f);
  g.scalar<uint8_t>("v.bool", kGBool, 1);
  g.str("v.string", "h\xc3\xa9llo");
  g.scalar<uint64_t>("v.u64", kGU64, 18000000000000000000ull);
  g.scalar<int64_t>("v.i64", kGI64, -9000000000000000000ll);
  g.scalar<double>("v.f64", kGF64, -1.0e300);
  g.kv("a.i32", kGArray, pay_array(kGI32, 4, pay_nums<int32_t>({1, -2, 3, -4})));
  g.kv("a.f32", kGArray, pay_array(kGF32, 3, pay_nums<float>({0.5f, -1.25f, 2.0f})));
  g.kv("a.u8", kGArray, pay_array(kGU8, 3, pay_nums<uint8_t>({0, 1, 255})));
  g.kv("a.bool", kGArray, pay_array(kGBool, 3, pay_nums<uint8_t>({1, 0, 1})));
  g.kv("a.u64", kGArray, pay_array(kGU64, 2, pay_nums<uint64_t>({1, 18446744073709551615ull})));
  g.kv("a.f64", kGArray, pay_array(kGF64, 2, pay_nums<double>({1.5, -2.5})));
  g.kv("a.empty", kGArray, pay_array(kGI32, 0, {}));
  {
    Bytes e;
    for (const char* s : {"<s>", "", "tok\xe2\x96\x81"}) put_gstr(e, s);
    g.kv("a.string", kGArray, pay_array(kGString, 3, e));
  }
  {
    // [[1, 2], [3], []] as arrays of u16, then an array of arrays of strings.
    Bytes e = pay_array(kGU16, 2, pay_nums<uint16_t>({1, 2}));
    Bytes e2 = pay_array(kGU16, 1, pay_nums<uint16_t>({3}));
    Bytes e3 = pay_array(kGU16, 0, {});
    e.insert(e.end(), e2.begin(), e2.end());
    e.insert(e.end(), e3.begin(), e3.end());
    g.kv("a.nested", kGArray, pay_array(kGArray, 3, e));
    Bytes s;
    put_gstr(s, "x");
    Bytes inner = pay_array(kGString, 1, s);
    Bytes outer = pay_array(kGArray, 1, inner);  // [[["x"]]]
    g.kv("a.deep", kGArray, pay_array(kGArray, 1, outer));
  }
  return g;
}

// Tensors of several ggml types; the data bytes are arbitrary (the loader does not decode).
void add_tensors(GgufBuilder& g) {
  g.tensor("f32", {3, 2}, F32, iota_bytes(24, 1));
  g.tensor("f16", {4}, F16, iota_bytes(8, 2));
  g.tensor("bf16", {2, 2}, BF16, iota_bytes(8, 3));
  g.tensor("i8", {5}, I8, iota_bytes(5, 4));
  g.tensor("i32", {2}, I32, iota_bytes(8, 5));
  g.tensor("i64", {1, 1, 2}, I64, iota_bytes(16, 6));
  g.tensor("q4_0", {64, 3}, Q4_0, iota_bytes(2 * 3 * 18, 7));
  g.tensor("q8_0", {32, 2}, Q8_0, iota_bytes(2 * 34, 8));
  g.tensor("q4_k", {256, 2}, Q4_K, iota_bytes(2 * 144, 9));
  g.tensor("q6_k", {512}, Q6_K, iota_bytes(2 * 210, 10));
  g.tensor("q8_1", {32}, Q8_1, iota_bytes(36, 11));
  g.tensor("iq4_nl", {32}, IQ4_NL, iota_bytes(18, 12));
  g.tensor("f64", {2}, F64, iota_bytes(16, 13));
  g.tensor("i16", {2}, I16, iota_bytes(4, 14));
  g.tensor("tq2_0", {256}, TQ2_0, iota_bytes(66, 15));
  g.tensor("mxfp4", {32, 2}, MXFP4, iota_bytes(34, 16));
  g.tensor("empty", {0, 4}, F32, {});
}

Bytes valid_file() {
  GgufBuilder g = every_value_file();
  add_tensors(g);
  return g.bytes();
}

GgufFile parse(const Bytes& b) { return GgufFile::parse(b.data(), b.size(), "t.gguf"); }

TEST(IoGguf, ReadsEveryValueType) {
  const Bytes file = valid_file();
  const auto f = parse(file);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get("v.u8").type(), GgufType::u8);
  EXPECT_EQ(f.get_uint("v.u8"), 200u);
  EXPECT_EQ(f.get_int("v.i8"), -100);
  EXPECT_EQ(f.get_uint("v.u16"), 60000u);
  EXPECT_EQ(f.get_int("v.i16"), -30000);
  EXPECT_EQ(f.get_uint("v.u32"), 4000000000u);
  EXPECT_EQ(f.get_int("v.u32"), 4000000000);
  EXPECT_EQ(f.get_int("v.i32"), -2000000000);
  EXPECT_EQ(f.get_double("v.f32"), 0.15625);
  EXPECT_EQ(f.get("v.f32").type(), GgufType::f32);
  EXPECT_TRUE(f.get_bool("v.bool"));
  EXPECT_EQ(f.get_string("v.string"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_uint("v.u64"), 18000000000000000000ull);
  EXPECT_EQ(f.get_int("v.i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_double("v.f64"), -1.0e300);
  EXPECT_EQ(f.get_double("v.i32"), -2e9);  // integers convert to double

  const auto& ai = f.get("a.i32");
  EXPECT_TRUE(ai.is_array());
  EXPECT_EQ(ai.element_type(), GgufType::i32);
  EXPECT_EQ(ai.to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 3, -4}));
  EXPECT_EQ(ai.to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3, -4}));
  EXPECT_EQ(ai.to_vector<double>(), (std::vector<double>{1, -2, 3, -4}));
  EXPECT_EQ(ai.at(3).as_int(), -4);
  EXPECT_EQ(ai.raw().size(), 16u);
  MLXN_EXPECT_RAISES(FormatError, "gguf", ai.to_vector<uint32_t>());  // negative values
  MLXN_EXPECT_RAISES(FormatError, "gguf", (void)f.get("a.u8").to_vector<int8_t>());
  EXPECT_EQ(f.get("a.f32").to_vector<float>(), (std::vector<float>{0.5f, -1.25f, 2.0f}));
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.get("a.f32").to_vector<int>());
  EXPECT_EQ(f.get("a.u8").to_vector<int>(), (std::vector<int>{0, 1, 255}));
  EXPECT_EQ(f.get("a.bool").to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(f.get("a.bool").at(0).as_bool());
  EXPECT_EQ(f.get("a.u64").to_vector<uint64_t>(), (std::vector<uint64_t>{1, 18446744073709551615ull}));
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.get("a.u64").to_vector<int64_t>());
  EXPECT_EQ(f.get("a.f64").to_vector<double>(), (std::vector<double>{1.5, -2.5}));
  EXPECT_EQ(f.get("a.empty").size(), 0u);
  EXPECT_TRUE(f.get("a.empty").to_vector<int>().empty());

  const auto strs = f.get("a.string").strings();
  ASSERT_EQ(strs.size(), 3u);
  EXPECT_EQ(strs[0], "<s>");
  EXPECT_EQ(strs[1], "");
  EXPECT_EQ(strs[2], "tok\xe2\x96\x81");
  EXPECT_EQ(f.get("a.string").at(2).as_string(), "tok\xe2\x96\x81");
  // Strings are views into the file's bytes.
  EXPECT_GE(reinterpret_cast<const uint8_t*>(strs[0].data()), file.data());
  EXPECT_LT(reinterpret_cast<const uint8_t*>(strs[0].data()), file.data() + file.size());

  const auto& nested = f.get("a.nested");
  EXPECT_EQ(nested.element_type(), GgufType::array);
  const auto inner = nested.arrays();
  ASSERT_EQ(inner.size(), 3u);
  EXPECT_EQ(inner[0].to_vector<int>(), (std::vector<int>{1, 2}));
  EXPECT_EQ(inner[1].to_vector<int>(), (std::vector<int>{3}));
  EXPECT_EQ(inner[2].size(), 0u);
  EXPECT_EQ(nested.at(1).at(0).as_uint(), 3u);
  EXPECT_EQ(f.get("a.deep").arrays()[0].arrays()[0].strings()[0], "x");
  EXPECT_EQ(nested.str(), "[array x 3: [u16 x 2: 1, 2], [u16 x 1: 3], [u16 x 0]]");

  // Order of metadata is the file's.
  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.metadata().back().first, "a.deep");
}

TEST(IoGguf, WrongTypeAccessRaisesNamingTheKey) {
  const Bytes file = valid_file();
  const auto f = parse(file);
  const auto names_key = [](const char* key, auto&& fn) {
    try {
      fn();
    } catch (const FormatError& e) {
      return std::string(e.what()).find(key) != std::string::npos;
    }
    return false;
  };
  EXPECT_TRUE(names_key("v.u32", [&] { f.get_string("v.u32"); }));
  EXPECT_TRUE(names_key("v.string", [&] { f.get_int("v.string"); }));
  EXPECT_TRUE(names_key("v.i8", [&] { f.get_uint("v.i8"); }));   // negative
  EXPECT_TRUE(names_key("v.u64", [&] { f.get_int("v.u64"); }));  // > INT64_MAX
  EXPECT_TRUE(names_key("v.f32", [&] { f.get_int("v.f32"); }));
  EXPECT_TRUE(names_key("v.u8", [&] { f.get_bool("v.u8"); }));
  EXPECT_TRUE(names_key("missing.key", [&] { f.get_int("missing.key"); }));
  EXPECT_EQ(f.get_int("missing.key", 7), 7);
  EXPECT_EQ(f.get_double("missing.key", 0.5), 0.5);
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.get_int("v.string", 7));
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.get("v.u8").size());
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.get("a.i32").strings());
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.get("a.string").raw());
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf", f.get("a.i32").at(4));
}

TEST(IoGguf, TensorInfosViewsAndUnsupportedTypes) {
  const Bytes file = valid_file();
  const auto f = parse(file);
  ASSERT_EQ(f.tensors().size(), 17u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  struct Want {
    const char* name;
    const char* type;
    Dims shape;
    uint64_t nbytes;
    std::optional<DType> dtype;
  };
  const std::vector<Want> wants = {
      {"f32", "F32", {2, 3}, 24, DType::f32},       {"f16", "F16", {4}, 8, DType::f16},
      {"bf16", "BF16", {2, 2}, 8, DType::bf16},     {"i8", "I8", {5}, 5, DType::i8},
      {"i32", "I32", {2}, 8, DType::i32},           {"i64", "I64", {2, 1, 1}, 16, DType::i64},  // ne {1, 1, 2}
      {"q4_0", "Q4_0", {3, 64}, 108, DType::q4_0},  {"q8_0", "Q8_0", {2, 32}, 68, DType::q8_0},
      {"q4_k", "Q4_K", {2, 256}, 288, DType::q4_k}, {"q6_k", "Q6_K", {512}, 420, DType::q6_k},
      {"q8_1", "Q8_1", {32}, 36, std::nullopt},     {"iq4_nl", "IQ4_NL", {32}, 18, std::nullopt},
      {"f64", "F64", {2}, 16, std::nullopt},        {"i16", "I16", {2}, 4, std::nullopt},
      {"tq2_0", "TQ2_0", {256}, 66, std::nullopt},  {"mxfp4", "MXFP4", {2, 32}, 34, std::nullopt},
      {"empty", "F32", {4, 0}, 0, DType::f32},
  };
  uint8_t start = 1;
  for (const auto& w : wants) {
    SCOPED_TRACE(w.name);
    const auto& t = f.tensor_info(w.name);
    EXPECT_EQ(t.type_name(), w.type);
    EXPECT_EQ(t.shape, w.shape);
    EXPECT_EQ(t.nbytes, w.nbytes);
    EXPECT_EQ(t.dtype(), w.dtype);
    EXPECT_EQ(t.offset % 32, 0u);
    const auto b = f.bytes(w.name);
    ASSERT_EQ(b.size(), w.nbytes);
    const Bytes want = iota_bytes(w.nbytes, start++);
    EXPECT_TRUE(std::equal(b.begin(), b.end(), want.begin(), want.end()));
    if (w.dtype) {
      const Tensor v = f.tensor(w.name);
      EXPECT_EQ(v.dtype(), *w.dtype);
      EXPECT_EQ(v.shape(), w.shape);
      EXPECT_EQ(v.nbytes(), w.nbytes);
      if (w.nbytes) {  // zero copy
        EXPECT_EQ(v.data(), static_cast<const void*>(b.data()));
        EXPECT_EQ(static_cast<const uint8_t*>(v.data()), file.data() + f.data_offset() + t.offset);
      }
    } else {
      try {
        f.tensor(w.name);
        ADD_FAILURE() << "no error for " << w.type;
      } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find(w.type), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).rfind("[gguf]", 0), 0u);
      }
    }
  }
  EXPECT_EQ(f.tensor_info("i64").ne, (std::vector<int64_t>{1, 1, 2}));
  MLXN_EXPECT_RAISES(FormatError, "gguf", f.tensor("absent"));
}

TEST(IoGguf, TypeTableNamesEveryGgmlType) {
  int known = 0;
  for (uint32_t id = 0; id < 64; ++id) {
    const auto* t = io::find_ggml_type(id);
    if (!t) {
      EXPECT_EQ(io::ggml_type_name(id), "type " + std::to_string(id));
      continue;
    }
    ++known;
    EXPECT_EQ(t->id, id);
    EXPECT_EQ(io::find_ggml_type(t->name), t);
    if (t->dtype) {  // mlxn's own block layout agrees with ggml's
      EXPECT_EQ(traits(*t->dtype).block_elems, t->block_elems) << t->name;
      EXPECT_EQ(traits(*t->dtype).block_bytes, t->block_bytes) << t->name;
    }
  }
  EXPECT_EQ(known, 42);
  for (const char* n : {"Q2_K", "Q3_K", "Q5_0", "Q5_1", "Q4_1", "Q5_K", "IQ2_XXS", "IQ1_M", "TQ1_0", "NVFP4"})
    EXPECT_NE(io::find_ggml_type(n), nullptr) << n;
}

TEST(IoGguf, AlignmentVersionTwoAndEmptyFiles) {
  GgufBuilder g;
  g.alignment = 256;
  g.scalar<uint32_t>("general.alignment", kGU32, 256);
  g.tensor("a", {32}, Q8_0, iota_bytes(34));
  g.tensor("b", {4}, F32, iota_bytes(16, 9));
  const auto f = GgufFile::parse(g.bytes(), "owned.gguf");  // owns the temporary's bytes
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  EXPECT_EQ(f.tensor_info("b").offset, 256u);
  EXPECT_EQ(f.bytes("b")[0], iota_bytes(16, 9)[0]);

  GgufBuilder v2;
  v2.version = 2;
  v2.str("general.architecture", "qwen3");
  v2.tensor("x", {2}, F16, iota_bytes(4));
  EXPECT_EQ(parse(v2.bytes()).version(), 2u);

  // Header only: no metadata, no tensors, no padding.
  Bytes bare;
  put_bytes(bare, "GGUF", 4);
  put<uint32_t>(bare, 3);
  put<uint64_t>(bare, 0);
  put<uint64_t>(bare, 0);
  const auto e = parse(bare);
  EXPECT_TRUE(e.tensors().empty());
  EXPECT_TRUE(e.metadata().empty());
  MLXN_EXPECT_RAISES(FormatError, "gguf", e.architecture());
}

TEST(IoGguf, OpensMappedFiles) {
  TempDir dir;
  const Bytes file = valid_file();
  auto f = GgufFile::open(dir.write("m.gguf", file));
  EXPECT_EQ(f.get_string("v.string"), "h\xc3\xa9llo");
  const auto b = f.bytes("q4_k");
  const auto mem = parse(file);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), mem.bytes("q4_k").begin(), mem.bytes("q4_k").end()));
  // Views and strings stay valid in a moved-to object.
  GgufFile moved = std::move(f);
  EXPECT_EQ(moved.get("a.string").strings()[0], "<s>");
  EXPECT_EQ(moved.tensor("q8_0").shape(), (Dims{2, 32}));
}

// ---- malformed files -----------------------------------------------------------------------

::testing::AssertionResult raises_typed(const Bytes& b) {
  try {
    parse(b);
  } catch (const FormatError& e) {
    if (std::string(e.what()).rfind("[gguf]", 0) != 0) return ::testing::AssertionFailure() << e.what();
    return ::testing::AssertionSuccess() << e.what();
  } catch (const Unsupported& e) {
    return ::testing::AssertionSuccess() << e.what();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "untyped error: " << e.what();
  }
  return ::testing::AssertionFailure() << "parsed";
}

Bytes header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  Bytes b;
  put_bytes(b, "GGUF", 4);
  put<uint32_t>(b, version);
  put<uint64_t>(b, n_tensors);
  put<uint64_t>(b, n_kv);
  return b;
}

// One tensor info appended after a header with no metadata.
Bytes with_tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data) {
  Bytes b = header(3, 1, 0);
  put_gstr(b, name);
  put<uint32_t>(b, uint32_t(ne.size()));
  for (auto d : ne) put<uint64_t>(b, d);
  put<uint32_t>(b, type);
  put<uint64_t>(b, offset);
  while (b.size() % 32) b.push_back(0);
  b.resize(b.size() + data, 0x5a);
  return b;
}

TEST(IoGguf, RefusesMalformedFiles) {
  struct Case {
    const char* what;
    Bytes file;
    bool unsupported = false;
  };
  std::vector<Case> cases;
  cases.push_back({"empty", {}});
  cases.push_back({"magic only", Bytes{'G', 'G', 'U', 'F'}});
  {
    Bytes b = header(3, 0, 0);
    b[0] = 'g';
    cases.push_back({"wrong magic", b});
  }
  cases.push_back({"version 1", header(1, 0, 0), true});
  cases.push_back({"version 0", header(0, 0, 0)});
  cases.push_back({"version 4", header(4, 0, 0)});
  cases.push_back({"big-endian v3", header(0x03000000u, 0, 0), true});
  cases.push_back({"huge tensor count", header(3, ~uint64_t(0), 0)});
  cases.push_back({"huge kv count", header(3, 0, uint64_t(1) << 60)});
  cases.push_back({"kv count one too many", header(3, 0, 1)});
  {
    Bytes b = header(3, 0, 1);
    put<uint64_t>(b, ~uint64_t(0));  // key length
    b.resize(b.size() + 16);
    cases.push_back({"key longer than the file", b});
  }
  auto kv_file = [&](const char* what, uint32_t type, const Bytes& payload) {
    Bytes b = header(3, 0, 1);
    put_gstr(b, "k");
    put<uint32_t>(b, type);
    b.insert(b.end(), payload.begin(), payload.end());
    cases.push_back({what, b});
  };
  kv_file("unknown value type", 13, Bytes(8, 0));
  kv_file("value type 2^31", 0x80000000u, Bytes(8, 0));
  kv_file("truncated u64", kGU64, Bytes(4, 0));
  {
    Bytes p;
    put<uint64_t>(p, 1000);
    put_bytes(p, "short", 5);
    kv_file("string longer than the file", kGString, p);
    Bytes q;
    put<uint64_t>(q, ~uint64_t(0) - 3);
    kv_file("string length near 2^64", kGString, q);
  }
  kv_file("array of unknown type", kGArray, pay_array(99, 1, Bytes(8, 0)));
  kv_file("array count beyond the file", kGArray, pay_array(kGI32, 1000, pay_nums<int32_t>({1, 2})));
  kv_file("array count 2^62 of u64", kGArray, pay_array(kGU64, uint64_t(1) << 62, Bytes(16, 0)));
  kv_file("string array count huge", kGArray, pay_array(kGString, uint64_t(1) << 61, Bytes(16, 0)));
  kv_file("nested array count huge", kGArray, pay_array(kGArray, uint64_t(1) << 59, Bytes(24, 0)));
  {
    Bytes e;
    put_gstr(e, "ok");
    put<uint64_t>(e, 500);  // second string runs off the end
    kv_file("second string truncated", kGArray, pay_array(kGString, 2, e));
    // Arrays nested 100 deep.
    Bytes deep = pay_array(kGU8, 0, {});
    for (int i = 0; i < 100; ++i) deep = pay_array(kGArray, 1, deep);
    kv_file("arrays nested 100 deep", kGArray, deep);
    // Deep nesting where every level claims the maximum count the bytes allow.
    Bytes wide;
    for (int i = 0; i < 6; ++i) {
      put<uint32_t>(wide, kGArray);
      put<uint64_t>(wide, 1);
    }
    kv_file("nested arrays truncated", kGArray, wide);
  }
  {
    Bytes b = header(3, 0, 2);
    put_gstr(b, "k");
    put<uint32_t>(b, kGU8);
    b.push_back(1);
    put_gstr(b, "k");
    put<uint32_t>(b, kGU8);
    b.push_back(2);
    cases.push_back({"duplicate key", b});
  }
  auto align_file = [&](const char* what, uint32_t type, const Bytes& payload) {
    Bytes b = header(3, 0, 1);
    put_gstr(b, "general.alignment");
    put<uint32_t>(b, type);
    b.insert(b.end(), payload.begin(), payload.end());
    cases.push_back({what, b});
  };
  align_file("alignment 0", kGU32, pay_nums<uint32_t>({0}));
  align_file("alignment 48", kGU32, pay_nums<uint32_t>({48}));
  align_file("alignment as u64", kGU64, pay_nums<uint64_t>({32}));
  align_file("alignment as string", kGString, pay_str("32"));

  cases.push_back({"5 dimensions", with_tensor("t", {1, 1, 1, 1, 4}, F32, 0, 16)});
  cases.push_back({"n_dims 2^32-1", with_tensor("t", {}, F32, 0, 0)});
  cases.back().file[24 + 8 + 1] = 0xff;  // patch n_dims after the 1-byte name
  cases.back().file[24 + 8 + 2] = 0xff;
  cases.back().file[24 + 8 + 3] = 0xff;
  cases.back().file[24 + 8 + 4] = 0xff;
  cases.push_back({"negative extent", with_tensor("t", {~uint64_t(0)}, F32, 0, 16)});
  cases.push_back({"numel overflows", with_tensor("t", {uint64_t(1) << 32, uint64_t(1) << 32}, F32, 0, 16)});
  // Empty, but the other extents multiply past int64 (their strides would overflow).
  cases.push_back({"empty with huge extents", with_tensor("t", {uint64_t(1) << 40, uint64_t(1) << 40, 0}, F32, 0, 0)});
  cases.push_back({"bytes overflow", with_tensor("t", {uint64_t(1) << 62}, F32, 0, 16)});
  cases.push_back({"unknown ggml type", with_tensor("t", {4}, 99, 0, 16)});
  cases.push_back({"retired ggml type", with_tensor("t", {32}, 31, 0, 64), true});
  cases.push_back({"row not whole blocks", with_tensor("t", {33}, Q4_0, 0, 64)});
  cases.push_back({"K-quant row not whole blocks", with_tensor("t", {128}, Q4_K, 0, 144)});
  cases.push_back({"offset not aligned", with_tensor("t", {4}, F32, 4, 32)});
  cases.push_back({"data past the end", with_tensor("t", {8}, F32, 0, 16)});
  cases.push_back({"offset past the end", with_tensor("t", {4}, F32, 64, 16)});
  cases.push_back({"offset near 2^64", with_tensor("t", {4}, F32, ~uint64_t(31), 16)});
  {
    const Bytes full = with_tensor("t", {4}, F32, 0, 0);
    cases.push_back({"tensor info truncated", Bytes(full.begin(), full.begin() + 40)});
  }
  {
    GgufBuilder g;
    g.tensor("a", {8}, F32, iota_bytes(32));
    g.tensor("b", {8}, F32, iota_bytes(32), 0);
    cases.push_back({"overlapping tensors", g.bytes()});
    GgufBuilder h;
    h.tensor("a", {16}, F32, iota_bytes(64));
    h.tensor("b", {4}, F32, iota_bytes(16), 32);
    cases.push_back({"tensor inside another", h.bytes()});
    GgufBuilder d;
    d.tensor("a", {4}, F32, iota_bytes(16));
    d.tensor("a", {4}, F32, iota_bytes(16));
    cases.push_back({"duplicate tensor names", d.bytes()});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_TRUE(raises_typed(c.file));
    if (c.unsupported) {
      EXPECT_THROW(parse(c.file), Unsupported);
    }
  }
}

TEST(IoGguf, EveryTruncationRaises) {
  const Bytes file = valid_file();
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes cut(file.begin(), file.begin() + ptrdiff_t(n));
    ASSERT_TRUE(raises_typed(cut)) << "prefix of " << n << " bytes";
  }
}

TEST(IoGguf, CorruptedBytesNeverEscapeTheBuffer) {
  const Bytes file = valid_file();
  std::mt19937_64 rng(test_seed());
  const size_t head = GgufBuilder(every_value_file()).header_end() + 600;  // metadata + tensor infos
  for (int it = 0; it < 3000; ++it) {
    Bytes f = file;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % std::min(head, f.size());
      f[at] = rng() % 3 ? uint8_t(rng()) : uint8_t(0xff);
    }
    try {
      const auto g = parse(f);
      for (const auto& t : g.tensors()) {
        const auto b = g.bytes(t);
        if (b.empty()) continue;
        ASSERT_GE(b.data(), f.data());
        ASSERT_LE(b.data() + b.size(), f.data() + f.size());
      }
      for (const auto& [k, v] : g.metadata()) (void)v.str();
    } catch (const Error&) {
    }
  }
}

class IoGgufUpload : public BackendTest {};

TEST_P(IoGgufUpload, CopiesBlocksOnce) {
  const Bytes file = valid_file();
  const auto f = parse(file);
  for (const char* name : {"q4_k", "q8_0", "f16", "i64"}) {
    const Array a = f.upload(session(), name);
    EXPECT_EQ(a->device(), device());
    EXPECT_EQ(a->shape(), f.tensor_info(name).shape);
    Bytes back(a->nbytes());
    session().download(back.data(), a, back.size());
    const auto want = f.bytes(name);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), want.begin(), want.end())) << name;
  }
}

MLXN_BACKEND_TESTS(IoGgufUpload);

}  // namespace
}  // namespace mlxn::test
