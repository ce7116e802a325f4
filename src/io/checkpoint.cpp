#include "mlxn/io/checkpoint.h"

#include <filesystem>

#include "mlxn/error.h"
#include "mlxn/io/upload.h"

namespace mlxn::io {

namespace {
constexpr const char* kOp = "checkpoint";
namespace fs = std::filesystem;

template <class... Args>
[[noreturn]] void ckpt_error(std::string_view module, Args&&... args) {
  throw_error<FormatError>(kOp, "module '", module, "': ", std::forward<Args>(args)...);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
}  // namespace

Checkpoint::Checkpoint(SafetensorsSet tensors, std::optional<Config> config)
    : tensors_(std::move(tensors)), config_(std::move(config)) {
  if (config_) quant_ = QuantConfig::from_config(*config_);
}

Checkpoint Checkpoint::open(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  std::optional<Config> config;
  if (fs::exists(dir / "config.json", ec)) config = Config::open((dir / "config.json").string());
  return Checkpoint(SafetensorsSet::open(path), std::move(config));
}

bool Checkpoint::is_quantized(std::string_view module) const {
  std::string m(module);
  if (ends_with(m, ".weight") && !tensors_.contains(m + ".weight")) m.resize(m.size() - 7);
  return tensors_.contains(m + ".scales");
}

LinearWeights Checkpoint::linear(std::string_view module_arg) const {
  std::string m(module_arg);
  if (ends_with(m, ".weight") && !tensors_.contains(m + ".weight")) m.resize(m.size() - 7);
  LinearWeights L;
  L.module = m;
  if (!tensors_.contains(m + ".weight")) ckpt_error(m, "no tensor '", m, ".weight'");
  L.weight = tensors_.tensor(m + ".weight");
  if (tensors_.contains(m + ".bias")) L.bias = tensors_.tensor(m + ".bias");
  const bool has_scales = tensors_.contains(m + ".scales");
  const Dims ws = L.weight.shape();
  if (ws.size() < 2) ckpt_error(m, "weight ", L.weight.str(), " has fewer than 2 dimensions");
  L.out_features = ws[ws.size() - 2];

  if (!has_scales) {
    if (quant_ && quant_->has_override(m) && quant_->quant_for(m))
      ckpt_error(m, "the quantization config quantizes it, but there is no '", m, ".scales'");
    if (!is_float(L.weight.dtype()))
      ckpt_error(m, "dense weight ", L.weight.str(), " is not a float type (quantized without scales?)");
    L.in_features = ws[ws.size() - 1];
  } else {
    if (!quant_) ckpt_error(m, "has scales but the config has no quantization block (bits and group size unknown)");
    const auto q = quant_->quant_for(m);
    if (!q) ckpt_error(m, "has scales but the quantization config leaves it unquantized (false)");
    L.quant = *q;
    const int bits = q->bits, gs = q->group_size;
    if (L.weight.dtype() != DType::u32) ckpt_error(m, "quantized weight ", L.weight.str(), " is not u32");
    L.scales = tensors_.tensor(m + ".scales");
    if (q->mode == "affine" && !is_float(L.scales->dtype()))
      ckpt_error(m, "scales ", L.scales->str(), " are not a float type");
    const int64_t packed = ws[ws.size() - 1];
    if (packed > INT64_MAX / 32) ckpt_error(m, "weight width overflows");
    if ((packed * 32) % bits)
      ckpt_error(m, "weight width ", packed, " words is not a whole number of ", bits, "-bit values");
    L.in_features = packed * 32 / bits;
    if (L.in_features % gs) ckpt_error(m, "input width ", L.in_features, " is not a multiple of the group size ", gs);
    Dims want = ws;
    want[want.size() - 1] = L.in_features / gs;
    if (!(L.scales->shape() == want))
      ckpt_error(m, "scales ", L.scales->str(), " do not match weight ", L.weight.str(), " at ", bits, " bits, group ",
                 gs, " (expected ", want.str(), ")");
    const bool has_biases = tensors_.contains(m + ".biases");
    if (has_biases) {
      L.biases = tensors_.tensor(m + ".biases");
      if (L.biases->dtype() != L.scales->dtype() || !(L.biases->shape() == want))
        ckpt_error(m, "biases ", L.biases->str(), " do not match scales ", L.scales->str());
    } else if (q->mode == "affine") {
      ckpt_error(m, "affine quantization without '", m, ".biases'");
    }
  }
  if (L.bias) {
    const Dims& bs = L.bias->shape();
    if (bs.size() != ws.size() - 1 || bs[bs.size() - 1] != L.out_features)
      ckpt_error(m, "bias ", L.bias->str(), " does not match ", L.out_features, " outputs");
  }
  return L;
}

LinearArrays upload(Session& s, const LinearWeights& host) {
  LinearArrays a;
  a.weight = io::upload(s, host.weight);
  a.view = host;
  a.view.weight = a.weight.tensor();
  if (host.scales) {
    a.scales = io::upload(s, *host.scales);
    a.view.scales = a.scales->tensor();
  }
  if (host.biases) {
    a.biases = io::upload(s, *host.biases);
    a.view.biases = a.biases->tensor();
  }
  if (host.bias) {
    a.bias = io::upload(s, *host.bias);
    a.view.bias = a.bias->tensor();
  }
  return a;
}

}  // namespace mlxn::io
