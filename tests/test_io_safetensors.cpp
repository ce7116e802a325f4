// safetensors loader: every dtype, zero-copy views, shards, and a file broken in every way
// the header can be broken, each raising a typed error.
#include <algorithm>
#include <cstring>
#include <limits>

#include "mlxn/io/safetensors.h"
#include "support/io_builders.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

using io::SafetensorsFile;
using io::SafetensorsSet;

struct DTypeCase {
  const char* code;
  uint32_t bits;
  std::optional<DType> dtype;
};

const std::vector<DTypeCase>& all_dtypes() {
  static const std::vector<DTypeCase> v = {
      {"F64", 64, std::nullopt},
      {"F32", 32, DType::f32},
      {"F16", 16, DType::f16},
      {"BF16", 16, DType::bf16},
      {"I64", 64, DType::i64},
      {"I32", 32, DType::i32},
      {"I16", 16, std::nullopt},
      {"I8", 8, DType::i8},
      {"U8", 8, DType::u8},
      {"U16", 16, std::nullopt},
      {"U32", 32, DType::u32},
      {"U64", 64, std::nullopt},
      {"BOOL", 8, std::nullopt},
      {"F8_E4M3", 8, std::nullopt},
      {"F8_E5M2", 8, std::nullopt},
      {"F8_E8M0", 8, std::nullopt},
      {"F8_E4M3FNUZ", 8, std::nullopt},
      {"F8_E5M2FNUZ", 8, std::nullopt},
      {"C64", 64, std::nullopt},
      {"F6_E2M3", 6, std::nullopt},
      {"F6_E3M2", 6, std::nullopt},
      {"F4", 4, std::nullopt},
  };
  return v;
}

// A valid file with one tensor of every dtype, shape [3, 4] (12 elements: whole bytes even
// for F4 and F6), each filled with distinct bytes.
SafetensorsBuilder every_dtype_file() {
  SafetensorsBuilder b;
  uint8_t start = 1;
  for (const auto& c : all_dtypes()) {
    b.add(std::string("t_") + c.code, c.code, "[3, 4]", iota_bytes(12 * c.bits / 8, start));
    start = uint8_t(start + 17);
  }
  b.metadata(R"({"format": "pt", "note": "every dtype"})");
  return b;
}

bool raises_format(const Bytes& file) {
  try {
    SafetensorsFile::parse(file.data(), file.size(), "bad.safetensors");
  } catch (const FormatError& e) {
    return std::string(e.what()).rfind("[safetensors]", 0) == 0;
  }
  return false;
}

TEST(IoSafetensors, ReadsEveryDtypeAsZeroCopyViews) {
  const auto b = every_dtype_file();
  const Bytes file = b.bytes();
  const auto f = SafetensorsFile::parse(file.data(), file.size());
  ASSERT_EQ(f.size(), all_dtypes().size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "every dtype");
  EXPECT_EQ(f.data_offset(), 8 + b.header().size());
  uint8_t start = 1;
  for (const auto& c : all_dtypes()) {
    const std::string name = std::string("t_") + c.code;
    SCOPED_TRACE(name);
    const auto& info = f.info(name);
    EXPECT_EQ(info.dtype.code, c.code);
    EXPECT_EQ(info.dtype.bits, c.bits);
    EXPECT_EQ(info.dtype.dtype, c.dtype);
    EXPECT_EQ(info.shape, (std::vector<int64_t>{3, 4}));
    EXPECT_EQ(info.numel, 12);
    const Bytes want = iota_bytes(12 * c.bits / 8, start);
    start = uint8_t(start + 17);
    const auto got = f.bytes(name);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin()));
    // The view is the file's own bytes.
    EXPECT_EQ(got.data(), file.data() + f.data_offset() + info.begin);
    if (c.dtype) {
      const Tensor t = f.tensor(name);
      EXPECT_EQ(t.dtype(), *c.dtype);
      EXPECT_EQ(t.shape(), (Dims{3, 4}));
      EXPECT_TRUE(t.device().is_cpu());
      EXPECT_EQ(t.data(), static_cast<const void*>(got.data()));
      EXPECT_EQ(t.nbytes(), got.size());
    } else {
      MLXN_EXPECT_RAISES(Unsupported, "safetensors", f.tensor(name));
      try {
        f.tensor(name);
      } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find(c.code), std::string::npos) << e.what();
      }
    }
  }
}

