// Frontend of the moe family: validation and dispatch.
#include "mlxn/ops/moe.h"

#include <climits>

#include "ops/moe_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

constexpr DTypeSet kIdTypes{DType::i32, DType::u32};

void check_expert_vector(const char* op, Session& s, const char* name, const Tensor& v, int64_t experts) {
  check_device(op, s, name, v);
  check_dtype(op, name, v, DTypeSet{DType::f32});
  check_shape(op, name, v, Dims{experts});
  check_contiguous(op, name, v);
}

}  // namespace

namespace detail {

MoeRouteArgs route_args(const char* op, Session& s, int64_t experts, const MoeRouteParams& p) {
  if (p.top_k < 1 || p.top_k > experts)
    throw_error<InvalidArgument>(op, "top_k = ", p.top_k, ", expected 1..", experts, " (E)");
  MoeRouteArgs a;
  a.top_k = p.top_k;
  a.sigmoid = p.scoring == MoeScoring::sigmoid;
  a.renormalize = p.renormalize;
  if (p.expert_scale) {
    check_expert_vector(op, s, "expert_scale", *p.expert_scale, experts);
    a.expert_scale = p.expert_scale->data_as<const float>();
  }
  if (p.score_bias) {
    check_expert_vector(op, s, "score_bias", *p.score_bias, experts);
    a.score_bias = p.score_bias->data_as<const float>();
  }
  return a;
}

}  // namespace detail

void moe_route(Session& s, const Tensor& logits, const MoeRouteParams& p, const Tensor& ids, const Tensor& weights) {
  const char* op = "moe_route";
  check_device(op, s, "logits", logits);
  check_device(op, s, "ids", ids);
  check_device(op, s, "weights", weights);
  check_dtype(op, "logits", logits, kFloatTypes);
  check_dtype(op, "ids", ids, kIdTypes);
  check_dtype(op, "weights", weights, DTypeSet{DType::f32});
  check_ndim(op, "logits", logits, 2, 2);
  const int64_t t = logits.dim(0), e = logits.dim(1);
  if (e < 1 || e > kMaxRouteExperts)
    throw_error<InvalidArgument>(op, "logits have ", e, " experts, expected 1..", kMaxRouteExperts);
  MoeRouteArgs a = route_args(op, s, e, p);
  check_shape(op, "ids", ids, Dims{t, p.top_k});
  check_shape(op, "weights", weights, Dims{t, p.top_k});
  check_contiguous(op, "ids", ids);
  check_contiguous(op, "weights", weights);
  check_no_overlap(op, "ids", ids, "logits", logits, false);
  check_no_overlap(op, "weights", weights, "logits", logits, false);
  check_no_overlap(op, "weights", weights, "ids", ids, false);
  a.logits = as_rows(op, "logits", logits);
  a.ids = ids.data();
  a.weights = weights.data_as<float>();
  if (t == 0) return;
  dispatch(op, s, logits.dtype(), a);
}

void moe_weighted_sum(Session& s, const Tensor& y, const Tensor& weights, const Tensor& out, const MoeSumParams& p) {
  const char* op = "moe_weighted_sum";
  check_device(op, s, "y", y);
  check_device(op, s, "weights", weights);
  check_device(op, s, "out", out);
  check_dtype(op, "y", y, kFloatTypes);
  check_same_dtype(op, "y", y, "out", out);
  check_dtype(op, "weights", weights, DTypeSet{DType::f32});
  check_ndim(op, "y", y, 3, 3);
  const int64_t t = y.dim(0), k = y.dim(1), d = y.dim(2);
  check_shape(op, "weights", weights, Dims{t, k});
  check_contiguous(op, "weights", weights);
  check_shape(op, "out", out, Dims{t, d});
  check_no_overlap(op, "out", out, "y", y, false);
  check_no_overlap(op, "out", out, "weights", weights, false);
  MoeSumArgs a;
  a.dtype = y.dtype();
  a.tokens = t;
  a.top_k = k;
  a.dim = d;
  a.y = as_rows(op, "y", y);
  a.out = as_rows(op, "out", out);
  a.weights = weights.data_as<const float>();
  auto operand = [&](const char* name, const Tensor& v, bool same_view_ok) {
    check_device(op, s, name, v);
    check_same_dtype(op, "y", y, name, v);
    check_shape(op, name, v, Dims{t, d});
    check_no_overlap(op, "out", out, name, v, same_view_ok);
    return as_rows(op, name, v);
  };
  if (p.shared) a.shared = operand("shared", *p.shared, false);
  if (p.residual) a.residual = operand("residual", *p.residual, true);
  if (p.shared_gate) {
    const Tensor& g = *p.shared_gate;
    if (!p.shared) throw_error<InvalidArgument>(op, "shared_gate is given without shared");
    check_device(op, s, "shared_gate", g);
    check_dtype(op, "shared_gate", g, kFloatTypes);
    if (g.dtype() != DType::f32 && g.dtype() != y.dtype())
      throw_error<InvalidArgument>(op, "shared_gate has dtype ", name(g.dtype()), ", expected f32 or ",
                                   name(y.dtype()));
    if (!(g.shape() == Dims{t}) && !(g.shape() == Dims{t, 1}))
      throw_error<InvalidArgument>(op, "shared_gate has shape ", g.shape().str(), ", expected [", t, "] or [", t,
                                   ", 1]");
    check_no_overlap(op, "out", out, "shared_gate", g, false);
    a.gate = g.data();
    a.gate_stride = t > 1 ? g.stride(0) : 1;
    a.gate_dtype = g.dtype();
  }
  if (t == 0 || d == 0) return;
  dispatch(op, s, a.dtype, a);
}

