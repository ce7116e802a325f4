// Frontend of the matmul family: validation, layout normalisation (strides -> BLAS operands,
// batches folded into rows where the layout allows) and dispatch.
#include "mlxn/ops/matmul.h"

#include <algorithm>
#include <climits>
#include <utility>
#include <vector>

#include "ops/matmul_args.h"
#include "ops/registry.h"

namespace mlxn {

using namespace detail;

namespace {

constexpr DTypeSet kIdTypes{DType::i32, DType::u32};

struct Batch {
  int64_t count = 1;
  int64_t stride = 0;  // elements; 0 when count <= 1
};

// The leading dims (all but the last two) as one uniformly strided batch axis.
Batch collapse_batch(const char* op, const char* name, const Tensor& t) {
  Batch b;
  int64_t expect = 0;
  bool first = true;
  for (int i = t.ndim() - 3; i >= 0; --i) {
    const int64_t n = t.dim(i);
    b.count *= n;
    if (n == 1) continue;
    if (t.stride(i) < 0)
      throw_error<InvalidArgument>(op, name, " has a negative batch stride (strides ", t.strides().str(), ")");
    if (first) {
      b.stride = t.stride(i);
      expect = b.stride * n;
      first = false;
    } else {
      if (t.stride(i) != expect)
        throw_error<InvalidArgument>(op, name, " batch dims do not collapse into one stride (shape ", t.shape().str(),
                                     ", strides ", t.strides().str(), ")");
      expect *= n;
    }
  }
  if (b.count <= 1) b.stride = 0;
  return b;
}

// The last two dims of t as a BLAS operand: row-major (unit column stride) or column-major
// (unit row stride) with a leading dimension covering the other extent. With `transpose`,
// the logical matrix is the stored one transposed.
MatOperand matrix_operand(const char* op, const char* name, const Tensor& t, bool transpose, int64_t& rows,
                          int64_t& cols) {
  const int64_t sr = t.dim(-2), sc = t.dim(-1), rs = t.stride(-2), cs = t.stride(-1);
  const bool row_ok = (sc <= 1 || cs == 1) && (sr <= 1 || rs >= std::max<int64_t>(sc, 1));
  const bool col_ok = (sr <= 1 || rs == 1) && (sc <= 1 || cs >= std::max<int64_t>(sr, 1));
  MatOperand m;
  m.data = t.data();
  if (row_ok) {
    m.ld = sr <= 1 ? std::max<int64_t>(sc, 1) : rs;
  } else if (col_ok) {
    m.ld = sc <= 1 ? std::max<int64_t>(sr, 1) : cs;
    m.col_major = true;
  } else {
    throw_error<InvalidArgument>(op, name, " is neither a row-major nor a column-major matrix view (shape ",
                                 t.shape().str(), ", strides ", t.strides().str(), ")");
  }
  rows = transpose ? sc : sr;
  cols = transpose ? sr : sc;
  if (transpose) m.col_major = !m.col_major;
  return m;
}

// True when the (extent, stride) axes address distinct elements: sorted by stride, every
// stride exceeds the reach of the smaller ones. Sufficient, and exact for the layouts used.
bool distinct_elements(std::vector<std::pair<int64_t, int64_t>> axes) {
  std::erase_if(axes, [](auto& a) { return a.first <= 1; });
  std::sort(axes.begin(), axes.end(), [](auto& x, auto& y) { return x.second < y.second; });
  int64_t reach = 0;
  for (auto [extent, stride] : axes) {
    if (stride <= reach) return false;
    reach += (extent - 1) * stride;
  }
  return true;
}

// The row stride that turns consecutive batches of a row-major [rows, cols] operand into one
// tall matrix, or 0 when they are not laid out back to back.
int64_t stacked_ld(bool col_major, int64_t ld, int64_t batch_stride, int64_t rows, int64_t cols) {
  if (col_major) return 0;
  if (rows == 1) return batch_stride >= std::max<int64_t>(cols, 1) ? batch_stride : 0;
  return batch_stride == rows * ld ? ld : 0;
}

}  // namespace

void matmul(Session& s, const Tensor& a, const Tensor& b, const Tensor& out, const MatmulParams& p) {
  const char* op = "matmul";
  check_device(op, s, "a", a);
  check_device(op, s, "b", b);
  check_device(op, s, "out", out);
  check_dtype(op, "a", a, kFloatTypes);
  check_same_dtype(op, "a", a, "b", b);
  check_same_dtype(op, "a", a, "out", out);
  check_ndim(op, "a", a, 2);
  check_ndim(op, "b", b, 2);
  check_ndim(op, "out", out, 2);

  MatmulArgs args;
  args.dtype = a.dtype();
  args.alpha = p.alpha;
  args.beta = p.beta;
  int64_t m = 0, k = 0, n = 0, kb = 0;
  args.a = matrix_operand(op, "a", a, false, m, k);
  args.b = matrix_operand(op, "b", b, !p.b_transposed, n, kb);
  if (kb != k)
    throw_error<InvalidArgument>(op, "b has shape ", b.shape().str(), (p.b_transposed ? " ([N, K])" : " ([K, N])"),
                                 ", inner dim ", kb, " does not match a's K = ", k, " (a ", a.shape().str(), ")");
  const Batch ba = collapse_batch(op, "a", a), bb = collapse_batch(op, "b", b);
  if (bb.count == 0 ? ba.count != 0 : ba.count % bb.count != 0)
    throw_error<InvalidArgument>(op, "b's batch of ", bb.count, " (shape ", b.shape().str(),
                                 ") does not divide a's batch of ", ba.count, " (shape ", a.shape().str(), ")");
  Dims expect;
  for (int i = 0; i < a.ndim() - 2; ++i) expect.push_back(a.dim(i));
  expect.push_back(m);
  expect.push_back(n);
  check_shape(op, "out", out, expect);
  if (out.dim(-1) > 1 && out.stride(-1) != 1)
    throw_error<InvalidArgument>(op, "out must have a contiguous last dim (strides ", out.strides().str(), ")");
  const Batch bo = collapse_batch(op, "out", out);
  args.out = out.data();
  args.ldo = m <= 1 ? std::max<int64_t>(n, 1) : out.stride(-2);
  args.out_batch_stride = bo.stride;
  if (!distinct_elements({{bo.count, bo.stride}, {m, args.ldo}, {n, 1}}))
    throw_error<InvalidArgument>(op, "out's elements overlap each other (shape ", out.shape().str(), ", strides ",
                                 out.strides().str(), ")");
  check_no_overlap(op, "out", out, "a", a, false);
  check_no_overlap(op, "out", out, "b", b, false);

  if (m == 0 || n == 0 || ba.count == 0) return;  // empty: a valid no-op

  args.m = m;
  args.n = n;
  args.k = k;
  args.batch = ba.count;
  args.group = ba.count / bb.count;
  args.a.batch_stride = ba.stride;
  args.b.batch_stride = bb.stride;
  // Grouped heads (or weights shared by every batch) stored back to back: the `group`
  // a-batches that read one b-batch become one taller matrix, so each b-batch is one GEMM.
  if (args.group > 1) {
    const int64_t lda = stacked_ld(args.a.col_major, args.a.ld, args.a.batch_stride, m, k);
    const int64_t ldo = stacked_ld(false, args.ldo, args.out_batch_stride, m, n);
    if (lda && ldo) {
      args.m = m * args.group;
      args.a.ld = lda;
      args.ldo = ldo;
      args.a.batch_stride *= args.group;
      args.out_batch_stride *= args.group;
      args.batch = bb.count;
      args.group = 1;
      if (args.batch == 1) args.a.batch_stride = args.out_batch_stride = args.b.batch_stride = 0;
    }
  }
  dispatch(op, s, args.dtype, args);
}

void matmul_id(Session& s, const Tensor& x, const Tensor& w, const Tensor& ids, const Tensor& out) {
  const char* op = "matmul_id";
  check_device(op, s, "x", x);
  check_device(op, s, "w", w);
  check_device(op, s, "ids", ids);
  check_device(op, s, "out", out);
  check_dtype(op, "x", x, kFloatTypes);
  check_same_dtype(op, "x", x, "w", w);
  check_same_dtype(op, "x", x, "out", out);
  check_dtype(op, "ids", ids, kIdTypes);
  check_ndim(op, "w", w, 3, 3);
  check_ndim(op, "ids", ids, 2, 2);
  check_ndim(op, "x", x, 2, 3);
  check_contiguous(op, "w", w);
  check_contiguous(op, "ids", ids);
  const int64_t e = w.dim(0), n = w.dim(1), k = w.dim(2);
  const int64_t t = ids.dim(0), top_k = ids.dim(1);
  if (e < 1) throw_error<InvalidArgument>(op, "w has shape ", w.shape().str(), ": no experts");
  const bool per_slot = x.ndim() == 3;
  if (per_slot)
    check_shape(op, "x", x, Dims{t, top_k, k});
  else
    check_shape(op, "x", x, Dims{t, k});
  check_shape(op, "out", out, Dims{t, top_k, n});
  check_contiguous(op, "out", out);
  check_no_overlap(op, "out", out, "x", x, false);
  check_no_overlap(op, "out", out, "w", w, false);
  check_no_overlap(op, "out", out, "ids", ids, false);
  if (t * top_k > INT_MAX)
    throw_error<InvalidArgument>(op, t, " tokens x ", top_k, " slots exceed ", INT_MAX, " routed rows");
  const RowView xr = as_rows(op, "x", x);

  MatmulIdArgs args;
  args.dtype = x.dtype();
  args.tokens = t;
  args.top_k = top_k;
  args.experts = e;
  args.n = n;
  args.k = k;
  args.x = xr.data;
  args.x_row_stride = xr.row_stride;
  args.x_per_slot = per_slot;
  args.w = w.data();
  args.ids = ids.data();
  args.out = out.data();
  if (t == 0 || top_k == 0 || n == 0) return;
  dispatch(op, s, args.dtype, args);
}

}  // namespace mlxn
