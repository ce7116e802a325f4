// CUDA entry for the layout family: planned copies -> row / transpose / general kernels,
// row gathers and KV-cache writes. Copies pick the widest unit (up to 16 bytes) that every
// address, row length and stride allows.
#include <algorithm>
#include <cstdlib>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "ops/dispatch_int.h"
#include "cuda/common/launch.h"
#include "cuda/kernels/layout.cuh"
#include "ops/layout_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::CopyKind;
using detail::GatherArgs;
using detail::KvWriteArgs;
using detail::StridedCopyArgs;
namespace k = kernels;

namespace {

// Grid-stride kernels need no more blocks than this to fill the device.
constexpr int64_t kMaxGridStrideBlocks = int64_t(1) << 16;

uint64_t addr_bits(const void* p) { return uint64_t(reinterpret_cast<uintptr_t>(p)); }
uint64_t bits(int64_t v) { return uint64_t(std::llabs(v)); }

// Largest power of two <= 16 dividing every value whose bits are or-ed into `any`.
int widest_unit(uint64_t any) {
  int u = 16;
  while (u > 1 && (any & uint64_t(u - 1)) != 0) u >>= 1;
  return u;
}

// Calls f.template operator()<U>() for U in {1, 2, 4, 8, 16}.
template <class F>
void dispatch_unit(int u, const char* op, F&& f) {
  if (!detail::dispatch_int<1, 2, 4, 8, 16>(u, f)) throw_error<Unsupported>(op, "cuda: unit of ", u, " bytes");
}

template <int U>
void launch_general(Session& s, const char* op, const void* src, void* dst, const k::CopyDims& d, int64_t total) {
  const int64_t blocks = std::min((total + 255) / 256, kMaxGridStrideBlocks);
  const auto* sp = static_cast<const k::Unit<U>*>(src);
  auto* dp = static_cast<k::Unit<U>*>(dst);
  // 32-bit indices while i + grid stride cannot wrap.
  if (total < (int64_t(1) << 31)) {
    k::copy_general_kernel<U, uint32_t><<<grid_dim(op, blocks), 256, 0, stream_of(s)>>>(sp, dp, d, uint32_t(total));
  } else {
    k::copy_general_kernel<U, int64_t><<<grid_dim(op, blocks), 256, 0, stream_of(s)>>>(sp, dp, d, total);
  }
  check_launch(s, op);
}

// Last dim contiguous on both sides: copy in the widest unit the layout allows.
void copy_rows(Session& s, const char* op, const StridedCopyArgs& a) {
  const int n = a.ndim, E = a.elem_bytes;
  const int64_t inner = a.shape[n - 1];
  uint64_t any = addr_bits(a.src) | addr_bits(a.dst) | bits(inner * E);
  for (int i = 0; i < n - 1; ++i) any |= bits(a.src_stride[i] * E) | bits(a.dst_stride[i] * E);
  const int U = widest_unit(any);
  k::CopyDims d{};
  d.ndim = n;
  for (int i = 0; i < n - 1; ++i) {
    d.shape[i] = a.shape[i];
    d.ss[i] = a.src_stride[i] * E / U;
    d.ds[i] = a.dst_stride[i] * E / U;
  }
  const int64_t inner_u = inner * E / U;
  d.shape[n - 1] = inner_u;
  d.ss[n - 1] = d.ds[n - 1] = 1;
  const int64_t rows = a.numel() / inner;
  dispatch_unit(U, op, [&]<int UB>() {
    if (inner_u < 128) {  // short rows: one unit per thread over the whole index space
      launch_general<UB>(s, op, a.src, a.dst, d, rows * inner_u);
      return;
    }
    const auto* sp = static_cast<const k::Unit<UB>*>(a.src);
    auto* dp = static_cast<k::Unit<UB>*>(a.dst);
    constexpr int T = k::kCopyRowThreads;
    if (inner_u >= 2 * T) {
      const int64_t segs = (inner_u + 4 * T - 1) / (4 * T);
      k::copy_rows_kernel<UB, 4><<<grid_dim(op, rows * segs), T, 0, stream_of(s)>>>(sp, dp, d, inner_u, unsigned(segs));
    } else {
      const int64_t segs = (inner_u + T - 1) / T;
      k::copy_rows_kernel<UB, 1><<<grid_dim(op, rows * segs), T, 0, stream_of(s)>>>(sp, dp, d, inner_u, unsigned(segs));
    }
    check_launch(s, op);
  });
}

template <int E>
void copy_transpose(Session& s, const char* op, const StridedCopyArgs& a) {
  using Tile = k::TransposeTile<E>;
  constexpr int V = Tile::V;
  const int n = a.ndim;
  k::TransposeParams p{};
  p.src = static_cast<const char*>(a.src);
  p.dst = static_cast<char*>(a.dst);
  p.ext_a = a.shape[n - 2];
  p.ext_b = a.shape[n - 1];
  p.ss_b = a.src_stride[n - 1];
  p.ds_a = a.dst_stride[n - 2];
  p.batch.ndim = n - 2;
  int64_t batch = 1;
  bool vec = aligned16(a.src) && aligned16(a.dst) && p.ext_a % V == 0 && p.ext_b % V == 0 && p.ss_b % V == 0 &&
             p.ds_a % V == 0;
  for (int i = 0; i < n - 2; ++i) {
    p.batch.shape[i] = a.shape[i];
    p.batch.ss[i] = a.src_stride[i];
    p.batch.ds[i] = a.dst_stride[i];
    vec = vec && a.src_stride[i] % V == 0 && a.dst_stride[i] % V == 0;
    batch *= a.shape[i];
  }
  cudaStream_t st = stream_of(s);
  if (vec) {
    p.tiles_a = (p.ext_a + Tile::kTileA - 1) / Tile::kTileA;
    p.tiles_b = (p.ext_b + Tile::R - 1) / Tile::R;
    k::transpose_tile_vec_kernel<E><<<grid_dim(op, batch * p.tiles_a * p.tiles_b), Tile::kThreads, 0, st>>>(p);
  } else {
    constexpr int S = k::kTransposeScalarTile;
    p.tiles_a = (p.ext_a + S - 1) / S;
    p.tiles_b = (p.ext_b + S - 1) / S;
    k::transpose_tile_scalar_kernel<E><<<grid_dim(op, batch * p.tiles_a * p.tiles_b), dim3(32, 8), 0, st>>>(p);
  }
  check_launch(s, op);
}

template <class F>
void dispatch_elem(int bytes, const char* op, F&& f) {
  if (!detail::dispatch_int<1, 2, 4, 8>(bytes, f)) throw_error<Unsupported>(op, "cuda: elements of ", bytes, " bytes");
}

template <const char* Op>
void copy_cuda(Session& s, const StridedCopyArgs& a) {
  if (a.kind == CopyKind::rows) return copy_rows(s, Op, a);
  dispatch_elem(a.elem_bytes, Op, [&]<int E>() {
    if (a.kind == CopyKind::transpose) {
      copy_transpose<E>(s, Op, a);
    } else {
      k::CopyDims d{};
      d.ndim = a.ndim;
      for (int i = 0; i < a.ndim; ++i) {
        d.shape[i] = a.shape[i];
        d.ss[i] = a.src_stride[i];
        d.ds[i] = a.dst_stride[i];
      }
      launch_general<E>(s, Op, a.src, a.dst, d, a.numel());
    }
  });
}

template <const char* Op>
void gather_cuda(Session& s, const GatherArgs& a) {
  constexpr int kThreads = 128;
  const int E = a.elem_bytes;
  k::GatherParams p{};
  p.src = static_cast<const char*>(a.src);
  p.src_rows = a.src_rows;
  p.idx = a.idx;
  p.idx_stride = a.idx_stride;
  p.out = static_cast<char*>(a.out);
  p.scale = a.scale;
  cudaStream_t st = stream_of(s);
  if (a.scale == 1.f) {
    const int U = widest_unit(addr_bits(a.src) | addr_bits(a.out) | bits(a.cols * E) | bits(a.src_row_stride * E) |
                              bits(a.out_row_stride * E));
    p.cols = a.cols * E / U;
    p.src_row_stride = a.src_row_stride * E / U;
    p.out_row_stride = a.out_row_stride * E / U;
    p.segs = unsigned((p.cols + kThreads - 1) / kThreads);
    const unsigned grid = grid_dim(Op, a.rows * int64_t(p.segs));
    dispatch_unit(U, Op, [&]<int UB>() {
      if (a.idx_signed)
        k::gather_rows_kernel<UB, true><<<grid, kThreads, 0, st>>>(p);
      else
        k::gather_rows_kernel<UB, false><<<grid, kThreads, 0, st>>>(p);
    });
  } else {
    p.src_row_stride = a.src_row_stride;
    p.out_row_stride = a.out_row_stride;
    p.cols = a.cols;
    dispatch_float(a.dtype, Op, [&]<class T>() {
      constexpr int N = k::Vec<T>::N;
      const bool vec = aligned16(a.src) && aligned16(a.out) && a.cols % N == 0 && a.src_row_stride % N == 0 &&
                       a.out_row_stride % N == 0;
      const int64_t per_row = vec ? a.cols / N : a.cols;
      p.segs = unsigned((per_row + kThreads - 1) / kThreads);
      const unsigned grid = grid_dim(Op, a.rows * int64_t(p.segs));
      if (vec && a.idx_signed)
        k::gather_rows_scaled_kernel<T, N, true><<<grid, kThreads, 0, st>>>(p);
      else if (vec)
        k::gather_rows_scaled_kernel<T, N, false><<<grid, kThreads, 0, st>>>(p);
      else if (a.idx_signed)
        k::gather_rows_scaled_kernel<T, 1, true><<<grid, kThreads, 0, st>>>(p);
      else
        k::gather_rows_scaled_kernel<T, 1, false><<<grid, kThreads, 0, st>>>(p);
    });
  }
  check_launch(s, Op);
}

template <class S, class C, int N>
void launch_kv(Session& s, const KvWriteArgs& a, k::KvWriteParams p) {
  p.chunks = int(a.dim / N);
  const int64_t total = (a.tokens - a.first_token) * a.heads * p.chunks;
  k::kv_cache_write_kernel<S, C, N>
      <<<grid_dim("kv_cache_write", (total + 255) / 256), 256, 0, stream_of(s)>>>(p, total);
  check_launch(s, "kv_cache_write");
}

void kv_cache_write_cuda(Session& s, const KvWriteArgs& a) {
  if (a.dim > INT32_MAX) throw_error<InvalidArgument>("kv_cache_write", "head dim ", a.dim, " is too large");
  k::KvWriteParams p{};
  p.cache = static_cast<char*>(a.cache);
  p.heads = a.heads;
  p.capacity = a.capacity;
  p.cache_head_stride = a.cache_head_stride;
  p.cache_row_stride = a.cache_row_stride;
  p.src = static_cast<const char*>(a.src);
  p.src_token_stride = a.src_token_stride;
  p.src_head_stride = a.src_head_stride;
  p.first_token = a.first_token;
  p.start = a.start;
  p.positions = a.positions;
  p.positions_stride = a.positions_stride;
  p.ring = a.ring;
  dispatch_float(a.src_dtype, "kv_cache_write", [&]<class S>() {
    dispatch_float(a.cache_dtype, "kv_cache_write", [&]<class C>() {
      constexpr int N = 16 / int(sizeof(S) > sizeof(C) ? sizeof(S) : sizeof(C));
      const bool vec = addr_bits(a.src) % (N * sizeof(S)) == 0 && addr_bits(a.cache) % (N * sizeof(C)) == 0 &&
                       a.dim % N == 0 && a.src_token_stride % N == 0 && a.src_head_stride % N == 0 &&
                       a.cache_head_stride % N == 0 && a.cache_row_stride % N == 0;
      if (vec)
        launch_kv<S, C, N>(s, a, p);
      else
        launch_kv<S, C, 1>(s, a, p);
    });
  });
}

constexpr char kCopy[] = "copy";
constexpr char kTranspose[] = "transpose";
constexpr char kPermute021[] = "permute_021";
constexpr char kSlice[] = "slice";
constexpr char kConcat[] = "concat";
constexpr char kRepeatHeads[] = "repeat_heads";
constexpr char kEmbedding[] = "embedding";
constexpr char kGatherRows[] = "gather_rows";

}  // namespace

