// Frontend of the MLX affine quantization family: validation and dispatch. Every op fills
// one QuantMlxArgs.
#include "mlxn/ops/quant_mlx.h"

#include <cmath>
#include <string>

#include "ops/quant_mlx_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

constexpr DTypeSet kIdTypes{DType::i32, DType::u32};

void check_params(const char* op, MlxQuant q) {
  if (q.bits != 2 && q.bits != 3 && q.bits != 4 && q.bits != 5 && q.bits != 6 && q.bits != 8)
    throw_error<InvalidArgument>(op, "bits is ", q.bits, ", expected 2, 3, 4, 5, 6 or 8");
  if (q.group_size != 32 && q.group_size != 64 && q.group_size != 128)
    throw_error<InvalidArgument>(op, "group_size is ", q.group_size, ", expected 32, 64 or 128");
}

void check_cols(const char* op, const char* what, int64_t k, MlxQuant q) {
  if (k % q.group_size != 0 || (k * q.bits) % 32 != 0)
    throw_error<InvalidArgument>(op, what, " ", k, " is not a multiple of group_size ", q.group_size, " (with bits ",
                                 q.bits, " it must fill whole 32-bit words)");
  if (k > kMaxRowWidth) throw_error<InvalidArgument>(op, what, " ", k, " is too large");
}

void check_float_out(const char* op, Session& s, const char* name, const Tensor& t) {
  check_device(op, s, name, t);
  check_dtype(op, name, t, kFloatTypes);
}

// out must not overlap any input.
void check_disjoint(const char* op, const char* out_name, const Tensor& out, std::initializer_list<const Tensor*> ins,
                    std::initializer_list<const char*> names) {
  auto n = names.begin();
  for (const Tensor* t : ins) check_no_overlap(op, out_name, out, *n++, *t, false);
}

void check_ids(const char* op, Session& s, const Tensor& ids, const Dims& shape) {
  check_device(op, s, "ids", ids);
  check_dtype(op, "ids", ids, kIdTypes);
  check_shape(op, "ids", ids, shape);
  check_contiguous(op, "ids", ids);
}

}  // namespace

namespace detail {

MlxQuantMatrix check_quant_matrix(const char* op, Session& s, const Tensor& packed, const Tensor& scales,
                                  const Tensor& biases, MlxQuant q, int lead, int64_t k, const std::string& name) {
  check_params(op, q);
  const std::string pn = name + "packed", sn = name + "scales", bn = name + "biases";
  check_device(op, s, pn.c_str(), packed);
  check_device(op, s, sn.c_str(), scales);
  check_device(op, s, bn.c_str(), biases);
  check_dtype(op, pn.c_str(), packed, {DType::u32});
  check_dtype(op, sn.c_str(), scales, kFloatTypes);
  check_same_dtype(op, sn.c_str(), scales, bn.c_str(), biases);
  const int nd = 2 + lead;
  check_ndim(op, pn.c_str(), packed, nd, nd);
  check_contiguous(op, pn.c_str(), packed);
  check_contiguous(op, sn.c_str(), scales);
  check_contiguous(op, bn.c_str(), biases);
  MlxQuantMatrix m;
  m.bits = q.bits;
  m.group_size = q.group_size;
  m.experts = lead ? packed.dim(0) : 1;
  m.rows = packed.dim(-2);
  if (k < 0) {
    k = packed.dim(-1) * 32;
    if (k % q.bits != 0)
      throw_error<InvalidArgument>(op, pn, " has ", packed.dim(-1), " words per row, not a whole number of ", q.bits,
                                   "-bit values");
    k /= q.bits;
  }
  check_cols(op, "K", k, q);
  m.cols = k;
  Dims pshape, sshape;
  if (lead) {
    pshape.push_back(m.experts);
    sshape.push_back(m.experts);
  }
  pshape.push_back(m.rows);
  sshape.push_back(m.rows);
  pshape.push_back(k * q.bits / 32);
  sshape.push_back(k / q.group_size);
  check_shape(op, pn.c_str(), packed, pshape);
  check_shape(op, sn.c_str(), scales, sshape);
  check_shape(op, bn.c_str(), biases, sshape);
  m.packed = packed.data();
  m.scales = scales.data();
  m.biases = biases.data();
  m.scale_dtype = scales.dtype();
  return m;
}

}  // namespace detail

void quantize(Session& s, const Tensor& w, MlxQuant q, const Tensor& packed, const Tensor& scales,
              const Tensor& biases) {
  const char* op = "quantize";
  check_params(op, q);
  check_device(op, s, "w", w);
  check_dtype(op, "w", w, kFloatTypes);
  check_ndim(op, "w", w, 2, 2);
  check_cols(op, "w's K", w.dim(1), q);
  QuantMlxArgs a;
  a.w = check_quant_matrix(op, s, packed, scales, biases, q, 0, w.dim(1));
  if (a.w.rows != w.dim(0)) throw_error<InvalidArgument>(op, "packed has ", a.w.rows, " rows, w has ", w.dim(0));
  a.x = as_rows(op, "w", w);
  check_disjoint(op, "packed", packed, {&w, &scales, &biases}, {"w", "scales", "biases"});
  check_disjoint(op, "scales", scales, {&w, &biases}, {"w", "biases"});
  check_disjoint(op, "biases", biases, {&w}, {"w"});
  if (w.numel() == 0) return;
  // Registered as mlx_quantize / mlx_dequantize: the GGUF family has its own dequantize.
  dispatch("mlx_quantize", s, w.dtype(), a);
}