TEST(IoSafetensors, ScalarsEmptyTensorsAndValues) {
  SafetensorsBuilder b;
  float pi = 3.25f;
  Bytes pib(4);
  std::memcpy(pib.data(), &pi, 4);
  b.add("scalar", "F32", "[]", pib);
  b.add("empty", "BF16", "[0, 4]", {});
  std::vector<float> vals = {1.5f, -2.0f, 0.25f, 8.0f, -0.5f, 3.0f};
  Bytes vb(vals.size() * 4);
  std::memcpy(vb.data(), vals.data(), vb.size());
  b.add("m", "F32", "[2, 3]", vb);
  const Bytes file = b.bytes();
  const auto f = SafetensorsFile::parse(file.data(), file.size());
  EXPECT_TRUE(f.metadata().empty());
  const Tensor s = f.tensor("scalar");
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(s.numel(), 1);
  float got;
  std::memcpy(&got, s.data(), 4);  // safetensors data need not be aligned
  EXPECT_EQ(got, pi);
  const Tensor e = f.tensor("empty");
  EXPECT_EQ(e.shape(), (Dims{0, 4}));
  EXPECT_TRUE(e.empty());
  EXPECT_TRUE(f.bytes("empty").empty());
  const Tensor m = f.tensor("m");
  std::vector<float> mv(6);
  std::memcpy(mv.data(), m.data(), 24);
  EXPECT_EQ(mv, vals);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"empty", "m", "scalar"}));
  const auto owned = SafetensorsFile::parse(b.bytes(), "owned");  // owns the temporary's bytes
  EXPECT_EQ(std::memcmp(owned.tensor("m").data(), vals.data(), 24), 0);
  MLXN_EXPECT_RAISES(FormatError, "safetensors", f.tensor("missing"));
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(IoSafetensors, OpensMappedFilesWithoutCopies) {
  TempDir dir;
  const Bytes file = every_dtype_file().bytes();
  const std::string path = dir.write("w.safetensors", file);
  const auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  const auto mem = SafetensorsFile::parse(file.data(), file.size());
  ASSERT_EQ(f.size(), mem.size());
  for (const auto& info : mem.tensors()) {
    const auto a = f.bytes(info.name), b = mem.bytes(info.name);
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << info.name;
  }
  // Views stay valid after the file object is copied and the original destroyed.
  Tensor t;
  {
    auto copy = f;
    t = copy.tensor("t_F32");
  }
  EXPECT_EQ(std::memcmp(t.data(), mem.bytes("t_F32").data(), 48), 0);
  MLXN_EXPECT_RAISES(FormatError, "mmap", SafetensorsFile::open(dir.file("absent.safetensors")));
  MLXN_EXPECT_RAISES(FormatError, "mmap", SafetensorsFile::open(dir.path().string()));  // a directory
  const std::string empty = dir.write("empty.safetensors", Bytes{});
  MLXN_EXPECT_RAISES(FormatError, "safetensors", SafetensorsFile::open(empty));
}

// ---- malformed files -----------------------------------------------------------------------

Bytes one_tensor(const std::string& entry, size_t data_bytes = 16) {
  return safetensors_bytes("{" + entry + "}", iota_bytes(data_bytes));
}

