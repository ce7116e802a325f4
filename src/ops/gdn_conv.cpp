// Frontend of the causal conv (ssm_conv, ssm_conv_step) and the gates (gdn_gate).
#include "mlxn/ops/gdn.h"
#include "ops/gdn_args.h"
#include "ops/gdn_validate.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

constexpr int kMinWidth = 2, kMaxWidth = 8;

// weight [C, W] and bias [C]: f32 or x's dtype, contiguous. Returns W.
// Checks the conv weight and bias against x's dtype and C, then fills what the prefill and
// the decode step share: C, W, weight, bias, silu.
template <class Args, class Options>
void set_conv_params(const char* op, Session& s, const Tensor& weight, const Options& o, DType xdt, int64_t C,
                     Args& a) {
  const std::optional<Tensor>& bias = o.bias;
  check_device(op, s, "weight", weight);
  if (weight.dtype() != DType::f32 && weight.dtype() != xdt)
    throw_error<InvalidArgument>(op, "weight has dtype ", name(weight.dtype()), ", expected f32 or ", name(xdt));
  if (weight.ndim() != 2 || weight.dim(0) != C)
    throw_error<InvalidArgument>(op, "weight has shape ", weight.shape().str(), ", expected [", C, ", W]");
  check_contiguous(op, "weight", weight);
  const int64_t W = weight.dim(1);
  if (W < kMinWidth || W > kMaxWidth)
    throw_error<InvalidArgument>(op, "conv width W = ", W, " not supported (", kMinWidth, "..", kMaxWidth, ")");
  if (bias) {
    check_device(op, s, "bias", *bias);
    if (bias->dtype() != DType::f32 && bias->dtype() != xdt)
      throw_error<InvalidArgument>(op, "bias has dtype ", name(bias->dtype()), ", expected f32 or ", name(xdt));
    check_shape(op, "bias", *bias, {C});
    check_contiguous(op, "bias", *bias);
    a.bias = bias->data();
    a.bias_dtype = bias->dtype();
  }
  a.C = C;
  a.W = int(W);
  a.weight = weight.data();
  a.weight_dtype = weight.dtype();
  a.silu = o.silu;
}

void check_conv_state(const char* op, Session& s, const char* name, const Tensor& st, const Tensor& x, int64_t N, int W,
                      int64_t C) {
  check_device(op, s, name, st);
  check_same_dtype(op, "x", x, name, st);
  check_shape(op, name, st, {N, W - 1, C});
  check_contiguous(op, name, st);
}

}  // namespace

void ssm_conv(Session& s, const Tensor& x, const Tensor& weight, const Tensor& out, const SsmConvOptions& o) {
  const char* op = "ssm_conv";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kFloatTypes);
  if (x.ndim() != 3) throw_error<InvalidArgument>(op, "x has shape ", x.shape().str(), ", expected [B, T, C]");
  check_same_dtype(op, "x", x, "out", out);
  check_same_shape(op, "x", x, "out", out);
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2);
  SsmConvArgs a;
  set_conv_params(op, s, weight, o, x.dtype(), C, a);
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  a.seq = seq_layout(op, s, B, T, o.cu_seqlens);
  if (o.state_in) {
    check_conv_state(op, s, "state_in", *o.state_in, x, a.seq.N, a.W, C);
    a.state_in = o.state_in->data();
  }
  if (o.state_out) {
    check_conv_state(op, s, "state_out", *o.state_out, x, a.seq.N, a.W, C);
    a.state_out = o.state_out->data();
    if (o.state_in) check_no_overlap(op, "state_out", *o.state_out, "state_in", *o.state_in, true);
    check_no_overlap(op, "state_out", *o.state_out, "x", x, false);
    check_no_overlap(op, "state_out", *o.state_out, "out", out, false);
    check_no_overlap(op, "state_out", *o.state_out, "weight", weight, false);
  }
  // Each output reads W inputs of its channel from earlier tokens: no aliasing with x.
  check_no_overlap(op, "out", out, "x", x, false);
  check_no_overlap(op, "out", out, "weight", weight, false);
  if (o.state_in) check_no_overlap(op, "out", out, "state_in", *o.state_in, false);
  if (o.bias) check_no_overlap(op, "out", out, "bias", *o.bias, false);
  if (a.seq.N == 0 || C == 0) return;
  if (B * T == 0 && !a.state_out) return;
  dispatch(op, s, x.dtype(), a);
}

