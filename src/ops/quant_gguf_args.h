#pragma once
// Argument structs of the GGUF quant family, and the dtype -> block-traits dispatch that the
// CPU and CUDA backends share.
#include <vector>

#include "ops/quant_gguf_blocks.h"
#include "ops/validate.h"

namespace mlxn::detail {

inline constexpr DTypeSet kGgufBlockTypes{DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                                          DType::q2_k, DType::q3_k, DType::q4_k, DType::q5_k, DType::q6_k};
// Weights a matmul or embedding accepts: the block types and plain float tensors.
inline constexpr DTypeSet kGgufWeightTypes = kGgufBlockTypes | kFloatTypes;

// Byte offsets of the f16 scale (d, dmin) fields inside one block of a GGUF type: what a
// writer of synthetic blocks (tests, benchmarks) must set to finite values so that random
// bytes elsewhere still make a valid weight.
inline std::vector<int> gguf_f16_scale_offsets(DType t) {
  switch (t) {
    case DType::q4_0:
    case DType::q5_0:
    case DType::q8_0:
      return {0};
    case DType::q4_1:
    case DType::q5_1:
    case DType::q4_k:
    case DType::q5_k:
      return {0, 2};
    case DType::q2_k:
      return {80, 82};
    case DType::q3_k:
      return {108};
    case DType::q6_k:
      return {208};
    default:
      return {};
  }
}

// Calls f.template operator()<B>() with B the quant-traits entry of a weight dtype.
template <class F>
decltype(auto) dispatch_gguf_block(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::q4_0:
      return f.template operator()<gguf::BlockQ4_0>();
    case DType::q4_1:
      return f.template operator()<gguf::BlockQ4_1>();
    case DType::q5_0:
      return f.template operator()<gguf::BlockQ5_0>();
    case DType::q5_1:
      return f.template operator()<gguf::BlockQ5_1>();
    case DType::q8_0:
      return f.template operator()<gguf::BlockQ8_0>();
    case DType::q2_k:
      return f.template operator()<gguf::BlockQ2_K>();
    case DType::q3_k:
      return f.template operator()<gguf::BlockQ3_K>();
    case DType::q4_k:
      return f.template operator()<gguf::BlockQ4_K>();
    case DType::q5_k:
      return f.template operator()<gguf::BlockQ5_K>();
    case DType::q6_k:
      return f.template operator()<gguf::BlockQ6_K>();
    case DType::f32:
      return f.template operator()<gguf::BlockF32>();
    case DType::f16:
      return f.template operator()<gguf::BlockF16>();
    case DType::bf16:
      return f.template operator()<gguf::BlockBF16>();
    default:
      throw_error<Unsupported>(op, "dtype ", name(t), " is not a GGUF weight type");
  }
}

// Bytes of one row of K elements of a weight dtype.
inline int64_t gguf_row_bytes(DType t, int64_t k) {
  const auto& tr = traits(t);
  return k / int64_t(tr.block_elems) * int64_t(tr.block_bytes);
}

// w [rows, K] (any leading dims folded into rows) -> out rows.
struct GgufDequantArgs {
  const void* w = nullptr;
  DType w_dtype = DType::q4_0;
  int64_t rows = 0, k = 0;
  int64_t w_row_bytes = 0;
  RowView out;
};

// One routed product per (token, slot) pair: out row p = x row (x_per_slot ? p : p / top_k)
// times W[e]^T, e = ids[p] (e = 0 and ids null for a plain matmul, where top_k = 1).
struct GgufMatmulArgs {
  RowView x;                // [T or T * top_k, K]
  RowView out;              // [T * top_k, N]
  const void* w = nullptr;  // [E, N, K] contiguous
  DType w_dtype = DType::q4_0;
  int64_t n = 0, k = 0;
  int64_t experts = 1;
  int64_t w_row_bytes = 0;    // bytes of one weight row of K elements
  const void* ids = nullptr;  // [T, top_k] contiguous, null for a plain matmul
  DType ids_dtype = DType::i32;
  int64_t tokens = 0;  // T (M for a plain matmul)
  int64_t top_k = 1;
  bool x_per_slot = false;
};

struct GgufEmbeddingArgs {
  const void* table = nullptr;  // [V, D] contiguous
  DType table_dtype = DType::q4_0;
  int64_t vocab = 0, dim = 0;
  int64_t table_row_bytes = 0;
  const void* ids = nullptr;  // [count] contiguous
  DType ids_dtype = DType::i32;
  int64_t count = 0;
  RowView out;  // [count, D]
  float scale = 1.f;
};

}  // namespace mlxn::detail