TEST(IoSafetensors, RefusesMalformedHeaders) {
  const auto ok = [](const std::string& entry, size_t n = 16) {
    const Bytes f = one_tensor(entry, n);
    SafetensorsFile::parse(f.data(), f.size());
  };
  // Sanity: the template is valid.
  EXPECT_NO_THROW(ok(R"("a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})"));

  struct Case {
    const char* what;
    Bytes file;
  };
  std::vector<Case> cases;
  auto entry = [&](const char* what, const std::string& e, size_t n = 16) {
    cases.push_back({what, one_tensor(e, n)});
  };
  cases.push_back({"empty file", {}});
  cases.push_back({"7 bytes", Bytes(7, 0)});
  {
    Bytes f;
    put<uint64_t>(f, 100);
    put_bytes(f, "{}", 2);
    cases.push_back({"header length beyond the file", f});
  }
  {
    Bytes f;
    put<uint64_t>(f, std::numeric_limits<uint64_t>::max());
    put_bytes(f, "{}", 2);
    cases.push_back({"header length 2^64-1", f});
  }
  {
    Bytes f;
    put<uint64_t>(f, 0);
    cases.push_back({"zero header length", f});
  }
  cases.push_back({"not JSON", safetensors_bytes("{not json at all", {})});
  cases.push_back({"truncated JSON", safetensors_bytes(R"({"a": {"dtype": "F32", "sha)", {})});
  cases.push_back({"JSON array", safetensors_bytes("[1, 2, 3]", {})});
  cases.push_back({"JSON with trailing garbage", safetensors_bytes("{} x", {})});
  cases.push_back({"invalid UTF-8", safetensors_bytes("{\"\xff\xfe\": 1}", {})});
  entry("entry not an object", R"("a": [1, 2])");
  entry("missing dtype", R"("a": {"shape": [4], "data_offsets": [0, 16]})");
  entry("missing shape", R"("a": {"dtype": "F32", "data_offsets": [0, 16]})");
  entry("missing offsets", R"("a": {"dtype": "F32", "shape": [4]})");
  entry("unknown dtype", R"("a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]})");
  entry("dtype not a string", R"("a": {"dtype": 7, "shape": [4], "data_offsets": [0, 16]})");
  entry("negative extent", R"("a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]})");
  entry("float extent", R"("a": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]})");
  entry("string extent", R"("a": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]})");
  entry("shape not an array", R"("a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]})");
  entry("extent beyond uint64", R"("a": {"dtype": "F32", "shape": [100000000000000000000], "data_offsets": [0, 16]})");
  entry("numel overflows int64", R"("a": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]})");
  entry("empty with huge extents",
        R"("a": {"dtype": "U8", "shape": [0, 4294967296, 4294967296], "data_offsets": [0, 0]})");
  entry("bytes overflow int64", R"("a": {"dtype": "F64", "shape": [1152921504606846976, 2], "data_offsets": [0, 16]})");
  entry("bytes overflow uint64",
        R"("a": {"dtype": "F64", "shape": [4611686018427387904, 1], "data_offsets": [0, 16]})");
  entry("offsets past the data", R"("a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]})");
  entry("offsets far past the data",
        R"("a": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]})");
  entry("begin > end", R"("a": {"dtype": "F32", "shape": [0], "data_offsets": [16, 8]})");
  entry("negative offset", R"("a": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]})");
  entry("one offset", R"("a": {"dtype": "F32", "shape": [4], "data_offsets": [16]})");
  entry("three offsets", R"("a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16, 32]})");
  entry("size does not match shape", R"("a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]})");
  entry("F4 half a byte", R"("a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]})");
  entry(
      "overlapping tensors",
      R"("a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]})");
  entry(
      "one tensor inside another",
      R"("a": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]})");
  entry(
      "same range twice",
      R"("a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]})");
  entry(
      "duplicate names",
      R"("a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "a": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]})");
  entry("duplicate field", R"("a": {"dtype": "U8", "dtype": "U8", "shape": [4], "data_offsets": [0, 4]})");
  entry("metadata not an object", R"("__metadata__": [1])");
  entry("metadata value not a string", R"("__metadata__": {"k": 1})");
  entry("deep nesting", R"("a": {"dtype": "F32", "shape": [[[[[[[[[[4]]]]]]]]]], "data_offsets": [0, 16]})");
  {
    std::string deep(100000, '[');
    cases.push_back({"100000 nested arrays", safetensors_bytes("{\"a\": " + deep, {})});
  }
  for (const auto& c : cases) EXPECT_TRUE(raises_format(c.file)) << c.what;
}

