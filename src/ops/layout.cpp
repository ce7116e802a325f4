// Frontend of the layout family: validation, copy planning and dispatch.
#include "mlxn/ops/layout.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "ops/layout_args.h"
#include "ops/registry.h"

namespace mlxn {

using detail::CopyKind;
using detail::GatherArgs;
using detail::KvWriteArgs;
using detail::StridedCopyArgs;

namespace {

// Extents of both sides of a tiled transpose below which per-element copies do as well.
constexpr int64_t kMinTransposeExtent = 8;

const DTypeSet kIndexTypes{DType::i32, DType::u32};

int norm_axis(const char* op, const Tensor& t, int axis) {
  const int n = t.ndim();
  const int a = axis < 0 ? axis + n : axis;
  if (a < 0 || a >= n) throw_error<InvalidArgument>(op, "axis ", axis, " out of range for ", n, " dims");
  return a;
}

// No two elements of an output may share memory (stride-0 or overlapping dims).
void check_distinct_elements(const char* op, const char* name, const Tensor& t) {
  if (t.numel() <= 1) return;
  std::vector<std::pair<int64_t, int64_t>> dims;  // |stride|, extent
  for (int i = 0; i < t.ndim(); ++i)
    if (t.dim(i) > 1) dims.emplace_back(std::llabs(t.stride(i)), t.dim(i));
  std::sort(dims.begin(), dims.end());
  int64_t reach = 0;  // largest offset spanned by the inner dims
  for (auto [stride, extent] : dims) {
    if (stride <= reach)
      throw_error<InvalidArgument>(op, name, " has elements sharing memory (shape ", t.shape().str(), ", strides ",
                                   t.strides().str(), ")");
    reach += (extent - 1) * stride;
  }
}

void check_index_vector(const char* op, const Session& s, const char* name, const Tensor& t, int64_t expected) {
  detail::check_device(op, s, name, t);
  if (t.ndim() != 1 || t.dim(0) != expected)
    throw_error<InvalidArgument>(op, name, " has shape ", t.shape().str(), ", expected [", expected, "]");
}

bool same_view(const Tensor& a, const Tensor& b) {
  return a.data() == b.data() && a.dtype() == b.dtype() && a.shape() == b.shape() && a.strides() == b.strides();
}

// Plans dst[i] = src[i] over their common shape (already validated).
StridedCopyArgs plan_copy(const Tensor& src, const Tensor& dst) {
  struct Dim {
    int64_t extent, ss, ds;
  };
  std::vector<Dim> dims;
  for (int i = 0; i < src.ndim(); ++i)
    if (src.dim(i) != 1) dims.push_back({src.dim(i), src.stride(i), dst.stride(i)});
  if (dims.empty()) dims.push_back({1, 1, 1});
  // dst order, outermost first; dst strides of dims wider than 1 are distinct (checked).
  std::stable_sort(dims.begin(), dims.end(),
                   [](const Dim& a, const Dim& b) { return std::llabs(a.ds) > std::llabs(b.ds); });
  std::vector<Dim> merged;
  for (const Dim& d : dims) {
    if (!merged.empty()) {
      Dim& m = merged.back();
      if (m.ds == d.ds * d.extent && m.ss == d.ss * d.extent) {
        m = {m.extent * d.extent, d.ss, d.ds};
        continue;
      }
    }
    merged.push_back(d);
  }
  const int n = int(merged.size());
  CopyKind kind = CopyKind::general;
  const Dim& last = merged.back();
  if (last.ds == 1 && last.ss == 1) {
    kind = CopyKind::rows;
  } else if (last.ds == 1 && last.extent >= kMinTransposeExtent) {
    // A dim contiguous in src becomes dim n-2; the batch dims keep their order.
    for (int j = n - 2; j >= 0; --j) {
      if (merged[size_t(j)].ss == 1 && merged[size_t(j)].extent >= kMinTransposeExtent) {
        const Dim a = merged[size_t(j)];
        merged.erase(merged.begin() + j);
        merged.insert(merged.end() - 1, a);
        kind = CopyKind::transpose;
        break;
      }
    }
  }
  StridedCopyArgs a;
  a.src = src.data();
  a.dst = dst.data();
  a.dtype = src.dtype();
  a.elem_bytes = int(element_size(src.dtype()));
  a.kind = kind;
  a.ndim = n;
  for (int i = 0; i < n; ++i) {
    a.shape[i] = merged[size_t(i)].extent;
    a.src_stride[i] = merged[size_t(i)].ss;
    a.dst_stride[i] = merged[size_t(i)].ds;
  }
  return a;
}

void run_copy(const char* op, Session& s, const Tensor& src, const Tensor& dst) {
  if (dst.numel() == 0) return;
  detail::dispatch(op, s, src.dtype(), plan_copy(src, dst));
}

// The checks every copy-like op makes on its input and output.
void check_pair(const char* op, Session& s, const char* in_name, const Tensor& in, const char* out_name,
                const Tensor& out) {
  detail::check_device(op, s, in_name, in);
  detail::check_device(op, s, out_name, out);
  detail::check_dtype(op, in_name, in, detail::kPlainTypes);
  detail::check_same_dtype(op, in_name, in, out_name, out);
  check_distinct_elements(op, out_name, out);
}

}  // namespace

void copy(Session& s, const Tensor& src, const Tensor& dst) {
  const char* op = "copy";
  check_pair(op, s, "src", src, "dst", dst);
  detail::check_same_shape(op, "src", src, "dst", dst);
  detail::check_no_overlap(op, "dst", dst, "src", src, /*same_view_ok=*/true);
  if (same_view(src, dst)) return;
  run_copy(op, s, src, dst);
}

void transpose(Session& s, const Tensor& x, const Tensor& out) {
  const char* op = "transpose";
  detail::check_defined(op, "x", x);
  detail::check_ndim(op, "x", x, 2);
  check_pair(op, s, "x", x, "out", out);
  Dims expected = x.shape();
  std::swap(expected[x.ndim() - 2], expected[x.ndim() - 1]);
  detail::check_shape(op, "out", out, expected);
  detail::check_no_overlap(op, "out", out, "x", x, false);
  run_copy(op, s, x.transpose(-2, -1), out);
}

void permute_021(Session& s, const Tensor& x, const Tensor& out) {
  const char* op = "permute_021";
  detail::check_defined(op, "x", x);
  detail::check_ndim(op, "x", x, 3, 3);
  check_pair(op, s, "x", x, "out", out);
  detail::check_shape(op, "out", out, {x.dim(0), x.dim(2), x.dim(1)});
  detail::check_no_overlap(op, "out", out, "x", x, false);
  run_copy(op, s, x.transpose(1, 2), out);
}

void slice(Session& s, const Tensor& x, const Tensor& out, int axis, int64_t start) {
  const char* op = "slice";
  check_pair(op, s, "x", x, "out", out);
  const int a = norm_axis(op, x, axis);
  if (out.ndim() != x.ndim())
    throw_error<InvalidArgument>(op, "out has ", out.ndim(), " dims, expected ", x.ndim(), " like x");
  Dims expected = x.shape();
  expected[a] = out.dim(a);
  detail::check_shape(op, "out", out, expected);
  const int64_t len = out.dim(a);
  if (start < 0 || start > x.dim(a) - len)
    throw_error<InvalidArgument>(op, "range [", start, ", ", start + len, ") out of bounds for axis ", axis,
                                 " of extent ", x.dim(a));
  detail::check_no_overlap(op, "out", out, "x", x, false);
  run_copy(op, s, x.slice(a, start, start + len), out);
}

void concat(Session& s, std::span<const Tensor> inputs, int axis, const Tensor& out) {
  const char* op = "concat";
  detail::check_device(op, s, "out", out);
  detail::check_dtype(op, "out", out, detail::kPlainTypes);
  check_distinct_elements(op, "out", out);
  if (inputs.empty()) throw_error<InvalidArgument>(op, "no inputs");
  const int a = norm_axis(op, out, axis);
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    const std::string name = "input " + std::to_string(i);
    detail::check_device(op, s, name.c_str(), in);
    detail::check_same_dtype(op, "out", out, name.c_str(), in);
    if (in.ndim() != out.ndim())
      throw_error<InvalidArgument>(op, name, " has ", in.ndim(), " dims, expected ", out.ndim(), " like out");
    Dims expected = out.shape();
    expected[a] = in.dim(a);
    detail::check_shape(op, name.c_str(), in, expected);
    detail::check_no_overlap(op, "out", out, name.c_str(), in, false);
    total += in.dim(a);
  }
  if (total != out.dim(a))
    throw_error<InvalidArgument>(op, "inputs add up to ", total, " along axis ", axis, ", but out has ", out.dim(a));
  int64_t offset = 0;
  for (const Tensor& in : inputs) {
    const int64_t len = in.dim(a);
    run_copy(op, s, in, out.slice(a, offset, offset + len));
    offset += len;
  }
}

