#pragma once
// Layout kernels: strided copies, tiled transposes, row gathers and KV-cache writes.
// Copies move raw bytes in units of U bytes (an unsigned integer of that size, or uint4 for
// 16), so one instantiation per unit size serves every dtype. Framework-free: raw pointers,
// sizes and strides only.
#include <cstdint>
#include <type_traits>

#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

template <int U>
struct UnitOf;
template <>
struct UnitOf<1> {
  using type = uint8_t;
};
template <>
struct UnitOf<2> {
  using type = uint16_t;
};
template <>
struct UnitOf<4> {
  using type = uint32_t;
};
template <>
struct UnitOf<8> {
  using type = unsigned long long;
};
template <>
struct UnitOf<16> {
  using type = uint4;
};
template <int U>
using Unit = typename UnitOf<U>::type;

inline constexpr int kLayoutMaxDims = 8;

// Shape and strides (in units) of a copy; dim ndim-1 is fastest in dst.
struct CopyDims {
  int ndim;
  int64_t shape[kLayoutMaxDims];
  int64_t ss[kLayoutMaxDims];
  int64_t ds[kLayoutMaxDims];
};

// Offsets of the linear index `i` over dims [0, n) of d.
template <class I>
__device__ __forceinline__ void offsets_of(I i, int n, const CopyDims& d, int64_t& so, int64_t& dof) {
  so = 0;
  dof = 0;
#pragma unroll
  for (int k = kLayoutMaxDims - 1; k >= 0; --k) {
    if (k >= n) continue;
    const I e = I(d.shape[k]);
    const I q = i / e;
    const int64_t r = int64_t(i - q * e);
    so += r * d.ss[k];
    dof += r * d.ds[k];
    i = q;
  }
}

// ---- general copy: one unit per thread, full index arithmetic ------------------------------
// I is uint32_t when every linear index fits, which makes the divisions cheap.
template <int U, class I>
__global__ void __launch_bounds__(256)
    copy_general_kernel(const Unit<U>* __restrict__ src, Unit<U>* __restrict__ dst, CopyDims d, I total) {
  const I stride = I(gridDim.x) * blockDim.x;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    int64_t so, dof;
    offsets_of(i, d.ndim, d, so, dof);
    dst[dof] = src[so];
  }
}

// ---- row copy: the last dim is contiguous on both sides -------------------------------------
// Block b copies segment b % segs of row b / segs; each thread moves PER units spaced a block
// apart, all loads issued before the first store.
inline constexpr int kCopyRowThreads = 256;

template <int U, int PER>
__global__ void __launch_bounds__(kCopyRowThreads)
    copy_rows_kernel(const Unit<U>* __restrict__ src, Unit<U>* __restrict__ dst, CopyDims d, int64_t inner,
                     unsigned segs) {
  const unsigned seg = blockIdx.x % segs;
  const int64_t row = blockIdx.x / segs;
  int64_t so, dof;
  offsets_of(row, d.ndim - 1, d, so, dof);
  const int64_t base = int64_t(seg) * (kCopyRowThreads * PER) + threadIdx.x;
  Unit<U> v[PER];
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    const int64_t c = base + k * kCopyRowThreads;
    if (c < inner) v[k] = src[so + c];
  }
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    const int64_t c = base + k * kCopyRowThreads;
    if (c < inner) dst[dof + c] = v[k];
  }
}

// ---- tiled transpose --------------------------------------------------------------------
// dims [0, n-2) are batch dims; dim A = n-2 is contiguous in src, dim B = n-1 in dst.
struct TransposeParams {
  const char* src;
  char* dst;
  int64_t ext_a, ext_b;
  int64_t ss_b;  // src stride of B (elements)
  int64_t ds_a;  // dst stride of A (elements)
  int64_t tiles_a, tiles_b;
  CopyDims batch;  // ndim = n - 2 (may be 0), strides in elements
};

__device__ __forceinline__ void tile_origin(const TransposeParams& p, int64_t ta_size, int64_t tb_size, int64_t& a0,
                                            int64_t& b0, int64_t& so, int64_t& dof) {
  // Consecutive blocks walk along A, so neighbours read neighbouring src segments.
  const int64_t blk = blockIdx.x;
  const int64_t ta = blk % p.tiles_a, rest = blk / p.tiles_a;
  const int64_t tb = rest % p.tiles_b, bi = rest / p.tiles_b;
  a0 = ta * ta_size;
  b0 = tb * tb_size;
  offsets_of(bi, p.batch.ndim, p.batch, so, dof);
}

// Vector tile of E-byte elements with V = 16 / E per 16-byte chunk. The tile spans 8 chunks
// (128 bytes) along A and R rows along B. Phase 1: each thread loads 16-byte chunks of src
// rows into shared memory. Phase 2: each thread takes a V x V sub-block (V rows of one chunk
// column), transposes it in registers and stores V chunks of dst rows. Chunk columns are
// XOR-swizzled by (row / V) so that both phases are free of bank conflicts.
template <int E>
struct TransposeTile {
  static constexpr int V = 16 / E;
  static constexpr int R = 32 * V < 256 ? 32 * V : 256;  // rows (B extent of the tile)
  static constexpr int kThreads = 8 * R / V;             // one V x V sub-block per thread
  static constexpr int kTileA = 8 * V;                   // A extent of the tile
};

