// CPU layout ops. Copies move raw element bytes (an unsigned integer of the element's size),
// so one instantiation per element size serves every dtype.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu/common.h"
#include "ops/layout_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::CopyKind;
using detail::GatherArgs;
using detail::KvWriteArgs;
using detail::StridedCopyArgs;

namespace {

// Calls f.template operator()<U>() with U the unsigned integer of `bytes` bytes.
template <class F>
void dispatch_bytes(int bytes, const char* op, F&& f) {
  switch (bytes) {
    case 1:
      f.template operator()<uint8_t>();
      break;
    case 2:
      f.template operator()<uint16_t>();
      break;
    case 4:
      f.template operator()<uint32_t>();
      break;
    case 8:
      f.template operator()<uint64_t>();
      break;
    default:
      throw_error<Unsupported>(op, "cpu: elements of ", bytes, " bytes");
  }
}

// Walks the index space of dims [0, n) in row-major order, tracking src and dst offsets.
struct Odometer {
  int n = 0;
  const int64_t* shape = nullptr;
  const int64_t* ss = nullptr;
  const int64_t* ds = nullptr;
  int64_t idx[kMaxDims] = {};
  int64_t src_off = 0, dst_off = 0;

  Odometer(int n_, const StridedCopyArgs& a) : n(n_), shape(a.shape), ss(a.src_stride), ds(a.dst_stride) {}
  void seek(int64_t linear) {
    src_off = dst_off = 0;
    for (int i = n - 1; i >= 0; --i) {
      idx[i] = linear % shape[i];
      linear /= shape[i];
      src_off += idx[i] * ss[i];
      dst_off += idx[i] * ds[i];
    }
  }
  void next() {
    for (int i = n - 1; i >= 0; --i) {
      src_off += ss[i];
      dst_off += ds[i];
      if (++idx[i] < shape[i]) return;
      src_off -= shape[i] * ss[i];
      dst_off -= shape[i] * ds[i];
      idx[i] = 0;
    }
  }
};

// Last dim contiguous on both sides: one memcpy per row.
void copy_rows(const StridedCopyArgs& a) {
  const auto* src = static_cast<const char*>(a.src);
  auto* dst = static_cast<char*>(a.dst);
  const int64_t es = a.elem_bytes, inner = a.shape[a.ndim - 1];
  const int64_t rows = a.numel() / inner;
  if (rows == 1) {                                // one flat run: split it between threads
    constexpr int64_t kChunk = int64_t(1) << 16;  // bytes
    const int64_t bytes = inner * es, chunks = (bytes + kChunk - 1) / kChunk;
    parallel_for(chunks, kChunk, [&](int64_t c0, int64_t c1) {
      const int64_t lo = c0 * kChunk, hi = std::min(bytes, c1 * kChunk);
      std::memcpy(dst + lo, src + lo, size_t(hi - lo));
    });
    return;
  }
  parallel_for(rows, inner * es, [&](int64_t r0, int64_t r1) {
    Odometer od(a.ndim - 1, a);
    od.seek(r0);
    for (int64_t r = r0; r < r1; ++r, od.next())
      std::memcpy(dst + od.dst_off * es, src + od.src_off * es, size_t(inner * es));
  });
}

// dims [0, n-2) batch; dim n-2 (A) contiguous in src; dim n-1 (B) contiguous in dst.
// Each tile goes through a small contiguous buffer: src rows are read whole into it, dst rows
// are written whole from it. (Walking src directly along B with a power-of-two row pitch maps
// every row to the same cache set and thrashes L1.) Tiles are 256 bytes wide (128 elements
// at most), so each row touched moves several cache lines per TLB miss.
template <class U>
void copy_transpose(const StridedCopyArgs& a) {
  constexpr int64_t kTile = std::min<int64_t>(128, 256 / int64_t(sizeof(U)));
  const int n = a.ndim;
  const int64_t ext_a = a.shape[n - 2], ext_b = a.shape[n - 1];
  const int64_t ss_b = a.src_stride[n - 1], ds_a = a.dst_stride[n - 2];
  const int64_t tiles_a = (ext_a + kTile - 1) / kTile, tiles_b = (ext_b + kTile - 1) / kTile;
  const int64_t batch = a.numel() / (ext_a * ext_b);
  const auto* src = static_cast<const U*>(a.src);
  auto* dst = static_cast<U*>(a.dst);
  parallel_for(batch * tiles_a, kTile * ext_b, [&](int64_t i0, int64_t i1) {
    Odometer od(n - 2, a);
    int64_t cur_batch = -1;
    U buf[kTile][kTile];  // [b][a]
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t bi = i / tiles_a, a0 = (i % tiles_a) * kTile;
      if (bi != cur_batch) {
        od.seek(bi);
        cur_batch = bi;
      }
      const U* s = src + od.src_off;
      U* d = dst + od.dst_off;
      const int64_t na = std::min(kTile, ext_a - a0);
      for (int64_t tb = 0; tb < tiles_b; ++tb) {
        const int64_t b0 = tb * kTile, nb = std::min(kTile, ext_b - b0);
        for (int64_t ib = 0; ib < nb; ++ib) {
          const U* row = s + (b0 + ib) * ss_b + a0;
          for (int64_t ia = 0; ia < na; ++ia) buf[ib][ia] = row[ia];
        }
        for (int64_t ia = 0; ia < na; ++ia) {
          U* row = d + (a0 + ia) * ds_a + b0;
          for (int64_t ib = 0; ib < nb; ++ib) row[ib] = buf[ib][ia];
        }
      }
    }
  });
}

