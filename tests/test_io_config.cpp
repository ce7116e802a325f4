// config.json reader, the MLX quantization block, and the checkpoint facade that resolves
// a module path to a dense weight or an MLX-quantized (weight, scales, biases) triple.
#include <nlohmann/json.hpp>

#include "mlxn/io/checkpoint.h"
#include "mlxn/io/config.h"
#include "support/io_builders.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

using io::Checkpoint;
using io::Config;
using io::QuantConfig;
using io::QuantParams;

const char* kQwenLike = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "model_type": "qwen3",
  "hidden_size": 2048,
  "num_hidden_layers": 28,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "head_dim": null,
  "big": 18446744073709551615,
  "layer_types": ["full_attention", "linear_attention"],
  "mrope_section": [16, 24, 24],
  "scales": [0.5, 1, 2.5],
  "text_config": {"vocab_size": 151936, "rope_scaling": {"type": "yarn", "factor": 4.0}},
  "quantization": {"group_size": 64, "bits": 4, "mode": "affine",
                   "model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8},
                   "model.layers.1.mlp.gate": false,
                   "model.embed_tokens": true,
                   "model.layers.2.mlp.gate": {"bits": 8}}
})";

TEST(IoConfig, TypedGetters) {
  const auto c = Config::parse(kQwenLike, "config.json");
  EXPECT_EQ(c.model_type(), "qwen3");
  EXPECT_EQ(c.get_int("hidden_size"), 2048);
  EXPECT_EQ(c.get_double("rms_norm_eps"), 1e-6);
  EXPECT_EQ(c.get_double("rope_theta"), 1e6);  // an integer read as a double
  EXPECT_TRUE(c.get_bool("tie_word_embeddings"));
  EXPECT_EQ(c.get_string("torch_dtype"), "bfloat16");
  EXPECT_EQ(c.get_strings("architectures"), (std::vector<std::string>{"Qwen3ForCausalLM"}));
  EXPECT_EQ(c.get_ints("mrope_section"), (std::vector<int64_t>{16, 24, 24}));
  EXPECT_EQ(c.get_doubles("scales"), (std::vector<double>{0.5, 1, 2.5}));
  EXPECT_FALSE(c.has("head_dim"));  // null counts as absent
  EXPECT_EQ(c.get_int("head_dim", 128), 128);
  EXPECT_EQ(c.get_int("missing", -1), -1);
  EXPECT_EQ(c.get_string("missing", "x"), "x");
  EXPECT_EQ(c.get_bool("missing", true), true);
  EXPECT_EQ(c.get_double("missing", 2.5), 2.5);
  const auto tc = c.section("text_config");
  EXPECT_EQ(tc.get_int("vocab_size"), 151936);
  EXPECT_EQ(tc.section("rope_scaling").get_double("factor"), 4.0);
  EXPECT_FALSE(c.find_section("vision_config"));
  EXPECT_TRUE(c.find_section("text_config"));
  EXPECT_EQ(c.json()["hidden_size"].get<int>(), 2048);
  const auto keys = c.keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "model_type"), keys.end());

  // Wrong types and missing keys name the key.
  const auto names = [](const char* key, auto&& fn) {
    try {
      fn();
    } catch (const FormatError& e) {
      const std::string w = e.what();
      return w.rfind("[config]", 0) == 0 && w.find(key) != std::string::npos;
    }
    return false;
  };
  EXPECT_TRUE(names("hidden_size", [&] { c.get_string("hidden_size"); }));
  EXPECT_TRUE(names("rms_norm_eps", [&] { c.get_int("rms_norm_eps"); }));  // a float is not an integer
  EXPECT_TRUE(names("model_type", [&] { c.get_double("model_type"); }));
  EXPECT_TRUE(names("hidden_size", [&] { c.get_bool("hidden_size"); }));
  EXPECT_TRUE(names("big", [&] { c.get_int("big"); }));  // beyond int64
  EXPECT_TRUE(names("layer_types", [&] { c.get_ints("layer_types"); }));
  EXPECT_TRUE(names("mrope_section", [&] { c.get_strings("mrope_section"); }));
  EXPECT_TRUE(names("hidden_size", [&] { c.section("hidden_size"); }));
  EXPECT_TRUE(names("nope", [&] { c.get_int("nope"); }));
  EXPECT_TRUE(names("torch_dtype", [&] { c.get_int("torch_dtype", 3); }));  // present, wrong type
}