// Transposes a V x V block of E-byte elements held as V rows of four 32-bit words:
// out row j = element j of every in row.
template <int E>
__device__ __forceinline__ void transpose_regs(const uint32_t (&in)[16 / E][4], uint32_t (&out)[16 / E][4]) {
  if constexpr (E == 4) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int k = 0; k < 4; ++k) out[j][k] = in[k][j];
  } else if constexpr (E == 8) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      out[j][0] = in[0][2 * j];
      out[j][1] = in[0][2 * j + 1];
      out[j][2] = in[1][2 * j];
      out[j][3] = in[1][2 * j + 1];
    }
  } else if constexpr (E == 2) {
    // out[j] word m = (in[2m] element j, in[2m+1] element j); element j sits in word j/2.
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int m = 0; m < 4; ++m)
        out[j][m] = __byte_perm(in[2 * m][j / 2], in[2 * m + 1][j / 2], (j & 1) ? 0x7632 : 0x5410);
  } else {
    // E == 1: out[j] word m = byte j of in rows 4m .. 4m+3; byte j sits in word j/4.
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const unsigned b = j & 3;
      const unsigned sel = b | ((b + 4) << 4);  // byte b of x, then byte b of y
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const uint32_t lo = __byte_perm(in[4 * m][j / 4], in[4 * m + 1][j / 4], sel);
        const uint32_t hi = __byte_perm(in[4 * m + 2][j / 4], in[4 * m + 3][j / 4], sel);
        out[j][m] = __byte_perm(lo, hi, 0x5410);
      }
    }
  }
}

// Requirements (checked by the launcher): src and dst 16-byte aligned; ext_a, ext_b, ss_b,
// ds_a and every batch stride multiples of V.
template <int E>
__global__ void __launch_bounds__(TransposeTile<E>::kThreads) transpose_tile_vec_kernel(TransposeParams p) {
  using Tile = TransposeTile<E>;
  constexpr int V = Tile::V, R = Tile::R, kThreads = Tile::kThreads;
  __shared__ uint4 tile[R * 8];
  int64_t a0, b0, so, dof;
  tile_origin(p, Tile::kTileA, R, a0, b0, so, dof);
  const char* src = p.src + so * E;
  char* dst = p.dst + dof * E;
  const int t = threadIdx.x;

  // Phase 1: R rows x 8 chunks; a quarter-warp covers one row's 128 bytes.
  uint4 v[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int idx = i * kThreads + t, row = idx >> 3, ca = idx & 7;
    const int64_t b = b0 + row, a = a0 + int64_t(ca) * V;
    v[i] = make_uint4(0, 0, 0, 0);
    if (b < p.ext_b && a < p.ext_a) v[i] = load_once(reinterpret_cast<const uint4*>(src + (b * p.ss_b + a) * E));
  }
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int idx = i * kThreads + t, row = idx >> 3, ca = idx & 7;
    tile[row * 8 + (ca ^ ((row / V) & 7))] = v[i];
  }
  __syncthreads();

  // Phase 2: thread (ca, cb) owns rows cb*V .. cb*V+V-1 of chunk column ca.
  constexpr int kColsB = R / V;
  const int cb = t % kColsB, ca = t / kColsB;
  const int64_t a = a0 + int64_t(ca) * V, b = b0 + int64_t(cb) * V;
  if (a >= p.ext_a || b >= p.ext_b) return;
  uint32_t in[V][4], out[V][4];
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const uint4 w = tile[(cb * V + k) * 8 + (ca ^ (cb & 7))];
    in[k][0] = w.x;
    in[k][1] = w.y;
    in[k][2] = w.z;
    in[k][3] = w.w;
  }
  transpose_regs<E>(in, out);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    if (a + j >= p.ext_a) break;
    *reinterpret_cast<uint4*>(dst + ((a + j) * p.ds_a + b) * E) =
        make_uint4(out[j][0], out[j][1], out[j][2], out[j][3]);
  }
}

// Any sizes and alignments: a 32 x 32 element tile through padded shared memory.
inline constexpr int kTransposeScalarTile = 32;

template <int E>
__global__ void __launch_bounds__(256) transpose_tile_scalar_kernel(TransposeParams p) {
  using T = Unit<E>;
  constexpr int S = kTransposeScalarTile;
  __shared__ T tile[S][S + 1];
  int64_t a0, b0, so, dof;
  tile_origin(p, S, S, a0, b0, so, dof);
  const T* src = reinterpret_cast<const T*>(p.src) + so;
  T* dst = reinterpret_cast<T*>(p.dst) + dof;
  const int tx = threadIdx.x, ty = threadIdx.y;  // blockDim (32, 8)
#pragma unroll
  for (int k = ty; k < S; k += 8) {
    const int64_t b = b0 + k, a = a0 + tx;
    if (b < p.ext_b && a < p.ext_a) tile[k][tx] = src[b * p.ss_b + a];
  }
  __syncthreads();
#pragma unroll
  for (int k = ty; k < S; k += 8) {
    const int64_t a = a0 + k, b = b0 + tx;
    if (a < p.ext_a && b < p.ext_b) dst[a * p.ds_a + b] = tile[tx][k];
  }
}