void moe_glu(Session& s, const Tensor& gate_up, const Tensor& out, GluKind kind) {
  const char* op = "moe_glu";
  check_device(op, s, "gate_up", gate_up);
  check_device(op, s, "out", out);
  check_dtype(op, "gate_up", gate_up, kFloatTypes);
  check_same_dtype(op, "gate_up", gate_up, "out", out);
  check_ndim(op, "gate_up", gate_up, 1);
  if (gate_up.dim(-1) % 2 != 0)
    throw_error<InvalidArgument>(op, "gate_up's last dim is ", gate_up.dim(-1), ", expected an even 2 * I");
  Dims expect(gate_up.shape().begin(), gate_up.shape().end());
  expect[expect.size() - 1] = gate_up.dim(-1) / 2;
  check_shape(op, "out", out, expect);
  check_no_overlap(op, "out", out, "gate_up", gate_up, false);
  MoeGluArgs a;
  a.gate_up = as_rows(op, "gate_up", gate_up);
  a.out = as_rows(op, "out", out);
  a.gelu = kind == GluKind::gelu_tanh;
  if (a.out.rows == 0 || a.out.cols == 0) return;
  dispatch(op, s, gate_up.dtype(), a);
}

void moe_group_tokens(Session& s, const Tensor& ids, const Tensor& sorted_rows, const Tensor& expert_offsets) {
  const char* op = "moe_group_tokens";
  check_device(op, s, "ids", ids);
  check_device(op, s, "sorted_rows", sorted_rows);
  check_device(op, s, "expert_offsets", expert_offsets);
  check_dtype(op, "ids", ids, kIdTypes);
  check_dtype(op, "sorted_rows", sorted_rows, kIdTypes);
  check_dtype(op, "expert_offsets", expert_offsets, kIdTypes);
  check_contiguous(op, "ids", ids);
  check_contiguous(op, "sorted_rows", sorted_rows);
  check_contiguous(op, "expert_offsets", expert_offsets);
  const int64_t pairs = ids.numel();
  if (pairs > INT_MAX) throw_error<InvalidArgument>(op, "ids has ", pairs, " elements, more than ", INT_MAX);
  if (sorted_rows.numel() != pairs)
    throw_error<InvalidArgument>(op, "sorted_rows has ", sorted_rows.numel(), " elements, expected ", pairs,
                                 " (one per id)");
  check_ndim(op, "expert_offsets", expert_offsets, 1, 1);
  if (expert_offsets.dim(0) < 2)
    throw_error<InvalidArgument>(op, "expert_offsets has shape ", expert_offsets.shape().str(),
                                 ", expected [E + 1] with E >= 1");
  check_no_overlap(op, "sorted_rows", sorted_rows, "ids", ids, false);
  check_no_overlap(op, "expert_offsets", expert_offsets, "ids", ids, false);
  check_no_overlap(op, "expert_offsets", expert_offsets, "sorted_rows", sorted_rows, false);
  MoeGroupArgs a;
  a.ids = ids.data();
  a.pairs = pairs;
  a.experts = expert_offsets.dim(0) - 1;
  a.sorted_rows = sorted_rows.data();
  a.offsets = expert_offsets.data();
  dispatch(op, s, ids.dtype(), a);
}

}  // namespace mlxn