void concat(Session& s, std::initializer_list<Tensor> inputs, int axis, const Tensor& out) {
  concat(s, std::span<const Tensor>(inputs.begin(), inputs.size()), axis, out);
}

void repeat_heads(Session& s, const Tensor& x, const Tensor& out, RepeatMode mode) {
  const char* op = "repeat_heads";
  detail::check_defined(op, "x", x);
  detail::check_ndim(op, "x", x, 4, 4);
  check_pair(op, s, "x", x, "out", out);
  detail::check_ndim(op, "out", out, 4, 4);
  const int64_t B = x.dim(0), hkv = x.dim(1), T = x.dim(2), D = x.dim(3), H = out.dim(1);
  if (hkv == 0 ? H != 0 : H % hkv != 0)
    throw_error<InvalidArgument>(op, "out has ", H, " heads, not a multiple of x's ", hkv);
  detail::check_shape(op, "out", out, {B, H, T, D});
  detail::check_no_overlap(op, "out", out, "x", x, false);
  if (out.numel() == 0) return;
  const int64_t n = H / hkv;
  // Both as 5-D views [B, ., ., T, D] where x is broadcast (stride 0) over the repeat dim.
  Tensor src, dst;
  if (mode == RepeatMode::block) {  // h = k * n + r reads head k
    src = Tensor(x.data(), x.dtype(), {B, hkv, n, T, D}, x.device(),
                 {x.stride(0), x.stride(1), 0, x.stride(2), x.stride(3)});
    dst = Tensor(out.data(), out.dtype(), {B, hkv, n, T, D}, out.device(),
                 {out.stride(0), out.stride(1) * n, out.stride(1), out.stride(2), out.stride(3)});
  } else {  // h = r * Hkv + k reads head k
    src = Tensor(x.data(), x.dtype(), {B, n, hkv, T, D}, x.device(),
                 {x.stride(0), 0, x.stride(1), x.stride(2), x.stride(3)});
    dst = Tensor(out.data(), out.dtype(), {B, n, hkv, T, D}, out.device(),
                 {out.stride(0), out.stride(1) * hkv, out.stride(1), out.stride(2), out.stride(3)});
  }
  run_copy(op, s, src, dst);
}

