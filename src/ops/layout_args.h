#pragma once
// Argument structs of the layout family. Every copy-like op (copy, transpose, permute_021,
// slice, concat, repeat_heads) is planned by the frontend into one StridedCopyArgs: the two
// views with size-1 dims dropped, dims ordered by dst stride and mergeable dims merged, and
// the kind of loop that suits the result.
#include <cstdint>

#include "ops/validate.h"

namespace mlxn::detail {

// Every dtype stored one element per slot: what the byte-moving ops accept.
inline constexpr DTypeSet kPlainTypes{DType::f32, DType::f16, DType::bf16, DType::i8,
                                      DType::u8,  DType::i32, DType::u32,  DType::i64};

enum class CopyKind : int {
  rows,       // the last dim is contiguous in both src and dst (includes one flat run)
  transpose,  // dim ndim-2 is contiguous in src, dim ndim-1 in dst: tiled transpose
  general,    // anything else: per-element index arithmetic
};

struct StridedCopyArgs {
  const void* src = nullptr;
  void* dst = nullptr;
  DType dtype = DType::u8;
  int elem_bytes = 1;
  CopyKind kind = CopyKind::general;
  int ndim = 0;  // >= 1; dims in dst order, the last one fastest in dst
  int64_t shape[kMaxDims] = {};
  int64_t src_stride[kMaxDims] = {};  // elements, may be 0 (broadcast) or negative
  int64_t dst_stride[kMaxDims] = {};  // elements
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
};

// embedding and gather_rows: out[m, :] = src[idx[m], :] (* scale).
struct GatherArgs {
  const void* src = nullptr;
  int64_t src_rows = 0;        // valid indices are [0, src_rows)
  int64_t src_row_stride = 0;  // elements
  const void* idx = nullptr;
  bool idx_signed = true;  // i32 (true) or u32 (false)
  int64_t idx_stride = 1;  // elements
  void* out = nullptr;
  int64_t out_row_stride = 0;  // elements
  int64_t rows = 0;            // M (or T): number of indices
  int64_t cols = 0;            // D
  DType dtype = DType::f32;
  int elem_bytes = 4;
  float scale = 1.f;  // applied only when != 1 (float dtypes)
};

// kv_cache_write: cache[h, row(t), :] = convert(src[t, h, :]) for t in [first_token, tokens).
struct KvWriteArgs {
  void* cache = nullptr;
  DType cache_dtype = DType::f32;
  int64_t heads = 0, capacity = 0, dim = 0;
  int64_t cache_head_stride = 0, cache_row_stride = 0;  // elements
  const void* src = nullptr;
  DType src_dtype = DType::f32;
  int64_t src_token_stride = 0, src_head_stride = 0;  // elements
  int64_t tokens = 0;                                 // T
  int64_t first_token = 0;             // ring mode with T > capacity writes only the last capacity tokens
  int64_t start = 0;                   // row of token 0 when positions is null
  const int32_t* positions = nullptr;  // [T], stride positions_stride
  int64_t positions_stride = 1;
  bool ring = false;
};

}  // namespace mlxn::detail