TEST(IoSafetensors, TooManyDimsIsUnsupportedForViewsOnly) {
  const Bytes f = one_tensor(R"("a": {"dtype": "U8", "shape": [1,1,1,1,1,1,1,1,1,16], "data_offsets": [0, 16]})");
  const auto st = SafetensorsFile::parse(f.data(), f.size());
  EXPECT_EQ(st.info("a").shape.size(), 10u);
  EXPECT_EQ(st.bytes("a").size(), 16u);
  MLXN_EXPECT_RAISES(Unsupported, "safetensors", st.tensor("a"));
}

TEST(IoSafetensors, GapsBetweenTensorsAreAllowed) {
  const Bytes f = one_tensor(
      R"("a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}, "z": {"dtype": "U8", "shape": [0], "data_offsets": [4, 4]})");
  const auto st = SafetensorsFile::parse(f.data(), f.size());
  EXPECT_EQ(st.bytes("b")[0], iota_bytes(16)[8]);
}

// Every prefix of a valid file is refused cleanly (truncation at every point).
TEST(IoSafetensors, EveryTruncationRaises) {
  const Bytes file = every_dtype_file().bytes();
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes cut(file.begin(), file.begin() + ptrdiff_t(n));
    ASSERT_TRUE(raises_format(cut)) << "prefix of " << n << " bytes";
  }
}

// Random corruption: each mutated file either parses or raises an mlxn error; when it
// parses, every byte range it reports lies inside the buffer.
TEST(IoSafetensors, CorruptedBytesNeverEscapeTheBuffer) {
  const Bytes file = every_dtype_file().bytes();
  std::mt19937_64 rng(test_seed());
  for (int it = 0; it < 3000; ++it) {
    Bytes f = file;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % f.size();
      f[at] = rng() % 2 ? uint8_t(rng()) : uint8_t("0123456789[]{},:\"-"[rng() % 18]);
    }
    try {
      const auto st = SafetensorsFile::parse(f.data(), f.size());
      for (const auto& t : st.tensors()) {
        const auto b = st.bytes(t);
        if (b.empty()) continue;
        ASSERT_GE(b.data(), f.data());
        ASSERT_LE(b.data() + b.size(), f.data() + f.size());
      }
    } catch (const Error&) {
    }
  }
}

// ---- sharded checkpoints ---------------------------------------------------------------------

TEST(IoSafetensors, ShardedCheckpointThroughIndex) {
  TempDir dir;
  SafetensorsBuilder a, b;
  a.add("model.embed.weight", "F16", "[4, 2]", iota_bytes(16, 1));
  a.add("model.l0.weight", "BF16", "[2, 2]", iota_bytes(8, 50));
  b.add("model.l1.weight", "F32", "[2]", iota_bytes(8, 90));
  b.add("lm_head.weight", "U32", "[1, 2]", iota_bytes(8, 130));
  dir.write("model-00001-of-00002.safetensors", a.bytes());
  dir.write("model-00002-of-00002.safetensors", b.bytes());
  dir.write("model.safetensors.index.json", R"({"metadata": {"total_size": 40}, "weight_map": {
      "model.embed.weight": "model-00001-of-00002.safetensors",
      "model.l0.weight": "model-00001-of-00002.safetensors",
      "model.l1.weight": "model-00002-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  for (const std::string& path : {dir.path().string(), dir.file("model.safetensors.index.json")}) {
    const auto set = SafetensorsSet::open(path);
    EXPECT_EQ(set.files().size(), 2u);
    EXPECT_EQ(set.size(), 4u);
    EXPECT_EQ(set.names(),
              (std::vector<std::string>{"lm_head.weight", "model.embed.weight", "model.l0.weight", "model.l1.weight"}));
    EXPECT_EQ(set.tensor("model.l0.weight").dtype(), DType::bf16);
    EXPECT_EQ(set.tensor("lm_head.weight").shape(), (Dims{1, 2}));
    EXPECT_EQ(set.bytes("model.l1.weight")[0], iota_bytes(8, 90)[0]);
    EXPECT_NE(set.file_of("model.l1.weight").path().find("00002"), std::string::npos);
    MLXN_EXPECT_RAISES(FormatError, "safetensors", set.tensor("nope"));
  }
  // A copy of a set keeps working after the original is gone.
  SafetensorsSet copy;
  {
    const auto set = SafetensorsSet::open(dir.path().string());
    copy = set;
  }
  EXPECT_EQ(copy.info("model.embed.weight").numel, 8);
}