void ssm_conv_step(Session& s, const Tensor& x, const Tensor& weight, const Tensor& state, const Tensor& out,
                   const SsmConvStepOptions& o) {
  const char* op = "ssm_conv_step";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kFloatTypes);
  if (x.ndim() != 2 && !(x.ndim() == 3 && x.dim(1) == 1))
    throw_error<InvalidArgument>(op, "x has shape ", x.shape().str(), ", expected [B, C] or [B, 1, C]");
  check_same_dtype(op, "x", x, "out", out);
  check_same_shape(op, "x", x, "out", out);
  const int64_t B = x.dim(0), C = x.dim(-1);
  SsmConvStepArgs a;
  set_conv_params(op, s, weight, o, x.dtype(), C, a);
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  check_conv_state(op, s, "state", state, x, B, a.W, C);
  a.state = state.data();
  a.B = B;
  check_no_overlap(op, "out", out, "x", x, true);  // each channel reads its x before writing out
  check_no_overlap(op, "out", out, "state", state, false);
  check_no_overlap(op, "out", out, "weight", weight, false);
  check_no_overlap(op, "state", state, "x", x, false);
  check_no_overlap(op, "state", state, "weight", weight, false);
  if (o.bias) {
    check_no_overlap(op, "out", out, "bias", *o.bias, false);
    check_no_overlap(op, "state", state, "bias", *o.bias, false);
  }
  if (B == 0 || C == 0) return;
  dispatch(op, s, x.dtype(), a);
}

void gdn_gate(Session& s, const Tensor& a, const Tensor& b, const Tensor& A_log, const Tensor& dt_bias, const Tensor& g,
              const Tensor& beta) {
  const char* op = "gdn_gate";
  check_device(op, s, "a", a);
  check_dtype(op, "a", a, kFloatTypes);
  check_device(op, s, "b", b);
  check_same_dtype(op, "a", a, "b", b);
  check_same_shape(op, "a", a, "b", b);
  check_device(op, s, "g", g);
  if (g.dtype() != DType::f32) throw_error<InvalidArgument>(op, "g has dtype ", name(g.dtype()), ", expected f32");
  check_same_shape(op, "a", a, "g", g);
  check_device(op, s, "beta", beta);
  if (beta.dtype() != DType::f32 && beta.dtype() != a.dtype())
    throw_error<InvalidArgument>(op, "beta has dtype ", name(beta.dtype()), ", expected f32 or ", name(a.dtype()));
  check_same_shape(op, "a", a, "beta", beta);
  GdnGateArgs args;
  args.a = as_rows(op, "a", a);
  args.b = as_rows(op, "b", b);
  args.g = as_rows(op, "g", g);
  args.beta = as_rows(op, "beta", beta);
  args.g.dtype = DType::f32;
  const int64_t H = args.a.cols;
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"A_log", &A_log}, {"dt_bias", &dt_bias}}) {
    check_device(op, s, name, *t);
    if (t->dtype() != DType::f32 && t->dtype() != a.dtype())
      throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(t->dtype()), ", expected f32 or ",
                                   mlxn::name(a.dtype()));
    check_shape(op, name, *t, {H});
    check_contiguous(op, name, *t);
  }
  args.A_log = A_log.data();
  args.A_log_dtype = A_log.dtype();
  args.dt_bias = dt_bias.data();
  args.dt_bias_dtype = dt_bias.dtype();
  for (auto [oname, ot] : {std::pair<const char*, const Tensor*>{"g", &g}, {"beta", &beta}})
    for (auto [name, t] :
         {std::pair<const char*, const Tensor*>{"a", &a}, {"b", &b}, {"A_log", &A_log}, {"dt_bias", &dt_bias}})
      check_no_overlap(op, oname, *ot, name, *t, false);
  check_no_overlap(op, "beta", beta, "g", g, false);
  if (args.a.rows == 0 || H == 0) return;
  dispatch(op, s, a.dtype(), args);
}

}  // namespace mlxn