void dequantize(Session& s, const Tensor& packed, const Tensor& scales, const Tensor& biases, MlxQuant q,
                const Tensor& out) {
  const char* op = "dequantize";
  QuantMlxArgs a;
  a.w = check_quant_matrix(op, s, packed, scales, biases, q, 0, -1);
  check_float_out(op, s, "out", out);
  check_shape(op, "out", out, {a.w.rows, a.w.cols});
  check_disjoint(op, "out", out, {&packed, &scales, &biases}, {"packed", "scales", "biases"});
  a.out = as_rows(op, "out", out);
  if (out.numel() == 0) return;
  dispatch("mlx_dequantize", s, out.dtype(), a);
}

void quantized_matmul(Session& s, const Tensor& x, const Tensor& packed, const Tensor& scales, const Tensor& biases,
                      MlxQuant q, const Tensor& out) {
  const char* op = "quantized_matmul";
  check_params(op, q);
  check_device(op, s, "x", x);
  check_dtype(op, "x", x, kFloatTypes);
  check_ndim(op, "x", x, 1);
  QuantMlxArgs a;
  a.w = check_quant_matrix(op, s, packed, scales, biases, q, 0, -1);
  if (x.dim(-1) != a.w.cols)
    throw_error<InvalidArgument>(op, "x has ", x.dim(-1), " columns but the quantized matrix has K = ", a.w.cols);
  check_float_out(op, s, "out", out);
  check_same_dtype(op, "x", x, "out", out);
  Dims oshape(x.shape().begin(), x.shape().end() - 1);
  oshape.push_back(a.w.rows);
  check_shape(op, "out", out, oshape);
  check_disjoint(op, "out", out, {&x, &packed, &scales, &biases}, {"x", "packed", "scales", "biases"});
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  a.tokens = a.x.rows;
  if (out.numel() == 0) return;
  dispatch(op, s, x.dtype(), a);
}

void quantized_matmul_id(Session& s, const Tensor& x, const Tensor& packed, const Tensor& scales, const Tensor& biases,
                         const Tensor& ids, MlxQuant q, const Tensor& out) {
  const char* op = "quantized_matmul_id";
  check_params(op, q);
  check_device(op, s, "x", x);
  check_dtype(op, "x", x, kFloatTypes);
  check_ndim(op, "x", x, 2, 3);
  check_ndim(op, "ids", ids, 2, 2);
  const int64_t t = ids.dim(0), top_k = ids.dim(1);
  check_ids(op, s, ids, {t, top_k});
  QuantMlxArgs a;
  a.w = check_quant_matrix(op, s, packed, scales, biases, q, 1, -1);
  const bool per_slot = x.ndim() == 3;
  check_shape(op, "x", x, per_slot ? Dims{t, top_k, a.w.cols} : Dims{t, a.w.cols});
  check_float_out(op, s, "out", out);
  check_same_dtype(op, "x", x, "out", out);
  check_shape(op, "out", out, {t, top_k, a.w.rows});
  check_disjoint(op, "out", out, {&x, &packed, &scales, &biases, &ids}, {"x", "packed", "scales", "biases", "ids"});
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  a.ids = ids.data();
  a.ids_dtype = ids.dtype();
  a.tokens = t;
  a.top_k = top_k;
  a.x_per_slot = per_slot;
  if (out.numel() == 0) return;
  if (a.w.experts == 0) throw_error<InvalidArgument>(op, "packed holds no experts (E = 0) for ", t * top_k, " slots");
  dispatch(op, s, x.dtype(), a);
}

void quantized_embedding(Session& s, const Tensor& packed, const Tensor& scales, const Tensor& biases, MlxQuant q,
                         const Tensor& ids, const Tensor& out, float scale) {
  const char* op = "quantized_embedding";
  QuantMlxArgs a;
  a.w = check_quant_matrix(op, s, packed, scales, biases, q, 0, -1);
  check_ndim(op, "ids", ids, 1, 1);
  check_ids(op, s, ids, {ids.dim(0)});
  check_float_out(op, s, "out", out);
  check_shape(op, "out", out, {ids.dim(0), a.w.cols});
  check_disjoint(op, "out", out, {&packed, &scales, &biases, &ids}, {"packed", "scales", "biases", "ids"});
  if (!std::isfinite(scale)) throw_error<InvalidArgument>(op, "scale must be finite, got ", scale);
  a.out = as_rows(op, "out", out);
  a.ids = ids.data();
  a.ids_dtype = ids.dtype();
  a.tokens = ids.dim(0);
  a.scale = scale;
  if (out.numel() == 0) return;
  if (a.w.rows == 0) throw_error<InvalidArgument>(op, "the table has no rows for ", a.tokens, " ids");
  dispatch(op, s, out.dtype(), a);
}

}  // namespace mlxn
