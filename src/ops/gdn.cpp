// Frontend of the delta rule: gdn_recurrent, gdn_chunk, gdn_forward. Validation once, then
// dispatch of one GdnArgs.
#include <cmath>

#include "mlxn/ops/gdn.h"
#include "ops/gdn_args.h"
#include "ops/gdn_validate.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

struct Inputs {
  const Tensor &q, &k, &v, &g, &beta, &out;
};

GdnArgs make_args(const char* op, Session& s, const Inputs& in, const GdnOptions& o) {
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"q", &in.q}, {"k", &in.k}, {"v", &in.v}}) {
    check_device(op, s, name, *t);
    if (t->ndim() != 4) throw_error<InvalidArgument>(op, name, " has shape ", t->shape().str(), ", expected 4 dims");
  }
  const int64_t B = in.q.dim(0), T = in.q.dim(1), Hk = in.q.dim(2), K = in.q.dim(3);
  const int64_t H = in.v.dim(2), V = in.v.dim(3);
  GdnArgs a;
  a.q = as_heads(op, s, "q", in.q, B, T, Hk, K);
  a.k = as_heads(op, s, "k", in.k, B, T, Hk, K);
  a.v = as_heads(op, s, "v", in.v, B, T, H, V);
  a.out = as_heads(op, s, "out", in.out, B, T, H, V, /*output=*/true);
  check_same_dtype(op, "q", in.q, "k", in.k);
  check_same_dtype(op, "q", in.q, "v", in.v);
  check_same_dtype(op, "q", in.q, "out", in.out);
  if (Hk <= 0 || H <= 0 || H % Hk != 0)
    throw_error<InvalidArgument>(op, "value heads H = ", H, " is not a multiple of key heads Hk = ", Hk);
  if (K <= 0 || V <= 0) throw_error<InvalidArgument>(op, "head dims K = ", K, ", V = ", V, " must be positive");
  a.g = as_token_rows(op, s, "g", in.g, B, T, H);
  if (in.g.dtype() != DType::f32)
    throw_error<InvalidArgument>(op, "g has dtype ", name(in.g.dtype()), ", expected f32");
  a.beta = as_token_rows(op, s, "beta", in.beta, B, T, H);
  if (in.beta.dtype() != DType::f32 && in.beta.dtype() != in.q.dtype())
    throw_error<InvalidArgument>(op, "beta has dtype ", name(in.beta.dtype()), ", expected f32 or ",
                                 name(in.q.dtype()));
  a.seq = seq_layout(op, s, B, T, o.cu_seqlens);
  a.Hk = Hk;
  a.H = H;
  a.K = K;
  a.V = V;
  check_cuda_head_dims(op, s, K, V);
  const float scale = o.scale ? *o.scale : float(1.0 / std::sqrt(double(K)));
  if (!std::isfinite(scale)) throw_error<InvalidArgument>(op, "scale must be finite, got ", scale);
  a.scale = scale;
  a.l2_norm_qk = o.l2_norm_qk;
  check_eps(op, o.l2_eps);
  a.l2_eps = o.l2_eps;
  if (o.initial_state) a.h0 = state_ptr(op, s, "initial_state", *o.initial_state, a.seq.N, H, K, V);
  if (o.final_state) {
    a.ht = const_cast<float*>(state_ptr(op, s, "final_state", *o.final_state, a.seq.N, H, K, V));
    if (o.initial_state) check_no_overlap(op, "final_state", *o.final_state, "initial_state", *o.initial_state, true);
    for (auto [name, t] : {std::pair<const char*, const Tensor*>{"q", &in.q},
                           {"k", &in.k},
                           {"v", &in.v},
                           {"g", &in.g},
                           {"beta", &in.beta},
                           {"out", &in.out}})
      check_no_overlap(op, "final_state", *o.final_state, name, *t, false);
  }
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"q", &in.q},
                         {"k", &in.k},
                         {"v", &in.v},
                         {"g", &in.g},
                         {"beta", &in.beta}})
    check_no_overlap(op, "out", in.out, name, *t, false);
  if (o.initial_state) check_no_overlap(op, "out", in.out, "initial_state", *o.initial_state, false);
  return a;
}

void run(const char* op, Session& s, const GdnArgs& a) {
  if (a.seq.N == 0) return;
  if (a.seq.B * a.seq.T == 0 && !a.ht) return;  // nothing to compute and no state to hand back
  dispatch(op, s, a.q.dtype, a);
}

// Average tokens per sequence below which the token-sequential form is the faster one.
constexpr int64_t kRecurrentMaxTokens = 64;

}  // namespace

void gdn_recurrent(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                   const Tensor& out, const GdnOptions& o) {
  run("gdn_recurrent", s, make_args("gdn_recurrent", s, {q, k, v, g, beta, out}, o));
}

void gdn_chunk(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
               const Tensor& out, const GdnOptions& o) {
  run("gdn_chunk", s, make_args("gdn_chunk", s, {q, k, v, g, beta, out}, o));
}

void gdn_forward(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                 const Tensor& out, const GdnOptions& o) {
  const GdnArgs a = make_args("gdn_forward", s, {q, k, v, g, beta, out}, o);
  const bool short_seqs = a.seq.B * a.seq.T < kRecurrentMaxTokens * a.seq.N;
  run(short_seqs ? "gdn_recurrent" : "gdn_chunk", s, a);
}

GdnResult gdn_forward(Session& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                      const Tensor& beta, const GdnOptions& o, bool return_final_state) {
  const char* op = "gdn_forward";
  check_device(op, s, "v", v);
  check_device(op, s, "q", q);
  if (v.ndim() != 4 || q.ndim() != 4)
    throw_error<InvalidArgument>(op, "q and v must be [B, T, heads, dim], got ", q.shape().str(), " and ",
                                 v.shape().str());
  GdnResult r;
  r.out = s.empty(v.shape(), v.dtype());
  GdnOptions opts = o;
  opts.final_state.reset();
  if (return_final_state) {
    const int64_t N = o.cu_seqlens ? o.cu_seqlens->dim(0) - 1 : v.dim(0);
    if (N < 0) throw_error<InvalidArgument>(op, "cu_seqlens must have at least one element");
    r.final_state = s.empty({N, v.dim(2), q.dim(3), v.dim(3)}, DType::f32);
    opts.final_state = r.final_state.tensor();
  }
  gdn_forward(s, q, k, v, g, beta, r.out, opts);
  return r;
}

}  // namespace mlxn