namespace {

// Shared by embedding and gather_rows.
GatherArgs gather_args(const char* op, Session& s, const char* src_name, const Tensor& src, const char* idx_name,
                       const Tensor& idx, const Tensor& out) {
  detail::check_device(op, s, src_name, src);
  detail::check_device(op, s, "out", out);
  detail::check_ndim(op, src_name, src, 2, 2);
  detail::check_same_dtype(op, src_name, src, "out", out);
  detail::check_ndim(op, "out", out, 2, 2);
  detail::check_dtype(op, idx_name, idx, kIndexTypes);
  check_index_vector(op, s, idx_name, idx, out.dim(0));
  detail::check_shape(op, "out", out, {idx.dim(0), src.dim(1)});
  detail::check_no_overlap(op, "out", out, src_name, src, false);
  detail::check_no_overlap(op, "out", out, idx_name, idx, false);
  const detail::RowView sv = detail::as_rows(op, src_name, src);
  const detail::RowView ov = detail::as_rows(op, "out", out);
  GatherArgs a;
  a.src = sv.data;
  a.src_rows = src.dim(0);
  a.src_row_stride = sv.row_stride;
  a.idx = idx.data();
  a.idx_signed = idx.dtype() == DType::i32;
  a.idx_stride = idx.dim(0) > 1 ? idx.stride(0) : 1;
  a.out = ov.data;
  a.out_row_stride = ov.row_stride;
  a.rows = out.dim(0);
  a.cols = out.dim(1);
  a.dtype = src.dtype();
  a.elem_bytes = int(element_size(src.dtype()));
  return a;
}

}  // namespace

