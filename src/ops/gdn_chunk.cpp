// Frontend of the chunk stages of the delta rule (gdn_chunk_cumsum ... gdn_chunk_output).
#include <cmath>

#include "mlxn/ops/gdn.h"
#include "ops/gdn_args.h"
#include "ops/gdn_validate.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

int64_t gdn_chunk_slots(int64_t T, int64_t num_seqs, bool varlen) {
  if (T <= 0) return 0;
  const int64_t c = (T + kChunk - 1) / kChunk;
  return varlen ? c + num_seqs - 1 : c;
}

namespace {

// [B, T, H] f32 (g, g_cum) of the stage.
RowView f32_rows(const char* op, Session& s, const char* name, const Tensor& t, int64_t B, int64_t T, int64_t H) {
  RowView r = as_token_rows(op, s, name, t, B, T, H);
  if (t.dtype() != DType::f32)
    throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(t.dtype()), ", expected f32");
  return r;
}

RowView beta_rows(const char* op, Session& s, const Tensor& beta, int64_t B, int64_t T, int64_t H, DType qdt) {
  RowView r = as_token_rows(op, s, "beta", beta, B, T, H);
  if (beta.dtype() != DType::f32 && beta.dtype() != qdt)
    throw_error<InvalidArgument>(op, "beta has dtype ", name(beta.dtype()), ", expected f32 or ", name(qdt));
  return r;
}

// A / Ai: contiguous [B, T, H, 64] f32.
void check_chunk_matrix(const char* op, Session& s, const char* name, const Tensor& t, int64_t B, int64_t T,
                        int64_t H) {
  check_device(op, s, name, t);
  if (t.dtype() != DType::f32)
    throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(t.dtype()), ", expected f32");
  check_shape(op, name, t, {B, T, H, kChunk});
  check_contiguous(op, name, t);
}

// Dims of a stage from the key tensor [B, T, Hk, K] and the head count H.
void key_dims(const char* op, const Tensor& k, int64_t H, GdnStageArgs& a) {
  if (k.ndim() != 4) throw_error<InvalidArgument>(op, "k has shape ", k.shape().str(), ", expected [B, T, Hk, K]");
  a.Hk = k.dim(2);
  a.K = k.dim(3);
  a.H = H;
  if (a.Hk <= 0 || H <= 0 || H % a.Hk != 0)
    throw_error<InvalidArgument>(op, "value heads H = ", H, " is not a multiple of key heads Hk = ", a.Hk);
}

// H from a [B, T, H] tensor.
int64_t heads_of(const char* op, const char* name, const Tensor& t) {
  if (t.ndim() != 3) throw_error<InvalidArgument>(op, name, " has shape ", t.shape().str(), ", expected [B, T, H]");
  return t.dim(2);
}

void run(const char* op, Session& s, DType dt, const GdnStageArgs& a) {
  if (a.seq.N == 0) return;
  if (a.seq.B * a.seq.T == 0 && !a.ht) return;
  dispatch(op, s, dt, a);
}

// w/u/v_new: f32 or q's dtype, one dtype for the pair.
void check_inter_dtype(const char* op, const char* name, const Tensor& t, DType qdt) {
  if (t.dtype() != DType::f32 && t.dtype() != qdt)
    throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(t.dtype()), ", expected f32 or ", mlxn::name(qdt));
}

}  // namespace

void gdn_chunk_cumsum(Session& s, const Tensor& g, const Tensor& g_cum, const std::optional<Tensor>& cu) {
  const char* op = "gdn_chunk_cumsum";
  GdnStageArgs a;
  const int64_t H = heads_of(op, "g", g);
  const int64_t B = g.dim(0), T = g.dim(1);
  a.g = f32_rows(op, s, "g", g, B, T, H);
  a.g_cum = f32_rows(op, s, "g_cum", g_cum, B, T, H);
  check_no_overlap(op, "g_cum", g_cum, "g", g, true);
  a.seq = seq_layout(op, s, B, T, cu);
  a.H = H;
  run(op, s, DType::f32, a);
}

