#pragma once
// Gated DeltaNet: the linear-attention layer of Qwen3-Next / Qwen3.5, with its causal conv
// and gates. Layouts follow FLA and transformers, so weights and references line up:
//   q, k: [B, T, Hk, K]   v, out: [B, T, H, V]   g (log decay, <= 0): [B, T, H] f32
//   beta: [B, T, H]       state: [N, H, K, V] f32
// H % Hk == 0 and value head h reads key head h / (H / Hk). N is B, or the number of
// sequences when cu_seqlens is given (then B == 1 and the sequences lie back to back in T).
// cu_seqlens values are checked when the tensor is on the CPU; on a GPU they are not read
// back (no synchronisation): malformed offsets give wrong numbers, never a bad access.
//
// Per token t of a sequence, with S the [K, V] state of one value head:
//   S = S * exp(g_t);  delta = beta_t * (v_t - S^T k_t);  S = S + k_t delta^T;  o_t = S^T (scale q_t)
// gdn_recurrent runs exactly this; gdn_chunk computes the same thing 64 tokens at a time;
// gdn_forward picks one of the two. q/k/v are f32, f16 or bf16 (one dtype for all three and
// the output); g and the state are f32; beta is f32 or q's dtype. The CPU takes any K and V;
// CUDA takes K and V in {64, 128, 256}.
#include <cstdint>
#include <optional>

#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

// ---- causal depthwise conv1d + SiLU -------------------------------------------------------
// x, out: [B, T, C] (rows of C contiguous, token rows uniformly strided); weight [C, W], W in
// 2..8, f32 or x's dtype. The conv state of a sequence is the W-1 inputs before its first
// token, [N, W-1, C] in x's dtype (token-major, like x).
struct SsmConvOptions {
  std::optional<Tensor> bias;        // [C], f32 or x's dtype
  std::optional<Tensor> state_in;    // [N, W-1, C]; zeros when absent
  std::optional<Tensor> state_out;   // [N, W-1, C]; receives the last W-1 inputs; may be state_in itself
  std::optional<Tensor> cu_seqlens;  // i32 [N+1]; B must be 1
  bool silu = true;
};
// out[b, t, c] = silu(bias[c] + sum_j weight[c, j] * x[b, t - (W-1) + j, c]), inputs before a
// sequence's first token taken from its state.
void ssm_conv(Session& s, const Tensor& x, const Tensor& weight, const Tensor& out, const SsmConvOptions& o = {});

struct SsmConvStepOptions {
  std::optional<Tensor> bias;  // [C], f32 or x's dtype
  bool silu = true;
};
// One decode token per sequence. x, out: [B, C] or [B, 1, C]; state [B, W-1, C] in x's dtype,
// updated in place (shifted by one, x appended).
void ssm_conv_step(Session& s, const Tensor& x, const Tensor& weight, const Tensor& state, const Tensor& out,
                   const SsmConvStepOptions& o = {});

// ---- gates --------------------------------------------------------------------------------
// g = -exp(A_log[h]) * softplus(a + dt_bias[h])  (f32);  beta = sigmoid(b)
// a, b: [..., H] of one float dtype (last dim contiguous, rows uniformly strided: slices of a
// projection are fine); A_log, dt_bias: [H], f32 or a's dtype; g: like a, f32; beta: like a,
// f32 or a's dtype. softplus(x) = x for x > 20, as in PyTorch.
void gdn_gate(Session& s, const Tensor& a, const Tensor& b, const Tensor& A_log, const Tensor& dt_bias, const Tensor& g,
              const Tensor& beta);

// ---- the delta rule -----------------------------------------------------------------------
struct GdnOptions {
  std::optional<float> scale;  // multiplies q; default 1/sqrt(K)
  bool l2_norm_qk = false;     // q, k := x / sqrt(sum(x^2) + l2_eps) per head vector
  float l2_eps = 1e-6f;
  std::optional<Tensor> initial_state;  // [N, H, K, V] f32; zeros when absent
  std::optional<Tensor> final_state;    // [N, H, K, V] f32, written when given; may be initial_state
  std::optional<Tensor> cu_seqlens;     // i32 [N+1] sequence offsets into T; B must be 1
};

