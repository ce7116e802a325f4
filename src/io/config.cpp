#include "mlxn/io/config.h"

#include <cmath>
#include <limits>

#include "io/json.h"
#include "mlxn/error.h"
#include "mlxn/io/mapped_file.h"

namespace mlxn::io {

using nlohmann::json;

namespace {
constexpr const char* kOp = "config";
// Real configs nest two or three levels (vision_config.rope_scaling...); 64 is generous and
// keeps every walk over a hostile document shallow.
constexpr int kMaxJsonDepth = 64;

template <class... Args>
[[noreturn]] void config_error(Args&&... args) {
  throw_error<FormatError>(kOp, std::forward<Args>(args)...);
}

[[noreturn]] void wrong_type(const std::string& src, std::string_view key, const json& v, const char* want) {
  config_error(src, ": '", key, "' is a JSON ", detail::json_kind(v), ", expected ", want);
}

int64_t to_int(const std::string& src, std::string_view key, const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) config_error(src, ": '", key, "' = ", u, " overflows int64");
    return int64_t(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  wrong_type(src, key, v, "an integer");
}

double to_double(const std::string& src, std::string_view key, const json& v) {
  if (v.is_number_unsigned()) return double(v.get<uint64_t>());
  if (v.is_number_integer()) return double(v.get<int64_t>());
  if (v.is_number_float()) return v.get<double>();
  wrong_type(src, key, v, "a number");
}
}  // namespace

// ---- Config ------------------------------------------------------------------------------

Config Config::parse(std::string_view text, std::string source) {
  auto root = std::make_shared<const nlohmann::json>(detail::parse_json(text, kOp, source, kMaxJsonDepth));
  if (!root->is_object())
    config_error(source, ": top level is a JSON ", detail::json_kind(*root), ", expected an object");
  const nlohmann::json* node = root.get();
  return Config(std::move(root), node, std::move(source));
}

Config Config::open(const std::string& path) {
  const MappedFile m = MappedFile::open(path);
  return parse(std::string_view(reinterpret_cast<const char*>(m.data()), m.size()), path);
}

const json& Config::json() const {
  static const nlohmann::json empty = nlohmann::json::object();
  return node_ ? *node_ : empty;
}

bool Config::has(std::string_view key) const {
  const auto& j = json();
  auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> v;
  for (const auto& [k, val] : json().items()) v.push_back(k);
  return v;
}

const json& Config::at(std::string_view key) const {
  const auto& j = json();
  auto it = j.find(key);
  if (it == j.end()) config_error(source_, ": no key '", key, "'");
  return *it;
}

int64_t Config::get_int(std::string_view key) const { return to_int(source_, key, at(key)); }
double Config::get_double(std::string_view key) const { return to_double(source_, key, at(key)); }

bool Config::get_bool(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_boolean()) wrong_type(source_, key, v, "a boolean");
  return v.get<bool>();
}

std::string Config::get_string(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_string()) wrong_type(source_, key, v, "a string");
  return v.get<std::string>();
}

std::vector<int64_t> Config::get_ints(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_array()) wrong_type(source_, key, v, "an array of integers");
  std::vector<int64_t> out;
  for (const auto& e : v) out.push_back(to_int(source_, key, e));
  return out;
}

std::vector<double> Config::get_doubles(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_array()) wrong_type(source_, key, v, "an array of numbers");
  std::vector<double> out;
  for (const auto& e : v) out.push_back(to_double(source_, key, e));
  return out;
}

std::vector<std::string> Config::get_strings(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_array()) wrong_type(source_, key, v, "an array of strings");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) wrong_type(source_, key, e, "a string element");
    out.push_back(e.get<std::string>());
  }
  return out;
}

int64_t Config::get_int(std::string_view key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
double Config::get_double(std::string_view key, double fallback) const { return has(key) ? get_double(key) : fallback; }
bool Config::get_bool(std::string_view key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
std::string Config::get_string(std::string_view key, std::string_view fallback) const {
  return has(key) ? get_string(key) : std::string(fallback);
}

Config Config::section(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_object()) wrong_type(source_, key, v, "an object");
  return Config(root_, &v, source_ + ":" + std::string(key));
}

std::optional<Config> Config::find_section(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return section(key);
}

// ---- quantization ------------------------------------------------------------------------

QuantParams QuantParams::defaults(std::string_view mode) {
  QuantParams p;
  p.mode = std::string(mode);
  if (mode == "mxfp4") {
    p.group_size = 32;
    p.bits = 4;
  } else if (mode == "nvfp4") {
    p.group_size = 16;
    p.bits = 4;
  } else if (mode == "mxfp8") {
    p.group_size = 32;
    p.bits = 8;
  } else {
    p.group_size = 64;
    p.bits = 4;
  }
  return p;
}

namespace {

// Parameters from an object with optional group_size/bits/mode; absent fields take the
// mode's defaults, as MLX does.
QuantParams parse_params(const json& o, const std::string& src, const std::string& where) {
  std::string mode = "affine";
  if (auto it = o.find("mode"); it != o.end() && !it->is_null()) {
    if (!it->is_string()) wrong_type(src, where + ".mode", *it, "a string");
    mode = it->get<std::string>();
  }
  QuantParams p = QuantParams::defaults(mode);
  if (auto it = o.find("bits"); it != o.end() && !it->is_null()) {
    const int64_t b = to_int(src, where + ".bits", *it);
    if (b < 1 || b > 8) config_error(src, ": ", where, ".bits = ", b, " is outside 1..8");
    p.bits = int(b);
  }
  if (auto it = o.find("group_size"); it != o.end() && !it->is_null()) {
    const int64_t g = to_int(src, where + ".group_size", *it);
    if (g < 1 || g > (int64_t(1) << 20)) config_error(src, ": ", where, ".group_size = ", g, " is out of range");
    p.group_size = int(g);
  }
  return p;
}

}  // namespace

QuantConfig QuantConfig::from_json(const nlohmann::json& block, const std::string& src) {
  if (!block.is_object()) wrong_type(src, "quantization", block, "an object");
  QuantConfig q;
  q.global_ = parse_params(block, src, "quantization");
  for (const auto& [key, v] : block.items()) {
    if (key == "bits" || key == "group_size" || key == "mode") continue;
    if (v.is_boolean()) {
      q.overrides_.emplace(key, v.get<bool>() ? std::optional<QuantParams>(q.global_) : std::nullopt);
    } else if (v.is_object()) {
      q.overrides_.emplace(key, parse_params(v, src, "quantization." + key));
    }
    // Other scalars (e.g. a writer's "quant_method" tag) describe the block, not a module.
  }
  return q;
}

std::optional<QuantConfig> QuantConfig::from_config(const Config& config) {
  const auto& j = config.json();
  if (auto it = j.find("quantization"); it != j.end() && !it->is_null()) return from_json(*it, config.source());
  if (auto it = j.find("quantization_config"); it != j.end() && it->is_object()) {
    const bool mlx_style = it->contains("bits") && it->contains("group_size") && !it->contains("quant_method");
    if (mlx_style) return from_json(*it, config.source());
  }
  return std::nullopt;
}

std::optional<QuantParams> QuantConfig::quant_for(std::string_view module_path) const {
  if (auto it = overrides_.find(module_path); it != overrides_.end()) return it->second;
  return global_;
}

}  // namespace mlxn::io
