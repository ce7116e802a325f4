// Frontend of moe_experts: validation, dispatch, and the op as its four parts.
#include "mlxn/ops/moe_experts.h"

#include "ops/moe_experts_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace detail {

MoeExpertsArgs check_experts(const char* op, Session& s, const Tensor& x, const QuantizedExperts& gate,
                             const QuantizedExperts& up, const QuantizedExperts& down, MlxQuant q, const Tensor& out,
                             const MoeExpertsParams& p) {
  check_device(op, s, "x", x);
  check_dtype(op, "x", x, kFloatTypes);
  check_ndim(op, "x", x, 2, 2);
  MoeExpertsArgs a;
  a.gate_m = check_quant_matrix(op, s, gate.packed, gate.scales, gate.biases, q, 1, -1, "gate ");
  a.up_m = check_quant_matrix(op, s, up.packed, up.scales, up.biases, q, 1, -1, "up ");
  a.down_m = check_quant_matrix(op, s, down.packed, down.scales, down.biases, q, 1, -1, "down ");
  const int64_t e = a.gate_m.experts, width = a.gate_m.rows, dim = a.gate_m.cols;
  if (x.dim(1) != dim) throw_error<InvalidArgument>(op, "x has ", x.dim(1), " columns, the gate's K is ", dim);
  if (a.up_m.experts != e || a.up_m.rows != width || a.up_m.cols != dim)
    throw_error<InvalidArgument>(op, "up is [", a.up_m.experts, ", ", a.up_m.rows, ", ", a.up_m.cols, "], gate is [", e,
                                 ", ", width, ", ", dim, "]");
  if (a.down_m.experts != e || a.down_m.rows != dim || a.down_m.cols != width)
    throw_error<InvalidArgument>(op, "down is [", a.down_m.experts, ", ", a.down_m.rows, ", ", a.down_m.cols,
                                 "], expected [", e, ", ", dim, ", ", width, "] (E, D, I)");
  if (a.up_m.scale_dtype != a.gate_m.scale_dtype || a.down_m.scale_dtype != a.gate_m.scale_dtype)
    throw_error<InvalidArgument>(op, "gate, up and down scales have dtypes ", name(a.gate_m.scale_dtype), ", ",
                                 name(a.up_m.scale_dtype), ", ", name(a.down_m.scale_dtype), ": expected one");
  if (e == 0) throw_error<InvalidArgument>(op, "the expert stacks hold no experts (E = 0)");
  const int64_t t = x.dim(0);
  check_device(op, s, "out", out);
  check_same_dtype(op, "x", x, "out", out);
  check_shape(op, "out", out, {t, dim});
  for (const auto& [n, in] : {std::pair<const char*, const Tensor*>{"x", &x},
                              {"gate packed", &gate.packed},
                              {"up packed", &up.packed},
                              {"down packed", &down.packed}})
    check_no_overlap(op, "out", out, n, *in, false);
  if (p.residual) {
    check_device(op, s, "residual", *p.residual);
    check_same_dtype(op, "residual", *p.residual, "out", out);
    check_shape(op, "residual", *p.residual, {t, dim});
    check_no_overlap(op, "out", out, "residual", *p.residual, true);
    a.residual = as_rows(op, "residual", *p.residual);
  }
  a.x = x, a.out = out;
  a.gate = gate, a.up = up, a.down = down, a.q = q, a.p = p;
  a.xv = as_rows(op, "x", x);
  a.outv = as_rows(op, "out", out);
  a.tokens = t, a.dim = dim, a.width = width;
  return a;
}

void check_routing(const char* op, Session& s, const Tensor& ids, const Tensor& weights, int64_t tokens, int64_t top_k,
                   const Tensor& out) {
  check_device(op, s, "ids", ids);
  check_dtype(op, "ids", ids, DTypeSet{DType::i32, DType::u32});
  check_shape(op, "ids", ids, {tokens, top_k});
  check_contiguous(op, "ids", ids);
  check_device(op, s, "weights", weights);
  check_dtype(op, "weights", weights, DTypeSet{DType::f32});
  check_shape(op, "weights", weights, {tokens, top_k});
  check_contiguous(op, "weights", weights);
  check_no_overlap(op, "out", out, "ids", ids, false);
  check_no_overlap(op, "out", out, "weights", weights, false);
}

}  // namespace detail

void moe_experts(Session& s, const Tensor& x, const QuantizedExperts& gate, const QuantizedExperts& up,
                 const QuantizedExperts& down, MlxQuant q, const Tensor& ids, const Tensor& weights, const Tensor& out,
                 const MoeExpertsParams& p) {
  const char* op = "moe_experts";
  MoeExpertsArgs a = check_experts(op, s, x, gate, up, down, q, out, p);
  check_ndim(op, "ids", ids, 2, 2);
  const int64_t k = ids.dim(1);
  check_routing(op, s, ids, weights, a.tokens, k, out);
  a.ids = ids, a.weights = weights, a.top_k = k;
  if (a.tokens == 0) return;
  if (k == 0) throw_error<InvalidArgument>(op, "ids select no experts (top_k = 0)");
  dispatch(op, s, x.dtype(), a);
}

namespace detail {

void moe_experts_composed(Session& s, const MoeExpertsArgs& a) {
  const int64_t t = a.tokens, k = a.top_k, w = a.width;
  const DType dt = a.x.dtype();
  const Device dev = s.device();
  const size_t es = element_size(dt);
  // [T, k, 2I]: the gate's products in the first half of each row, the up's in the second,
  // as moe_glu takes them.
  ScratchBuffer gate_up = s.pool().acquire(size_t(t * k * 2 * w) * es);
  ScratchBuffer act = s.pool().acquire(size_t(t * k * w) * es);
  ScratchBuffer y = s.pool().acquire(size_t(t * k * a.dim) * es);
  auto* gu = static_cast<char*>(gate_up.data());
  const Tensor gu_all(gu, dt, {t, k, 2 * w}, dev);
  const Tensor g_half(gu, dt, {t, k, w}, dev, {k * 2 * w, 2 * w, 1});
  const Tensor u_half(gu + size_t(w) * es, dt, {t, k, w}, dev, {k * 2 * w, 2 * w, 1});
  const Tensor act_t(act.data(), dt, {t, k, w}, dev);
  const Tensor y_t(y.data(), dt, {t, k, a.dim}, dev);
  quantized_matmul_id(s, a.x, a.gate.packed, a.gate.scales, a.gate.biases, a.ids, a.q, g_half);
  quantized_matmul_id(s, a.x, a.up.packed, a.up.scales, a.up.biases, a.ids, a.q, u_half);
  moe_glu(s, gu_all, act_t, a.p.act);
  quantized_matmul_id(s, act_t, a.down.packed, a.down.scales, a.down.biases, a.ids, a.q, y_t);
  MoeSumParams sp;
  sp.residual = a.p.residual;
  moe_weighted_sum(s, y_t, a.weights, a.out, sp);
}

}  // namespace detail
}  // namespace mlxn