// Token-sequential form: decode steps and short prompts.
void gdn_recurrent(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                   const Tensor& out, const GdnOptions& o = {});
// Chunked form (64 tokens per chunk): prefill.
void gdn_chunk(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
               const Tensor& out, const GdnOptions& o = {});
// Picks gdn_recurrent for short sequences and gdn_chunk otherwise.
void gdn_forward(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                 const Tensor& out, const GdnOptions& o = {});

struct GdnResult {
  Array out;          // [B, T, H, V] like v
  Array final_state;  // [N, H, K, V] f32 (empty unless asked for)
};
// Allocating form: (o, final_state) = gdn_forward(q, k, v, g, beta). o.final_state, if set, is
// ignored: the final state is returned when return_final_state.
GdnResult gdn_forward(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                      const Tensor& beta, const GdnOptions& o = {}, bool return_final_state = true);

// ---- the stages of gdn_chunk, each callable alone -----------------------------------------
// Chunks are cut from the start of each sequence: chunk c of a sequence holds its tokens
// [64c, 64c + 64). Per-token stage tensors are [B, T, H, ...]; per-chunk ones have a chunk
// axis of gdn_chunk_slots(T, N) slots: ceil(T/64) per batch element without cu_seqlens; with
// cu_seqlens, chunk c of sequence i lives in slot i + cu[i] / 64 + c (slots no chunk maps to
// are left unwritten). Stages expect q and k already normalised if they should be (l2_norm).
inline constexpr int kGdnChunkSize = 64;
int64_t gdn_chunk_slots(int64_t T, int64_t num_seqs, bool varlen);

// 1. g_cum: [B, T, H] f32, the inclusive cumulative sum of g within each chunk.
void gdn_chunk_cumsum(Session& s, const Tensor& g, const Tensor& g_cum,
                      const std::optional<Tensor>& cu_seqlens = std::nullopt);
// 2. A: [B, T, H, 64] f32. For token t = c0 + i of the chunk starting at c0 and j < i:
//    A[t, j] = beta_t * (k_t . k_{c0+j}) * exp(g_cum_t - g_cum_{c0+j}); every other entry 0.
void gdn_chunk_kkt(Session& s, const Tensor& k, const Tensor& beta, const Tensor& g_cum, const Tensor& A,
                   const std::optional<Tensor>& cu_seqlens = std::nullopt);
// 3. Ai: [B, T, H, 64] f32, (I + A)^-1 of each chunk (lower triangular, unit diagonal).
void gdn_chunk_solve(Session& s, const Tensor& A, const Tensor& Ai,
                     const std::optional<Tensor>& cu_seqlens = std::nullopt);
// 4. w = Ai (beta exp(g_cum) k): [B, T, H, K]; u = Ai (beta v): [B, T, H, V]. w and u share
//    one dtype, f32 or q's dtype.
void gdn_chunk_wu(Session& s, const Tensor& k, const Tensor& v, const Tensor& beta, const Tensor& g_cum,
                  const Tensor& Ai, const Tensor& w, const Tensor& u,
                  const std::optional<Tensor>& cu_seqlens = std::nullopt);

struct GdnStateOptions {
  std::optional<Tensor> initial_state;  // [N, H, K, V] f32; zeros when absent
  std::optional<Tensor> final_state;    // [N, H, K, V] f32; may be initial_state
  std::optional<Tensor> cu_seqlens;
};
// 5. Inter-chunk scan. h: [B, slots, H, K, V] f32, the state before each chunk;
//    v_new = u - w h: [B, T, H, V] like u. Per chunk: h' = exp(G) h + k^T ((v_new) * exp(G - g_cum)),
//    G the chunk's last g_cum.
void gdn_chunk_state(Session& s, const Tensor& k, const Tensor& w, const Tensor& u, const Tensor& g_cum,
                     const Tensor& h, const Tensor& v_new, const GdnStateOptions& o = {});
// 6. out = scale * (exp(g_cum) * (q h) + causal(q k^T * exp(g_cum_i - g_cum_j)) v_new), the
//    causal mask including the diagonal. out: [B, T, H, V] like q.
void gdn_chunk_output(Session& s, const Tensor& q, const Tensor& k, const Tensor& v_new, const Tensor& h,
                      const Tensor& g_cum, const Tensor& out, std::optional<float> scale = std::nullopt,
                      const std::optional<Tensor>& cu_seqlens = std::nullopt);

}  // namespace mlxn