void gdn_chunk_kkt(Session& s, const Tensor& k, const Tensor& beta, const Tensor& g_cum, const Tensor& A,
                   const std::optional<Tensor>& cu) {
  const char* op = "gdn_chunk_kkt";
  GdnStageArgs a;
  const int64_t H = heads_of(op, "g_cum", g_cum);
  key_dims(op, k, H, a);
  const int64_t B = k.dim(0), T = k.dim(1);
  a.k = as_heads(op, s, "k", k, B, T, a.Hk, a.K);
  a.beta = beta_rows(op, s, beta, B, T, H, k.dtype());
  a.g_cum = f32_rows(op, s, "g_cum", g_cum, B, T, H);
  check_chunk_matrix(op, s, "A", A, B, T, H);
  check_cuda_head_dims(op, s, a.K, a.K);
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"k", &k}, {"beta", &beta}, {"g_cum", &g_cum}})
    check_no_overlap(op, "A", A, name, *t, false);
  a.A = A.data_as<float>();
  a.seq = seq_layout(op, s, B, T, cu);
  run(op, s, k.dtype(), a);
}

void gdn_chunk_solve(Session& s, const Tensor& A, const Tensor& Ai, const std::optional<Tensor>& cu) {
  const char* op = "gdn_chunk_solve";
  if (A.ndim() != 4) throw_error<InvalidArgument>(op, "A has shape ", A.shape().str(), ", expected [B, T, H, 64]");
  const int64_t B = A.dim(0), T = A.dim(1), H = A.dim(2);
  check_chunk_matrix(op, s, "A", A, B, T, H);
  check_chunk_matrix(op, s, "Ai", Ai, B, T, H);
  check_no_overlap(op, "Ai", Ai, "A", A, false);
  GdnStageArgs a;
  a.A_in = A.data_as<const float>();
  a.A = Ai.data_as<float>();
  a.H = H;
  a.seq = seq_layout(op, s, B, T, cu);
  run(op, s, DType::f32, a);
}

void gdn_chunk_wu(Session& s, const Tensor& k, const Tensor& v, const Tensor& beta, const Tensor& g_cum,
                  const Tensor& Ai, const Tensor& w, const Tensor& u, const std::optional<Tensor>& cu) {
  const char* op = "gdn_chunk_wu";
  GdnStageArgs a;
  if (v.ndim() != 4) throw_error<InvalidArgument>(op, "v has shape ", v.shape().str(), ", expected [B, T, H, V]");
  key_dims(op, k, v.dim(2), a);
  const int64_t B = k.dim(0), T = k.dim(1), H = a.H;
  a.V = v.dim(3);
  a.k = as_heads(op, s, "k", k, B, T, a.Hk, a.K);
  a.v = as_heads(op, s, "v", v, B, T, H, a.V);
  check_same_dtype(op, "k", k, "v", v);
  a.beta = beta_rows(op, s, beta, B, T, H, k.dtype());
  a.g_cum = f32_rows(op, s, "g_cum", g_cum, B, T, H);
  check_chunk_matrix(op, s, "Ai", Ai, B, T, H);
  a.A_in = Ai.data_as<const float>();
  a.w = as_heads(op, s, "w", w, B, T, H, a.K, true);
  a.u = as_heads(op, s, "u", u, B, T, H, a.V, true);
  check_inter_dtype(op, "w", w, k.dtype());
  check_same_dtype(op, "w", w, "u", u);
  check_cuda_head_dims(op, s, a.K, a.V);
  for (auto [oname, ot] : {std::pair<const char*, const Tensor*>{"w", &w}, {"u", &u}})
    for (auto [name, t] :
         {std::pair<const char*, const Tensor*>{"k", &k}, {"v", &v}, {"beta", &beta}, {"g_cum", &g_cum}, {"Ai", &Ai}})
      check_no_overlap(op, oname, *ot, name, *t, false);
  check_no_overlap(op, "u", u, "w", w, false);
  a.seq = seq_layout(op, s, B, T, cu);
  run(op, s, k.dtype(), a);
}