TEST(IoConfig, RefusesMalformedFiles) {
  for (const char* text :
       {"", "{", "[1, 2]", "3", "{\"a\": 1,}", "{\"a\": 1, \"a\": 2}", "{\"a\": 1} trailing", "{\"a\": \"\xff\"}"})
    EXPECT_TRUE(raises<FormatError>("config", [&] { Config::parse(text); })) << text;
  const std::string deep = "{\"a\": " + std::string(500, '[') + std::string(500, ']') + "}";
  EXPECT_TRUE(raises<FormatError>("config", [&] { Config::parse(deep); }));
  TempDir dir;
  EXPECT_TRUE(raises<FormatError>("mmap", [&] { Config::open(dir.file("config.json")); }));
  EXPECT_EQ(Config::open(dir.write("config.json", std::string_view(kQwenLike))).get_int("num_hidden_layers"), 28);
}

TEST(IoConfig, QuantizationBlockAndOverrides) {
  const auto c = Config::parse(kQwenLike);
  const auto q = QuantConfig::from_config(c);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->global(), (QuantParams{4, 64, "affine"}));
  EXPECT_EQ(q->quant_for("model.layers.5.self_attn.q_proj"), (QuantParams{4, 64, "affine"}));
  EXPECT_EQ(q->quant_for("model.layers.0.mlp.down_proj"), (QuantParams{8, 32, "affine"}));
  EXPECT_EQ(q->quant_for("model.layers.1.mlp.gate"), std::nullopt);
  EXPECT_EQ(q->quant_for("model.embed_tokens"), q->global());
  // Fields an override leaves out take MLX's defaults for the mode.
  EXPECT_EQ(q->quant_for("model.layers.2.mlp.gate"), (QuantParams{8, 64, "affine"}));
  EXPECT_EQ(q->overrides().size(), 4u);
  EXPECT_TRUE(q->has_override("model.layers.1.mlp.gate"));
  // Exact module paths only: a prefix is a different module.
  EXPECT_EQ(q->quant_for("model.layers.0.mlp.down_proj_x"), q->global());

  // quantization_config (written by mlx-lm as a copy) is used when there is no quantization.
  const auto c2 = Config::parse(R"({"quantization_config": {"group_size": 32, "bits": 3}})");
  EXPECT_EQ(QuantConfig::from_config(c2)->global(), (QuantParams{3, 32, "affine"}));
  // ... but not a transformers-style block (GPTQ, AWQ, ...).
  const auto c3 = Config::parse(R"({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}})");
  EXPECT_FALSE(QuantConfig::from_config(c3));
  EXPECT_FALSE(QuantConfig::from_config(Config::parse("{}")));
  // Other modes and their defaults.
  const auto c4 = Config::parse(R"({"quantization": {"mode": "mxfp4"}})");
  EXPECT_EQ(QuantConfig::from_config(c4)->global(), (QuantParams{4, 32, "mxfp4"}));
  EXPECT_EQ(QuantParams::defaults("nvfp4"), (QuantParams{4, 16, "nvfp4"}));
  EXPECT_EQ(QuantParams::defaults("mxfp8"), (QuantParams{8, 32, "mxfp8"}));
  // A writer's extra scalar tag is not an override.
  const auto c5 = Config::parse(R"({"quantization": {"group_size": 64, "bits": 4, "quant_method": "mlx"}})");
  EXPECT_TRUE(QuantConfig::from_config(c5)->overrides().empty());

  for (const char* bad :
       {R"({"quantization": 4})", R"({"quantization": {"bits": 0}})", R"({"quantization": {"bits": 9}})",
        R"({"quantization": {"bits": "4"}})", R"({"quantization": {"group_size": 0}})",
        R"({"quantization": {"group_size": -64}})", R"({"quantization": {"group_size": 64.5}})",
        R"({"quantization": {"mode": 1}})", R"({"quantization": {"a.b": {"bits": 12}}})"})
    EXPECT_TRUE(raises<FormatError>("config", [&] { QuantConfig::from_config(Config::parse(bad)); })) << bad;
}