void embedding(Session& s, const Tensor& table, const Tensor& ids, const Tensor& out, float scale) {
  const char* op = "embedding";
  detail::check_defined(op, "table", table);
  detail::check_dtype(op, "table", table, kFloatTypes);
  if (!std::isfinite(scale)) throw_error<InvalidArgument>(op, "scale must be finite, got ", scale);
  GatherArgs a = gather_args(op, s, "table", table, "ids", ids, out);
  a.scale = scale;
  if (a.rows == 0 || a.cols == 0) return;
  detail::dispatch(op, s, a.dtype, a);
}

void gather_rows(Session& s, const Tensor& src, const Tensor& idx, const Tensor& out) {
  const char* op = "gather_rows";
  detail::check_defined(op, "src", src);
  detail::check_dtype(op, "src", src, detail::kPlainTypes);
  GatherArgs a = gather_args(op, s, "src", src, "idx", idx, out);
  if (a.rows == 0 || a.cols == 0) return;
  detail::dispatch(op, s, a.dtype, a);
}

void kv_cache_write(Session& s, const Tensor& cache, const Tensor& src, const KvWriteParams& p) {
  const char* op = "kv_cache_write";
  detail::check_device(op, s, "cache", cache);
  detail::check_device(op, s, "src", src);
  detail::check_dtype(op, "cache", cache, kFloatTypes);
  detail::check_dtype(op, "src", src, kFloatTypes);
  detail::check_ndim(op, "cache", cache, 3, 3);
  detail::check_ndim(op, "src", src, 3, 3);
  const int64_t H = cache.dim(0), capacity = cache.dim(1), D = cache.dim(2), T = src.dim(0);
  detail::check_shape(op, "src", src, {T, H, D});
  if (D > 1 && cache.stride(2) != 1)
    throw_error<InvalidArgument>(op, "cache last dim must be contiguous (strides ", cache.strides().str(), ")");
  if (D > 1 && src.stride(2) != 1)
    throw_error<InvalidArgument>(op, "src last dim must be contiguous (strides ", src.strides().str(), ")");
  check_distinct_elements(op, "cache", cache);
  detail::check_no_overlap(op, "cache", cache, "src", src, false);
  if (p.positions) {
    detail::check_dtype(op, "positions", *p.positions, {DType::i32});
    check_index_vector(op, s, "positions", *p.positions, T);
    detail::check_no_overlap(op, "cache", cache, "positions", *p.positions, false);
  } else {
    if (p.start < 0) throw_error<InvalidArgument>(op, "start must be >= 0, got ", p.start);
    if (!p.ring && p.start > capacity - T)
      throw_error<InvalidArgument>(op, "rows [", p.start, ", ", p.start + T, ") exceed the cache capacity ", capacity,
                                   " (linear mode)");
  }
  if (T == 0 || H == 0 || D == 0) return;
  if (capacity == 0) throw_error<InvalidArgument>(op, "cache has capacity 0 but ", T, " tokens to write");
  KvWriteArgs a;
  a.cache = cache.data();
  a.cache_dtype = cache.dtype();
  a.heads = H;
  a.capacity = capacity;
  a.dim = D;
  a.cache_head_stride = cache.stride(0);
  a.cache_row_stride = cache.stride(1);
  a.src = src.data();
  a.src_dtype = src.dtype();
  a.src_token_stride = src.stride(0);
  a.src_head_stride = src.stride(1);
  a.tokens = T;
  a.first_token = p.ring && T > capacity ? T - capacity : 0;
  a.start = p.ring ? p.start % capacity : p.start;  // keeps start + t far from overflow
  a.ring = p.ring;
  if (p.positions) {
    a.positions = p.positions->data_as<const int32_t>();
    a.positions_stride = T > 1 ? p.positions->stride(0) : 1;
  }
  detail::dispatch(op, s, cache.dtype(), a);
}

}  // namespace mlxn
