#pragma once
// The one argument struct behind every MLX affine quantization op.
#include <string>

#include "mlxn/ops/quant_mlx.h"
#include "ops/dispatch_int.h"
#include "ops/validate.h"

namespace mlxn::detail {

// A quantized matrix (or a stack of E of them), contiguous.
struct MlxQuantMatrix {
  void* packed = nullptr;  // [E, N, K*bits/32] u32
  void* scales = nullptr;  // [E, N, K/gs]
  void* biases = nullptr;  // [E, N, K/gs]
  DType scale_dtype = DType::bf16;
  int64_t experts = 1, rows = 0, cols = 0;  // E, N, K
  int bits = 4, group_size = 64;
  int64_t words_per_row() const { return cols * bits / 32; }
  int64_t groups_per_row() const { return cols / group_size; }
};

struct QuantMlxArgs {
  MlxQuantMatrix w;
  // quantize: x is the float weight [N, K]; dequantize: out is [N, K];
  // matmul: x [M, K], out [M, N]; matmul_id: x [T or T*top_k rows, K], out [T*top_k, N];
  // embedding: out [T, D].
  RowView x, out;
  const void* ids = nullptr;  // matmul_id: [T, top_k]; embedding: [T]
  DType ids_dtype = DType::i32;
  int64_t tokens = 0, top_k = 1;
  bool x_per_slot = false;  // matmul_id: x is [T, top_k, K]
  float scale = 1.f;        // embedding
};

// Checks packed/scales/biases as one matrix (lead 0: [N, ...]) or a stack of them (lead 1:
// [E, N, ...]) with `k` columns (k < 0: derived from packed), and returns the view. `name`
// prefixes the arrays' names in errors ("gate " -> "gate packed").
MlxQuantMatrix check_quant_matrix(const char* op, Session& s, const Tensor& packed, const Tensor& scales,
                                  const Tensor& biases, MlxQuant q, int lead, int64_t k, const std::string& name = "");

// Calls f.template operator()<BITS>() for the bit width (2, 3, 4, 5, 6 or 8): the one place
// a run-time width becomes a compile-time one, for every backend.
template <class F>
void dispatch_bits(int bits, F&& f) {
  if (!dispatch_int<2, 3, 4, 5, 6, 8>(bits, f))
    throw_error<InvalidArgument>("quant_mlx", "bits ", bits, " is not supported");
}

}  // namespace mlxn::detail
