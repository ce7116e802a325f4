// Frontend of the GGUF quant family: validation and dispatch.
#include "mlxn/ops/quant_gguf.h"

#include <cmath>

#include "ops/quant_gguf_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

// A weight-like tensor (block dtype or float): contiguous, rows of K elements that hold a
// whole number of blocks, and its exact byte span (byte_span() assumes plain dtypes).
ByteSpan weight_span(const Tensor& t) {
  if (t.numel() == 0 || !t.data()) return {};
  const auto lo = reinterpret_cast<uintptr_t>(t.data());
  return {lo, lo + t.nbytes()};
}

void check_disjoint(const char* op, const char* a_name, const ByteSpan& a, const char* b_name, const ByteSpan& b) {
  if (a.lo >= b.hi || b.lo >= a.hi) return;
  throw_error<InvalidArgument>(op, a_name, " overlaps ", b_name);
}

void check_weight(const char* op, Session& s, const char* name, const Tensor& w, DTypeSet allowed, int ndim) {
  check_device(op, s, name, w);
  check_dtype(op, name, w, allowed);
  check_ndim(op, name, w, ndim, ndim);
  check_contiguous(op, name, w);
  const int64_t k = w.dim(-1), be = traits(w.dtype()).block_elems;
  if (k % be != 0)
    throw_error<InvalidArgument>(op, name, " rows of ", k, " elements are not a whole number of ",
                                 mlxn::name(w.dtype()), " blocks (", be, " elements each)");
  if (k > kMaxRowWidth) throw_error<InvalidArgument>(op, name, " rows of ", k, " elements are too wide");
}

void check_ids(const char* op, Session& s, const Tensor& ids) {
  check_device(op, s, "ids", ids);
  check_dtype(op, "ids", ids, DTypeSet{DType::i32, DType::u32});
  check_contiguous(op, "ids", ids);
}

void check_grid(const char* op, const char* what, int64_t v) {
  if (v > (int64_t(1) << 31) - 1) throw_error<InvalidArgument>(op, what, " of ", v, " exceeds 2^31 - 1");
}

}  // namespace

void gguf_dequantize(Session& s, const Tensor& w, const Tensor& out) {
  const char* op = "gguf_dequantize";
  check_device(op, s, "out", out);
  check_dtype(op, "out", out, kFloatTypes);
  check_defined(op, "w", w);
  if (w.ndim() < 1) throw_error<InvalidArgument>(op, "w must have at least 1 dim");
  check_weight(op, s, "w", w, kGgufWeightTypes, w.ndim());
  check_same_shape(op, "w", w, "out", out);
  GgufDequantArgs a;
  a.out = as_rows(op, "out", out);
  check_disjoint(op, "out", byte_span(out), "w", weight_span(w));
  if (out.numel() == 0) return;
  a.w = w.data();
  a.w_dtype = w.dtype();
  a.k = w.dim(-1);
  a.rows = w.numel() / a.k;
  a.w_row_bytes = gguf_row_bytes(w.dtype(), a.k);
  dispatch(op, s, w.dtype(), a);
}

void gguf_matmul(Session& s, const Tensor& x, const Tensor& w, const Tensor& out) {
  const char* op = "gguf_matmul";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kFloatTypes);
  check_same_dtype(op, "x", x, "out", out);
  check_ndim(op, "x", x, 2, 2);
  check_weight(op, s, "w", w, kGgufWeightTypes, 2);
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  if (w.dim(1) != k)
    throw_error<InvalidArgument>(op, "w has shape ", w.shape().str(), ", expected [N, ", k, "] like x");
  check_shape(op, "out", out, Dims{m, n});
  GgufMatmulArgs a;
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  check_no_overlap(op, "out", out, "x", x, false);
  check_disjoint(op, "out", byte_span(out), "w", weight_span(w));
  check_grid(op, "M", m);
  check_grid(op, "N", n);
  if (m == 0 || n == 0) return;
  if (k == 0) throw_error<InvalidArgument>(op, "K must be positive");
  a.w = w.data();
  a.w_dtype = w.dtype();
  a.n = n;
  a.k = k;
  a.w_row_bytes = gguf_row_bytes(w.dtype(), k);
  a.tokens = m;
  dispatch(op, s, w.dtype(), a);
}

void gguf_matmul_id(Session& s, const Tensor& x, const Tensor& w, const Tensor& ids, const Tensor& out) {
  const char* op = "gguf_matmul_id";
  check_device(op, s, "x", x);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kFloatTypes);
  check_same_dtype(op, "x", x, "out", out);
  check_ndim(op, "x", x, 2, 3);
  check_weight(op, s, "w", w, kGgufWeightTypes, 3);
  check_ids(op, s, ids);
  check_ndim(op, "ids", ids, 2, 2);
  const int64_t t = ids.dim(0), top_k = ids.dim(1), e = w.dim(0), n = w.dim(1), k = w.dim(2);
  const bool per_slot = x.ndim() == 3;
  const Dims x_expect = per_slot ? Dims{t, top_k, k} : Dims{t, k};
  check_shape(op, "x", x, x_expect);
  check_shape(op, "out", out, Dims{t, top_k, n});
  GgufMatmulArgs a;
  a.x = as_rows(op, "x", x);
  a.out = as_rows(op, "out", out);
  check_no_overlap(op, "out", out, "x", x, false);
  check_no_overlap(op, "out", out, "ids", ids, false);
  check_disjoint(op, "out", byte_span(out), "w", weight_span(w));
  check_grid(op, "T * top_k", t * top_k);
  check_grid(op, "N", n);
  check_grid(op, "E", e);
  if (t == 0 || top_k == 0 || n == 0) return;
  if (k == 0) throw_error<InvalidArgument>(op, "K must be positive");
  if (e == 0) throw_error<InvalidArgument>(op, "w has no experts (shape ", w.shape().str(), ")");
  a.w = w.data();
  a.w_dtype = w.dtype();
  a.n = n;
  a.k = k;
  a.experts = e;
  a.w_row_bytes = gguf_row_bytes(w.dtype(), k);
  a.ids = ids.data();
  a.ids_dtype = ids.dtype();
  a.tokens = t;
  a.top_k = top_k;
  a.x_per_slot = per_slot;
  dispatch(op, s, w.dtype(), a);
}

void gguf_embedding(Session& s, const Tensor& table, const Tensor& ids, const Tensor& out, float scale) {
  const char* op = "gguf_embedding";
  check_weight(op, s, "table", table, kGgufWeightTypes, 2);
  check_ids(op, s, ids);
  check_device(op, s, "out", out);
  check_dtype(op, "out", out, kFloatTypes);
  Dims expect = ids.shape();
  expect.push_back(table.dim(1));
  check_shape(op, "out", out, expect);
  if (!std::isfinite(scale)) throw_error<InvalidArgument>(op, "scale must be finite, got ", scale);
  GgufEmbeddingArgs a;
  a.out = as_rows(op, "out", out);
  check_no_overlap(op, "out", out, "ids", ids, false);
  check_disjoint(op, "out", byte_span(out), "table", weight_span(table));
  check_grid(op, "ids count", ids.numel());
  if (out.numel() == 0) return;
  a.table = table.data();
  a.table_dtype = table.dtype();
  a.vocab = table.dim(0);
  a.dim = table.dim(1);
  a.table_row_bytes = gguf_row_bytes(table.dtype(), a.dim);
  a.ids = ids.data();
  a.ids_dtype = ids.dtype();
  a.count = ids.numel();
  a.scale = scale;
  dispatch(op, s, table.dtype(), a);
}

}  // namespace mlxn