// ---- checkpoint facade ---------------------------------------------------------------------

std::string shape_json(std::initializer_list<int64_t> s) {
  std::string r = "[";
  for (auto it = s.begin(); it != s.end(); ++it) r += (it == s.begin() ? "" : ", ") + std::to_string(*it);
  return r + "]";
}

// Adds a zero-filled tensor of the given shape.
void add(SafetensorsBuilder& b, const std::string& name, const char* dtype, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  const size_t esize = std::string(dtype) == "U32" || std::string(dtype) == "F32" ? 4 : 2;
  b.add(name, dtype, shape_json(shape), Bytes(size_t(n) * esize, 0));
}

// Adds an MLX-quantized module: W [..., N, K] at `bits`/`gs`, scales in `sdtype`.
void add_quantized(SafetensorsBuilder& b, const std::string& m, std::vector<int64_t> lead, int64_t n, int64_t k,
                   int bits, int gs, const char* sdtype = "BF16", bool biases = true) {
  auto with = [&](int64_t last) {
    std::string s = "[";
    for (auto d : lead) s += std::to_string(d) + ", ";
    return s + std::to_string(n) + ", " + std::to_string(last) + "]";
  };
  int64_t rows = n;
  for (auto d : lead) rows *= d;
  const int64_t packed = k * bits / 32, groups = k / gs;
  const int64_t ssize = std::string(sdtype) == "F32" ? 4 : 2;
  b.add(m + ".weight", "U32", with(packed), Bytes(size_t(rows * packed * 4), 0));
  b.add(m + ".scales", sdtype, with(groups), Bytes(size_t(rows * groups * ssize), 0));
  if (biases) b.add(m + ".biases", sdtype, with(groups), Bytes(size_t(rows * groups * ssize), 0));
}

const char* kCkptConfig = R"({"model_type": "qwen3_moe", "hidden_size": 128,
  "quantization": {"group_size": 64, "bits": 4,
                   "model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8},
                   "model.layers.0.self_attn.k_proj": {"group_size": 64, "bits": 3},
                   "model.layers.0.self_attn.v_proj": {"group_size": 128, "bits": 6},
                   "lm_head": false}})";

SafetensorsBuilder ckpt_tensors() {
  SafetensorsBuilder b;
  add_quantized(b, "model.embed_tokens", {}, 8, 128, 4, 64);
  add_quantized(b, "model.layers.0.self_attn.q_proj", {}, 16, 128, 4, 64, "F16");
  add(b, "model.layers.0.self_attn.q_proj.bias", "F16", {16});
  add_quantized(b, "model.layers.0.self_attn.k_proj", {}, 8, 128, 3, 64);
  add_quantized(b, "model.layers.0.self_attn.v_proj", {}, 8, 256, 6, 128, "F32");
  add_quantized(b, "model.layers.0.mlp.down_proj", {}, 4, 64, 8, 32);
  add_quantized(b, "model.layers.0.mlp.switch_mlp.gate_proj", {3}, 4, 128, 4, 64);
  add(b, "model.layers.0.mlp.up_proj.weight", "F16", {4, 128});  // left dense without an override
  add(b, "lm_head.weight", "BF16", {8, 128});
  add(b, "model.norm.weight", "F32", {128});
  return b;
}

