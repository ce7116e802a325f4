#pragma once
// Hugging Face config.json (model_type, hidden_size, ... and nested sections such as
// text_config), and the MLX "quantization" block that mlx-lm writes beside it:
//
//   "quantization": {"group_size": 64, "bits": 4, "mode": "affine",
//                    "model.layers.0.mlp.down_proj": {"group_size": 64, "bits": 8},
//                    "lm_head": false}
//
// Keys other than group_size/bits/mode whose value is an object or a bool are per-module
// overrides keyed by module path: an object gives that module's own parameters (fields it
// leaves out take MLX's defaults for its mode), `false` leaves the module unquantized,
// `true` uses the global parameters.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mlxn/error.h"

namespace mlxn::io {

// A JSON object with typed getters. Getters throw FormatError naming the source and the key
// when the key is missing or holds another type (the file is not what the caller needs);
// the two-argument forms return the fallback only when the key is absent or null.
class Config {
 public:
  Config() = default;
  static Config open(const std::string& path);  // FormatError for unreadable or malformed files
  static Config parse(std::string_view text, std::string source = "<memory>");

  const std::string& source() const { return source_; }
  bool has(std::string_view key) const;  // present and not null
  std::vector<std::string> keys() const;

  int64_t get_int(std::string_view key) const;    // a JSON integer
  double get_double(std::string_view key) const;  // any JSON number
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::vector<int64_t> get_ints(std::string_view key) const;
  std::vector<double> get_doubles(std::string_view key) const;
  std::vector<std::string> get_strings(std::string_view key) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_double(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;
  std::string get_string(std::string_view key, std::string_view fallback) const;

  // A nested object (e.g. "text_config"); FormatError when absent or not an object.
  Config section(std::string_view key) const;
  std::optional<Config> find_section(std::string_view key) const;

  // Convenience for HF configs.
  std::string model_type() const { return get_string("model_type"); }

  // The underlying JSON value (include <nlohmann/json.hpp> to use it).
  const nlohmann::json& json() const;

 private:
  Config(std::shared_ptr<const nlohmann::json> root, const nlohmann::json* node, std::string source)
      : root_(std::move(root)), node_(node), source_(std::move(source)) {}
  const nlohmann::json& at(std::string_view key) const;  // FormatError when absent
  std::shared_ptr<const nlohmann::json> root_;
  const nlohmann::json* node_ = nullptr;
  std::string source_;
};

// Parameters of one MLX-quantized module.
struct QuantParams {
  int bits = 4;
  int group_size = 64;
  std::string mode = "affine";  // "affine" (scale * q + bias); also mxfp4, nvfp4, mxfp8
  bool operator==(const QuantParams&) const = default;
  // MLX's defaults for a mode: affine 64/4, mxfp4 32/4, nvfp4 16/4, mxfp8 32/8.
  static QuantParams defaults(std::string_view mode);
};

class QuantConfig {
 public:
  // From the JSON object of a "quantization" block; FormatError for bad values (bits outside
  // 1..8, non-positive group sizes, overrides that are neither objects nor bools).
  static QuantConfig from_json(const nlohmann::json& block, const std::string& source);
  // The block of an HF/MLX config: "quantization", else an MLX-style "quantization_config"
  // (one with bits and group_size and no quant_method); nullopt when there is none.
  static std::optional<QuantConfig> from_config(const Config& config);

  const QuantParams& global() const { return global_; }
  // The parameters the config gives a module (by module path, e.g.
  // "model.layers.3.self_attn.q_proj"); nullopt when an override leaves it unquantized.
  std::optional<QuantParams> quant_for(std::string_view module_path) const;
  // Overrides by module path; nullopt entries are modules left unquantized.
  const std::map<std::string, std::optional<QuantParams>, std::less<>>& overrides() const { return overrides_; }
  bool has_override(std::string_view module_path) const { return overrides_.count(module_path) != 0; }

 private:
  QuantParams global_;
  std::map<std::string, std::optional<QuantParams>, std::less<>> overrides_;
};

}  // namespace mlxn::io