template <class U>
void copy_general(const StridedCopyArgs& a) {
  const auto* src = static_cast<const U*>(a.src);
  auto* dst = static_cast<U*>(a.dst);
  parallel_for(a.numel(), 4, [&](int64_t e0, int64_t e1) {
    Odometer od(a.ndim, a);
    od.seek(e0);
    for (int64_t e = e0; e < e1; ++e, od.next()) dst[od.dst_off] = src[od.src_off];
  });
}

void copy_cpu(Session&, const StridedCopyArgs& a) {
  if (a.kind == CopyKind::rows) return copy_rows(a);
  dispatch_bytes(a.elem_bytes, "copy", [&]<class U>() {
    if (a.kind == CopyKind::transpose)
      copy_transpose<U>(a);
    else
      copy_general<U>(a);
  });
}

// Index m of a gather as a signed 64-bit row number.
int64_t index_at(const GatherArgs& a, int64_t m) {
  const int64_t off = m * a.idx_stride;
  return a.idx_signed ? int64_t(static_cast<const int32_t*>(a.idx)[off])
                      : int64_t(static_cast<const uint32_t*>(a.idx)[off]);
}

void gather_cpu_impl(const char* op, const GatherArgs& a) {
  // Every index is checked before anything is written.
  for (int64_t m = 0; m < a.rows; ++m) {
    const int64_t id = index_at(a, m);
    if (id < 0 || id >= a.src_rows)
      throw_error<InvalidArgument>(op, "index ", id, " at position ", m, " is out of range for ", a.src_rows, " rows");
  }
  const auto* src = static_cast<const char*>(a.src);
  auto* out = static_cast<char*>(a.out);
  const int64_t es = a.elem_bytes;
  if (a.scale == 1.f) {
    parallel_for(a.rows, a.cols * es, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m)
        std::memcpy(out + m * a.out_row_stride * es, src + index_at(a, m) * a.src_row_stride * es, size_t(a.cols * es));
    });
    return;
  }
  dispatch_float(a.dtype, op, [&]<class T>() {
    parallel_for(a.rows, a.cols * 4, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const T* s = static_cast<const T*>(a.src) + index_at(a, m) * a.src_row_stride;
        T* o = static_cast<T*>(a.out) + m * a.out_row_stride;
        for (int64_t c = 0; c < a.cols; ++c) o[c] = from_float<T>(to_float(s[c]) * a.scale);
      }
    });
  });
}

void embedding_cpu(Session&, const GatherArgs& a) { gather_cpu_impl("embedding", a); }
void gather_rows_cpu(Session&, const GatherArgs& a) { gather_cpu_impl("gather_rows", a); }

// Cache row of token t; positions were checked beforehand.
int64_t kv_row(const KvWriteArgs& a, int64_t t) {
  const int64_t p = a.positions ? int64_t(a.positions[t * a.positions_stride]) : a.start + t;
  return a.ring ? p % a.capacity : p;
}

void kv_cache_write_cpu(Session&, const KvWriteArgs& a) {
  const char* op = "kv_cache_write";
  if (a.positions) {
    for (int64_t t = a.first_token; t < a.tokens; ++t) {
      const int64_t p = a.positions[t * a.positions_stride];
      if (p < 0 || (!a.ring && p >= a.capacity))
        throw_error<InvalidArgument>(op, "position ", p, " of token ", t, " is out of range for a cache of ",
                                     a.capacity, " rows", a.ring ? " (ring mode)" : " (linear mode)");
    }
  }
  // Heads in parallel, tokens in order, so a row written twice keeps the later token.
  dispatch_float(a.src_dtype, op, [&]<class S>() {
    dispatch_float(a.cache_dtype, op, [&]<class C>() {
      parallel_for(a.heads, (a.tokens - a.first_token) * a.dim, [&](int64_t h0, int64_t h1) {
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t t = a.first_token; t < a.tokens; ++t) {
            const S* s = static_cast<const S*>(a.src) + t * a.src_token_stride + h * a.src_head_stride;
            C* c = static_cast<C*>(a.cache) + h * a.cache_head_stride + kv_row(a, t) * a.cache_row_stride;
            if constexpr (std::is_same_v<S, C>) {
              std::memcpy(c, s, size_t(a.dim) * sizeof(C));
            } else {
              for (int64_t i = 0; i < a.dim; ++i) c[i] = from_float<C>(to_float(s[i]));
            }
          }
      });
    });
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(copy, layout, cpu, detail::kPlainTypes, detail::StridedCopyArgs, copy_cpu);
MLXN_REGISTER_KERNEL(transpose, layout, cpu, detail::kPlainTypes, detail::StridedCopyArgs, copy_cpu);
MLXN_REGISTER_KERNEL(permute_021, layout, cpu, detail::kPlainTypes, detail::StridedCopyArgs, copy_cpu);
MLXN_REGISTER_KERNEL(slice, layout, cpu, detail::kPlainTypes, detail::StridedCopyArgs, copy_cpu);
MLXN_REGISTER_KERNEL(concat, layout, cpu, detail::kPlainTypes, detail::StridedCopyArgs, copy_cpu);
MLXN_REGISTER_KERNEL(repeat_heads, layout, cpu, detail::kPlainTypes, detail::StridedCopyArgs, copy_cpu);
MLXN_REGISTER_KERNEL(embedding, layout, cpu, kFloatTypes, detail::GatherArgs, embedding_cpu);
MLXN_REGISTER_KERNEL(gather_rows, layout, cpu, detail::kPlainTypes, detail::GatherArgs, gather_rows_cpu);
MLXN_REGISTER_KERNEL(kv_cache_write, layout, cpu, kFloatTypes, detail::KvWriteArgs, kv_cache_write_cpu);

}  // namespace mlxn::cpu