// ---- row gather (embedding, gather_rows) ----------------------------------------------------
// Block b handles units [seg * blockDim, (seg + 1) * blockDim) of output row b / segs. An
// index outside [0, src_rows) produces a zero row, and nothing is read for it.
struct GatherParams {
  const char* src;
  int64_t src_rows, src_row_stride;  // stride in units (raw) or elements (scaled)
  const void* idx;
  int64_t idx_stride;
  char* out;
  int64_t out_row_stride;
  int64_t cols;  // units (raw) or elements (scaled) per row
  unsigned segs;
  float scale;
};

template <bool Signed>
__device__ __forceinline__ int64_t load_index(const void* idx, int64_t i) {
  if constexpr (Signed)
    return int64_t(static_cast<const int32_t*>(idx)[i]);
  else
    return int64_t(static_cast<const uint32_t*>(idx)[i]);
}

template <int U, bool Signed>
__global__ void __launch_bounds__(128) gather_rows_kernel(GatherParams p) {
  const int64_t m = blockIdx.x / p.segs;
  const int64_t c = int64_t(blockIdx.x % p.segs) * blockDim.x + threadIdx.x;
  if (c >= p.cols) return;
  const int64_t id = load_index<Signed>(p.idx, m * p.idx_stride);
  Unit<U> v{};
  if (id >= 0 && id < p.src_rows) v = reinterpret_cast<const Unit<U>*>(p.src)[id * p.src_row_stride + c];
  reinterpret_cast<Unit<U>*>(p.out)[m * p.out_row_stride + c] = v;
}

// Scaled rows: N elements of T per thread (N = 1, or a 16-byte vector), product in f32.
template <class T, int N, bool Signed>
__global__ void __launch_bounds__(128) gather_rows_scaled_kernel(GatherParams p) {
  const int64_t m = blockIdx.x / p.segs;
  const int64_t c = (int64_t(blockIdx.x % p.segs) * blockDim.x + threadIdx.x) * N;
  if (c >= p.cols) return;
  const int64_t id = load_index<Signed>(p.idx, m * p.idx_stride);
  T* o = reinterpret_cast<T*>(p.out) + m * p.out_row_stride + c;
  const bool valid = id >= 0 && id < p.src_rows;
  const T* s = reinterpret_cast<const T*>(p.src) + (valid ? id : 0) * p.src_row_stride + c;
  if constexpr (N > 1) {
    Vec<T> v;
    if (valid) v = load_vec(s);
#pragma unroll
    for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(valid ? to_f32(v.v[j]) * p.scale : 0.f);
    store_vec(o, v);
  } else {
    *o = from_f32<T>(valid ? to_f32(*s) * p.scale : 0.f);
  }
}

// ---- KV-cache write -------------------------------------------------------------------------
struct KvWriteParams {
  char* cache;
  int64_t heads, capacity;
  int64_t cache_head_stride, cache_row_stride;  // elements
  const char* src;
  int64_t src_token_stride, src_head_stride;  // elements
  int64_t first_token;
  int64_t start;  // reduced modulo capacity in ring mode
  const int32_t* positions;
  int64_t positions_stride;
  int chunks;  // N-element chunks per row
  bool ring;
};

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// One thread per N-element chunk of one (token, head) row: flat index = (t, h, chunk).
template <class S, class C, int N>
__global__ void __launch_bounds__(256) kv_cache_write_kernel(KvWriteParams p, int64_t total) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= total) return;
  const int64_t c = g % p.chunks, rest = g / p.chunks;
  const int64_t h = rest % p.heads, t = p.first_token + rest / p.heads;
  int64_t row;
  if (p.positions) {
    row = p.positions[t * p.positions_stride];
    if (row < 0) return;
    if (p.ring)
      row %= p.capacity;
    else if (row >= p.capacity)
      return;
  } else {
    row = p.start + t;
    if (p.ring) row %= p.capacity;
  }
  const auto* s = reinterpret_cast<const Pack<S, N>*>(reinterpret_cast<const S*>(p.src) + t * p.src_token_stride +
                                                      h * p.src_head_stride + c * N);
  auto* d = reinterpret_cast<Pack<C, N>*>(reinterpret_cast<C*>(p.cache) + h * p.cache_head_stride +
                                          row * p.cache_row_stride + c * N);
  const Pack<S, N> in = *s;
  if constexpr (std::is_same_v<S, C>) {
    *d = in;
  } else {
    Pack<C, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) out.v[j] = from_f32<C>(to_f32(in.v[j]));
    *d = out;
  }
}

}  // namespace mlxn::kernels