TEST(IoCheckpoint, ResolvesDenseAndQuantizedLayers) {
  TempDir dir;
  dir.write("config.json", std::string_view(kCkptConfig));
  dir.write("model.safetensors", ckpt_tensors().bytes());
  const auto ck = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ck.config());
  ASSERT_TRUE(ck.quantization());
  EXPECT_EQ(ck.config()->model_type(), "qwen3_moe");

  const auto emb = ck.linear("model.embed_tokens");
  EXPECT_TRUE(emb.quantized());
  EXPECT_EQ(emb.bits(), 4);
  EXPECT_EQ(emb.group_size(), 64);
  EXPECT_EQ(emb.out_features, 8);
  EXPECT_EQ(emb.in_features, 128);
  EXPECT_EQ(emb.weight.dtype(), DType::u32);
  EXPECT_EQ(emb.weight.shape(), (Dims{8, 16}));
  EXPECT_EQ(emb.scales->shape(), (Dims{8, 2}));
  EXPECT_EQ(emb.scales->dtype(), DType::bf16);
  EXPECT_EQ(emb.biases->shape(), (Dims{8, 2}));
  EXPECT_FALSE(emb.bias);

  const auto q = ck.linear("model.layers.0.self_attn.q_proj.weight");  // ".weight" is accepted
  EXPECT_EQ(q.module, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(q.scales->dtype(), DType::f16);
  ASSERT_TRUE(q.bias);
  EXPECT_EQ(q.bias->shape(), (Dims{16}));

  const auto k = ck.linear("model.layers.0.self_attn.k_proj");
  EXPECT_EQ(k.bits(), 3);
  EXPECT_EQ(k.in_features, 128);
  EXPECT_EQ(k.weight.shape(), (Dims{8, 12}));
  const auto v = ck.linear("model.layers.0.self_attn.v_proj");
  EXPECT_EQ(v.bits(), 6);
  EXPECT_EQ(v.group_size(), 128);
  EXPECT_EQ(v.in_features, 256);
  EXPECT_EQ(v.scales->dtype(), DType::f32);

  const auto down = ck.linear("model.layers.0.mlp.down_proj");
  EXPECT_EQ(down.bits(), 8);
  EXPECT_EQ(down.group_size(), 32);
  EXPECT_EQ(down.in_features, 64);

  const auto experts = ck.linear("model.layers.0.mlp.switch_mlp.gate_proj");
  EXPECT_EQ(experts.weight.shape(), (Dims{3, 4, 16}));
  EXPECT_EQ(experts.scales->shape(), (Dims{3, 4, 2}));
  EXPECT_EQ(experts.out_features, 4);
  EXPECT_EQ(experts.in_features, 128);

  const auto up = ck.linear("model.layers.0.mlp.up_proj");
  EXPECT_FALSE(up.quantized());
  EXPECT_EQ(up.weight.dtype(), DType::f16);
  EXPECT_EQ(up.in_features, 128);
  const auto head = ck.linear("lm_head");
  EXPECT_FALSE(head.quantized());
  EXPECT_EQ(head.weight.dtype(), DType::bf16);
  EXPECT_TRUE(ck.is_quantized("model.embed_tokens"));
  EXPECT_FALSE(ck.is_quantized("lm_head"));

  MLXN_EXPECT_RAISES(FormatError, "checkpoint", ck.linear("model.norm"));  // 1-D
  MLXN_EXPECT_RAISES(FormatError, "checkpoint", ck.linear("model.layers.9.mlp"));
  EXPECT_EQ(ck.tensor("model.norm.weight").shape(), (Dims{128}));
}

