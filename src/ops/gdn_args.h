#pragma once
// Argument structs of the gdn family (conv, gates, delta rule and its chunk stages).
#include <cstdint>

#include "ops/validate.h"

namespace mlxn::detail {

// A [B, T, heads, dim] tensor with the last dim contiguous and B, T collapsed into one
// uniformly strided token axis: element (token, head, i) is at
// data + token * token_stride + head * head_stride + i (elements).
struct HeadView {
  void* data = nullptr;
  DType dtype = DType::f32;
  int64_t tokens = 0, heads = 0, dim = 0;
  int64_t token_stride = 0, head_stride = 0;
};

// Sequence layout shared by every op of the family: B batch rows of T tokens, or (with
// cu) N sequences back to back in one row of T tokens. Offsets given on a device the host
// cannot read are clamped into [0, T] by the kernels.
struct SeqLayout {
  int64_t B = 0, T = 0, N = 0;  // N = B without cu
  const int32_t* cu = nullptr;  // [N + 1] or null
};

struct SsmConvArgs {
  RowView x, out;                // [B * T, C]
  const void* weight = nullptr;  // [C, W]
  DType weight_dtype = DType::f32;
  const void* bias = nullptr;  // [C] or null
  DType bias_dtype = DType::f32;
  const void* state_in = nullptr;  // [N, W - 1, C] x's dtype, or null (zeros)
  void* state_out = nullptr;       // [N, W - 1, C] or null; may equal state_in
  SeqLayout seq;
  int64_t C = 0;
  int W = 0;
  bool silu = true;
};

struct SsmConvStepArgs {
  RowView x, out;         // [B, C]
  void* state = nullptr;  // [B, W - 1, C], in place
  const void* weight = nullptr;
  DType weight_dtype = DType::f32;
  const void* bias = nullptr;
  DType bias_dtype = DType::f32;
  int64_t B = 0, C = 0;
  int W = 0;
  bool silu = true;
};

struct GdnGateArgs {
  RowView a, b, g, beta;        // [rows, H]
  const void* A_log = nullptr;  // [H]
  DType A_log_dtype = DType::f32;
  const void* dt_bias = nullptr;  // [H]
  DType dt_bias_dtype = DType::f32;
};

// The delta rule, token-sequential or chunked.
struct GdnArgs {
  HeadView q, k, v, out;      // q, k: [B*T, Hk, K]; v, out: [B*T, H, V]
  RowView g, beta;            // [B*T, H]; g f32
  const float* h0 = nullptr;  // [N, H, K, V] or null
  float* ht = nullptr;        // [N, H, K, V] or null; may equal h0
  SeqLayout seq;
  int64_t Hk = 0, H = 0, K = 0, V = 0;
  float scale = 1.f;
  bool l2_norm_qk = false;
  float l2_eps = 1e-6f;
};

// One struct for every chunk stage; each stage reads and writes the fields its op names.
struct GdnStageArgs {
  HeadView q, k, v, w, u, v_new, out;  // per-token [B*T, heads, dim]
  RowView g, g_cum, beta;              // [B*T, H]
  float* A = nullptr;                  // [B*T, H, 64] f32 (kkt output)
  const float* A_in = nullptr;         // [B*T, H, 64] f32 (solve input, wu's Ai)
  float* h = nullptr;                  // [B, slots, H, K, V] f32
  const float* h0 = nullptr;
  float* ht = nullptr;
  SeqLayout seq;
  int64_t slots = 0;  // chunk slots per batch row
  int64_t Hk = 0, H = 0, K = 0, V = 0;
  float scale = 1.f;
};

inline constexpr int64_t kChunk = 64;

}  // namespace mlxn::detail