MLXN_REGISTER_KERNEL(copy, layout, cuda, detail::kPlainTypes, detail::StridedCopyArgs, copy_cuda<kCopy>);
MLXN_REGISTER_KERNEL(transpose, layout, cuda, detail::kPlainTypes, detail::StridedCopyArgs, copy_cuda<kTranspose>);
MLXN_REGISTER_KERNEL(permute_021, layout, cuda, detail::kPlainTypes, detail::StridedCopyArgs, copy_cuda<kPermute021>);
MLXN_REGISTER_KERNEL(slice, layout, cuda, detail::kPlainTypes, detail::StridedCopyArgs, copy_cuda<kSlice>);
MLXN_REGISTER_KERNEL(concat, layout, cuda, detail::kPlainTypes, detail::StridedCopyArgs, copy_cuda<kConcat>);
MLXN_REGISTER_KERNEL(repeat_heads, layout, cuda, detail::kPlainTypes, detail::StridedCopyArgs, copy_cuda<kRepeatHeads>);
MLXN_REGISTER_KERNEL(embedding, layout, cuda, kFloatTypes, detail::GatherArgs, gather_cuda<kEmbedding>);
MLXN_REGISTER_KERNEL(gather_rows, layout, cuda, detail::kPlainTypes, detail::GatherArgs, gather_cuda<kGatherRows>);
MLXN_REGISTER_KERNEL(kv_cache_write, layout, cuda, kFloatTypes, detail::KvWriteArgs, kv_cache_write_cuda);

}  // namespace mlxn::cuda