TEST(IoSafetensors, DirectoryWithoutIndex) {
  TempDir dir;
  SafetensorsBuilder a, b;
  a.add("x", "F32", "[1]", iota_bytes(4));
  b.add("y", "F32", "[1]", iota_bytes(4));
  dir.write("b.safetensors", b.bytes());
  dir.write("a.safetensors", a.bytes());
  const auto set = SafetensorsSet::open(dir.path().string());
  EXPECT_EQ(set.names(), (std::vector<std::string>{"x", "y"}));
  // model.safetensors wins over other files when there is no index.
  dir.write("model.safetensors", a.bytes());
  EXPECT_EQ(SafetensorsSet::open(dir.path().string()).files().size(), 1u);
}

TEST(IoSafetensors, RefusesBadIndexes) {
  TempDir dir;
  SafetensorsBuilder a;
  a.add("x", "F32", "[1]", iota_bytes(4));
  dir.write("a.safetensors", a.bytes());
  dir.write("dup.safetensors", a.bytes());
  const auto bad_index = [&](const std::string& json) {
    const std::string p = dir.write("bad.index.json", json);
    return raises<FormatError>("safetensors", [&] { SafetensorsSet::open(p); });
  };
  EXPECT_TRUE(bad_index("not json"));
  EXPECT_TRUE(bad_index("[]"));
  EXPECT_TRUE(bad_index(R"({"metadata": {}})"));
  EXPECT_TRUE(bad_index(R"({"weight_map": []})"));
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": 3}})"));
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": "a.safetensors", "y": "a.safetensors"}})"));  // y absent
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": "../a.safetensors"}})"));
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": "/etc/passwd"}})"));
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": ""}})"));
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": "a.safetensors\u0000.txt"}})"));  // would open a.safetensors
  EXPECT_TRUE(bad_index(R"({"weight_map": {"x": "a.safetensors", "z": "dup.safetensors"}})"));  // x twice
  EXPECT_TRUE(raises<FormatError>("mmap", [&] {
    SafetensorsSet::open(dir.write("missing.index.json", R"({"weight_map": {"x": "gone.safetensors"}})"));
  }));
  TempDir empty;
  MLXN_EXPECT_RAISES(FormatError, "safetensors", SafetensorsSet::open(empty.path().string()));
}

// ---- upload ------------------------------------------------------------------------------------

class IoSafetensorsUpload : public BackendTest {};

TEST_P(IoSafetensorsUpload, CopiesOnceToTheDevice) {
  const Bytes file = every_dtype_file().bytes();
  const auto f = SafetensorsFile::parse(file.data(), file.size());
  for (const char* name : {"t_F32", "t_BF16", "t_I8", "t_U32", "t_I64"}) {
    const Array a = f.upload(session(), name);
    EXPECT_EQ(a->device(), device());
    EXPECT_EQ(a->shape(), (Dims{3, 4}));
    Bytes back(a->nbytes());
    session().download(back.data(), a, back.size());
    const auto want = f.bytes(name);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), want.begin(), want.end())) << name;
  }
  MLXN_EXPECT_RAISES(Unsupported, "safetensors", f.upload(session(), "t_F64"));
}

MLXN_BACKEND_TESTS(IoSafetensorsUpload);

}  // namespace
}  // namespace mlxn::test
