#pragma once
// A safetensors checkpoint (one file or shards) with its config.json, answering the question
// model code asks: "give me linear layer X" - dense, or MLX-affine quantized.
//
// MLX names: a quantized module `m` (a Linear, an Embedding, or stacked experts such as
// `...switch_mlp.gate_proj` with weight [E, N, K*bits/32]) stores
//   m.weight  u32  [..., N, K * bits / 32]   values packed little-end first
//   m.scales  f32/f16/bf16 [..., N, K / group_size]
//   m.biases  same dtype and shape as scales (absent in the mxfp*/nvfp4 modes)
//   m.bias    optional layer bias [..., N]
// A module is quantized exactly when `m.scales` exists (mlx-lm's rule, which also covers
// older checkpoints that leave some layers dense); its bits and group size come from the
// config's quantization block, including per-module overrides.
#include <optional>
#include <string>
#include <string_view>

#include "mlxn/io/config.h"
#include "mlxn/io/safetensors.h"
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn::io {

// One linear (or embedding) layer's tensors, as CPU views or, after upload(), device views.
struct LinearWeights {
  std::string module;                // module path, e.g. "model.layers.0.mlp.down_proj"
  std::optional<QuantParams> quant;  // nullopt: dense
  Tensor weight;                     // dense [..., N, K] float, or packed u32 [..., N, K*bits/32]
  std::optional<Tensor> scales;      // quantized: [..., N, K/group_size]
  std::optional<Tensor> biases;      // quantized affine: like scales
  std::optional<Tensor> bias;        // the layer's additive bias [..., N], when present
  int64_t out_features = 0;          // N
  int64_t in_features = 0;           // K (unpacked)

  bool quantized() const { return quant.has_value(); }
  int bits() const { return quant ? quant->bits : 0; }
  int group_size() const { return quant ? quant->group_size : 0; }
};

// LinearWeights whose tensors live in arrays owned here (one upload of each tensor).
struct LinearArrays {
  Array weight;
  std::optional<Array> scales, biases, bias;
  LinearWeights view;  // the same layer, its tensors pointing into the arrays above
};
LinearArrays upload(Session& s, const LinearWeights& host);

class Checkpoint {
 public:
  Checkpoint() = default;
  // A directory holding config.json (optional) and safetensors files (see
  // SafetensorsSet::open), or a single .safetensors file.
  static Checkpoint open(const std::string& path);
  Checkpoint(SafetensorsSet tensors, std::optional<Config> config);

  const SafetensorsSet& tensors() const { return tensors_; }
  const std::optional<Config>& config() const { return config_; }
  const std::optional<QuantConfig>& quantization() const { return quant_; }

  bool has(std::string_view tensor_name) const { return tensors_.contains(tensor_name); }
  Tensor tensor(std::string_view tensor_name) const { return tensors_.tensor(tensor_name); }
  Array upload(Session& s, std::string_view tensor_name) const { return tensors_.upload(s, tensor_name); }

  // Whether `module` is stored quantized (its `.scales` exist).
  bool is_quantized(std::string_view module) const;
  // The layer `module` (a trailing ".weight" is accepted and dropped). Checks everything
  // that model code would otherwise trip over and raises FormatError naming the module: a
  // missing weight, scales without a quantization config or against a `false` override, an
  // override demanding quantization where no scales exist, wrong dtypes, and shapes that do
  // not agree with bits and group size.
  LinearWeights linear(std::string_view module) const;

 private:
  SafetensorsSet tensors_;
  std::optional<Config> config_;
  std::optional<QuantConfig> quant_;
};

}  // namespace mlxn::io