// Checkpoints that disagree with their config, each refused naming the module.
TEST(IoCheckpoint, RefusesInconsistentCheckpoints) {
  struct Case {
    const char* what;
    const char* config;
    std::function<void(SafetensorsBuilder&)> build;
    const char* module;
  };
  const char* q4 = R"({"quantization": {"group_size": 64, "bits": 4, "off": false, "on": {"bits": 8}}})";
  const std::vector<Case> cases = {
      {"scales without a quantization block", "{}", [](auto& b) { add_quantized(b, "m", {}, 4, 128, 4, 64); }, "m"},
      {"scales on a module configured unquantized", q4, [](auto& b) { add_quantized(b, "off", {}, 4, 128, 4, 64); },
       "off"},
      {"override quantizes but no scales", q4,
       [](auto& b) {
         add(b, "on.weight", "F16", {4, 128});
       },
       "on"},
      {"scales width disagrees with bits", q4, [](auto& b) { add_quantized(b, "m", {}, 4, 128, 8, 64); }, "m"},
      {"scales width disagrees with group size", q4, [](auto& b) { add_quantized(b, "m", {}, 4, 128, 4, 32); }, "m"},
      {"scales rows disagree", q4,
       [](auto& b) {
         add(b, "m.weight", "U32", {4, 16});
         add(b, "m.scales", "BF16", {5, 2});
         add(b, "m.biases", "BF16", {5, 2});
       },
       "m"},
      {"affine without biases", q4, [](auto& b) { add_quantized(b, "m", {}, 4, 128, 4, 64, "BF16", false); }, "m"},
      {"biases dtype differs", q4,
       [](auto& b) {
         add(b, "m.weight", "U32", {4, 16});
         add(b, "m.scales", "BF16", {4, 2});
         add(b, "m.biases", "F16", {4, 2});
       },
       "m"},
      {"quantized weight not u32", q4,
       [](auto& b) {
         add(b, "m.weight", "F16", {4, 16});
         add(b, "m.scales", "BF16", {4, 2});
         add(b, "m.biases", "BF16", {4, 2});
       },
       "m"},
      {"scales not float", q4,
       [](auto& b) {
         add(b, "m.weight", "U32", {4, 16});
         add(b, "m.scales", "U32", {4, 2});
         add(b, "m.biases", "U32", {4, 2});
       },
       "m"},
      {"dense weight not float", "{}",
       [](auto& b) {
         add(b, "m.weight", "U32", {4, 16});
       },
       "m"},
      {"bias length wrong", "{}",
       [](auto& b) {
         add(b, "m.weight", "F16", {4, 16});
         add(b, "m.bias", "F16", {5});
       },
       "m"},
      {"missing weight", "{}", [](auto& b) { add(b, "m.bias", "F16", {4}); }, "m"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    SafetensorsBuilder b;
    c.build(b);
    const Bytes bytes = b.bytes();
    std::vector<io::SafetensorsFile> files;
    files.push_back(io::SafetensorsFile::parse(bytes.data(), bytes.size()));
    const Checkpoint ck(io::SafetensorsSet::from_files(std::move(files)), Config::parse(c.config));
    try {
      ck.linear(c.module);
      ADD_FAILURE() << "no error";
    } catch (const FormatError& e) {
      const std::string w = e.what();
      EXPECT_EQ(w.rfind("[checkpoint]", 0), 0u) << w;
      EXPECT_NE(w.find(std::string("'") + c.module + "'"), std::string::npos) << w;
    }
  }
}

class IoCheckpointUpload : public BackendTest {};

TEST_P(IoCheckpointUpload, UploadsEveryTensorOfALayer) {
  SafetensorsBuilder b;
  add_quantized(b, "m", {}, 4, 128, 4, 64);
  add(b, "m.bias", "F16", {4});
  const Bytes bytes = b.bytes();
  std::vector<io::SafetensorsFile> files;
  files.push_back(io::SafetensorsFile::parse(bytes.data(), bytes.size()));
  const Checkpoint ck(io::SafetensorsSet::from_files(std::move(files)),
                      Config::parse(R"({"quantization": {"group_size": 64, "bits": 4}})"));
  const auto host = ck.linear("m");
  const auto dev = io::upload(session(), host);
  EXPECT_EQ(dev.view.weight.device(), device());
  EXPECT_EQ(dev.view.scales->device(), device());
  EXPECT_EQ(dev.view.biases->device(), device());
  EXPECT_EQ(dev.view.bias->device(), device());
  EXPECT_EQ(dev.view.weight.shape(), host.weight.shape());
  EXPECT_EQ(dev.view.bits(), 4);
  EXPECT_EQ(dev.view.weight.data(), dev.weight->data());
}

MLXN_BACKEND_TESTS(IoCheckpointUpload);

}  // namespace
}  // namespace mlxn::test