void gdn_chunk_state(Session& s, const Tensor& k, const Tensor& w, const Tensor& u, const Tensor& g_cum,
                     const Tensor& h, const Tensor& v_new, const GdnStateOptions& o) {
  const char* op = "gdn_chunk_state";
  GdnStageArgs a;
  if (u.ndim() != 4) throw_error<InvalidArgument>(op, "u has shape ", u.shape().str(), ", expected [B, T, H, V]");
  key_dims(op, k, u.dim(2), a);
  const int64_t B = k.dim(0), T = k.dim(1), H = a.H;
  a.V = u.dim(3);
  a.k = as_heads(op, s, "k", k, B, T, a.Hk, a.K);
  a.w = as_heads(op, s, "w", w, B, T, H, a.K);
  a.u = as_heads(op, s, "u", u, B, T, H, a.V);
  a.v_new = as_heads(op, s, "v_new", v_new, B, T, H, a.V, true);
  check_inter_dtype(op, "w", w, k.dtype());
  check_same_dtype(op, "w", w, "u", u);
  check_same_dtype(op, "w", w, "v_new", v_new);
  a.g_cum = f32_rows(op, s, "g_cum", g_cum, B, T, H);
  a.seq = seq_layout(op, s, B, T, o.cu_seqlens);
  a.slots = gdn_chunk_slots(T, a.seq.N, a.seq.cu != nullptr);
  check_device(op, s, "h", h);
  if (h.dtype() != DType::f32) throw_error<InvalidArgument>(op, "h has dtype ", name(h.dtype()), ", expected f32");
  check_shape(op, "h", h, {B, a.slots, H, a.K, a.V});
  check_contiguous(op, "h", h);
  a.h = h.data_as<float>();
  check_cuda_head_dims(op, s, a.K, a.V);
  if (o.initial_state) a.h0 = state_ptr(op, s, "initial_state", *o.initial_state, a.seq.N, H, a.K, a.V);
  if (o.final_state) {
    a.ht = const_cast<float*>(state_ptr(op, s, "final_state", *o.final_state, a.seq.N, H, a.K, a.V));
    if (o.initial_state) check_no_overlap(op, "final_state", *o.final_state, "initial_state", *o.initial_state, true);
  }
  for (auto [oname, ot] : {std::pair<const char*, const Tensor*>{"h", &h}, {"v_new", &v_new}}) {
    for (auto [name, t] : {std::pair<const char*, const Tensor*>{"k", &k}, {"w", &w}, {"u", &u}, {"g_cum", &g_cum}})
      check_no_overlap(op, oname, *ot, name, *t, false);
    if (o.initial_state) check_no_overlap(op, oname, *ot, "initial_state", *o.initial_state, false);
    if (o.final_state) check_no_overlap(op, oname, *ot, "final_state", *o.final_state, false);
  }
  check_no_overlap(op, "v_new", v_new, "h", h, false);
  run(op, s, k.dtype(), a);
}

void gdn_chunk_output(Session& s, const Tensor& q, const Tensor& k, const Tensor& v_new, const Tensor& h,
                      const Tensor& g_cum, const Tensor& out, std::optional<float> scale,
                      const std::optional<Tensor>& cu) {
  const char* op = "gdn_chunk_output";
  GdnStageArgs a;
  if (v_new.ndim() != 4)
    throw_error<InvalidArgument>(op, "v_new has shape ", v_new.shape().str(), ", expected [B, T, H, V]");
  key_dims(op, k, v_new.dim(2), a);
  const int64_t B = k.dim(0), T = k.dim(1), H = a.H;
  a.V = v_new.dim(3);
  a.q = as_heads(op, s, "q", q, B, T, a.Hk, a.K);
  a.k = as_heads(op, s, "k", k, B, T, a.Hk, a.K);
  a.v_new = as_heads(op, s, "v_new", v_new, B, T, H, a.V);
  a.out = as_heads(op, s, "out", out, B, T, H, a.V, true);
  check_same_dtype(op, "q", q, "k", k);
  check_same_dtype(op, "q", q, "out", out);
  check_inter_dtype(op, "v_new", v_new, q.dtype());
  a.g_cum = f32_rows(op, s, "g_cum", g_cum, B, T, H);
  a.seq = seq_layout(op, s, B, T, cu);
  a.slots = gdn_chunk_slots(T, a.seq.N, a.seq.cu != nullptr);
  check_device(op, s, "h", h);
  if (h.dtype() != DType::f32) throw_error<InvalidArgument>(op, "h has dtype ", name(h.dtype()), ", expected f32");
  check_shape(op, "h", h, {B, a.slots, H, a.K, a.V});
  check_contiguous(op, "h", h);
  a.h = h.data_as<float>();
  check_cuda_head_dims(op, s, a.K, a.V);
  a.scale = scale ? *scale : float(1.0 / std::sqrt(double(a.K)));
  if (!std::isfinite(a.scale)) throw_error<InvalidArgument>(op, "scale must be finite, got ", a.scale);
  for (auto [name, t] :
       {std::pair<const char*, const Tensor*>{"q", &q}, {"k", &k}, {"v_new", &v_new}, {"h", &h}, {"g_cum", &g_cum}})
    check_no_overlap(op, "out", out, name, *t, false);
  run(op, s, q.dtype(), a);
}

}  // namespace mlxn
