#pragma once
// Matmul kernels that cuBLASLt does not cover: the expert-routed products. Framework-free
// (raw pointers and sizes only).
//   matvec_id_kernel    few tokens: a warp per R output rows of one routed row, the expert
//                       looked up per routed row, weight rows streamed with 16-byte loads.
//   grouped_mma_kernel  many tokens, f16/bf16: pairs sorted by expert; each CTA computes a
//                       128 x 128 tile of one expert's rows with mma.sync tensor-core
//                       instructions, gathering x rows and scattering output rows by index.
//   grouped_simt_kernel the same grouping for f32 or unaligned operands, FMA units.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels/math.cuh"
#include "cuda/kernels/mma.cuh"

namespace mlxn::kernels {

// out[b] = beta * out[b] (0 when beta == 0: out is not read), over batch x rows x cols.
template <class T>
__global__ void scale_matrix_kernel(T* out, int64_t batch, int64_t rows, int64_t cols, int64_t ld, int64_t batch_stride,
                                    float beta) {
  pdl_wait();
  const int64_t total = batch * rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % cols, r = (i / cols) % rows, b = i / (cols * rows);
    T* p = out + b * batch_stride + r * ld + c;
    *p = from_f32<T>(beta == 0.f ? 0.f : beta * to_f32(*p));
  }
}

template <class T>
struct MatmulIdParams {
  const T* x;  // rows of K; row of pair p: (x_per_slot ? p : p / top_k)
  int64_t x_row_stride;
  int x_per_slot;
  int top_k;
  const T* w;           // [E, N, K] (rows of K contiguous)
  const uint32_t* ids;  // [P]; null: every pair uses expert 0 (a dense mat-vec)
  T* out;               // [P, N], rows out_row_stride apart
  int experts, n, k, pairs;
  int64_t out_row_stride;
};

// ---- decode: mat-vec per routed row ----------------------------------------------------------

// grid: (pairs, row-block slots); each of the WARPS warps owns R consecutive output rows of
// one pair, and blocks walk the row blocks (the grid is sized to the resident capacity, so
// there is no partial last wave). On the vector path every lane keeps R x U 16-byte loads
// in flight; MINB caps registers so that enough warps stay resident to cover DRAM latency.
template <class T, int R, int U, int WARPS, int MINB, bool kVec>
__global__ void __launch_bounds__(WARPS * 32, MINB) matvec_id_kernel(MatmulIdParams<T> p) {
  pdl_wait();
  pdl_launch_dependents();
  const int pair = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const uint32_t e = p.ids ? p.ids[pair] : 0u;
  T* out = p.out + int64_t(pair) * p.out_row_stride;
  const T* x = p.x + int64_t(p.x_per_slot ? pair : pair / p.top_k) * p.x_row_stride;
  for (int rb = blockIdx.y; rb * WARPS * R < p.n; rb += gridDim.y) {
    const int row0 = (rb * WARPS + warp) * R;
    if (row0 >= p.n) continue;
    if (e >= uint32_t(p.experts)) {  // an id outside [0, E): zero rows, nothing read
      if (lane < R && row0 + lane < p.n) out[row0 + lane] = from_f32<T>(0.f);
      continue;
    }
    // Rows past N read the last row again (valid memory); their sums are dropped.
    const T* wr[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wr[r] = p.w + (int64_t(e) * p.n + min(row0 + r, p.n - 1)) * p.k;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;
    if constexpr (kVec) {
      constexpr int N = Vec<T>::N, kStep = 32 * N;
      for (int k0 = lane * N; k0 < p.k; k0 += kStep * U) {
        Vec<T> xv[U], wv[R][U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int kk = k0 + u * kStep;
          if (kk < p.k) {
#pragma unroll
            for (int r = 0; r < R; ++r) wv[r][u] = load_vec(wr[r] + kk);
            xv[u] = load_vec(x + kk);
          }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (k0 + u * kStep < p.k) {
#pragma unroll
            for (int j = 0; j < N; ++j) {
              const float xf = to_f32(xv[u].v[j]);
#pragma unroll
              for (int r = 0; r < R; ++r) acc[r] += to_f32(wv[r][u].v[j]) * xf;
            }
          }
        }
      }
    } else {
      for (int kk = lane; kk < p.k; kk += 32) {
        const float xf = to_f32(x[kk]);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] += to_f32(wr[r][kk]) * xf;
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (row0 + r < p.n) out[row0 + r] = from_f32<T>(acc[r]);
    }
  }
}

// ---- prefill: grouping helpers ---------------------------------------------------------------

// tile_start[e] = sum over e' < e of ceil(rows(e') / bm), tile_start[E] = the total; rows(e)
// from the expert offsets. One block of 1024 threads, experts in chunks with a carry.
static __global__ void __launch_bounds__(1024)
    group_tiles_kernel(const uint32_t* offsets, int experts, int bm, int* tile_start) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ int warp_totals[32];
  __shared__ int carry_s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) carry_s = 0;
  __syncthreads();
  for (int base = 0; base < experts; base += blockDim.x) {
    const int e = base + threadIdx.x;
    const int tiles = e < experts ? int((offsets[e + 1] - offsets[e] + uint32_t(bm) - 1) / uint32_t(bm)) : 0;
    // inclusive scan inside the warp, then across warps
    int v = tiles;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int t = __shfl_up_sync(0xffffffffu, v, o);
      if (lane >= o) v += t;
    }
    if (lane == 31) warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
      int w = lane < int(blockDim.x >> 5) ? warp_totals[lane] : 0;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, w, o);
        if (lane >= o) w += t;
      }
      warp_totals[lane] = w;  // inclusive over warps
    }
    __syncthreads();
    const int carry = carry_s;
    const int excl = carry + (warp > 0 ? warp_totals[warp - 1] : 0) + v - tiles;
    if (e < experts) tile_start[e] = excl;
    __syncthreads();
    if (threadIdx.x == blockDim.x - 1) carry_s = carry + warp_totals[(blockDim.x >> 5) - 1];
    __syncthreads();
  }
  if (threadIdx.x == 0) tile_start[experts] = carry_s;
}

// Output rows of pairs whose id lies outside [0, E) (sorted after offsets[E]) become zeros.
// One warp per sorted position.
template <class T>
__global__ void zero_unrouted_kernel(const uint32_t* sorted_rows, const uint32_t* offsets, int experts, int pairs,
                                     T* out, int n) {
  pdl_wait();
  pdl_launch_dependents();
  const int warp = int((blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5), lane = threadIdx.x & 31;
  if (warp >= pairs || uint32_t(warp) < offsets[experts]) return;
  T* row = out + int64_t(sorted_rows[warp]) * n;
  for (int c = lane; c < n; c += 32) row[c] = from_f32<T>(0.f);
}

template <class T>
struct GroupedParams {
  MatmulIdParams<T> mm;
  const uint32_t* sorted_rows;  // [P] pair indices ordered by expert
  const uint32_t* offsets;      // [E + 1]
  const int* tile_start;        // [E + 1]
};

// The (expert, first sorted row, row count) of global row tile g; false past the last tile.
__device__ __forceinline__ bool find_tile(const int* tile_start, const uint32_t* offsets, int experts, int g, int bm,
                                          int& e, int& row_begin, int& rows) {
  if (g >= tile_start[experts]) return false;
  // the last expert whose first tile is <= g (empty experts share their successor's start)
  int lo = 0, hi = experts;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (tile_start[mid] <= g)
      lo = mid;
    else
      hi = mid;
  }
  e = lo;
  row_begin = int(offsets[e]) + (g - tile_start[e]) * bm;
  rows = min(int(offsets[e + 1]) - row_begin, bm);
  return true;
}

// ---- prefill: tensor-core grouped GEMM ------------------------------------------------------

inline constexpr int kMmaBN = 128, kMmaBK = 32, kMmaStages = 4, kMmaThreads = 256;

// A tile row of BK halves is BK / 8 16-byte chunks. Chunk c of row r is stored at c ^ f(r), f
// cycling over the chunks every 128 bytes of rows, so the eight rows an ldmatrix phase reads
// fall on all 32 banks: rows of 32 halves (two to 128 bytes) take (r / 2) % 4, rows of 64 r % 8.
template <int BK = kMmaBK>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  static_assert(BK == 32 || BK == 64, "tile rows of 32 or 64 halves");
  constexpr int kChunks = BK / 8, kRowsPerLine = 64 / BK;
  return row * BK + ((chunk ^ ((row / kRowsPerLine) % kChunks)) << 3);
}

// The stacked row a decoding loader reads for row r of expert e's tile at n0: rows past N read
// row N - 1 (valid memory; they only feed output columns past N, which are never stored).
__device__ __forceinline__ int64_t expert_tile_row(int e, int n, int n0, int r) {
  return int64_t(e) * n + min(n0 + r, n - 1);
}

// A decoding loader's 32 values (16 words of T pairs, in column order) as the 32-column half h
// of row r of a 64-column decoded tile.
template <class T>
__device__ __forceinline__ void store_decoded_half(T* dec, int r, int h, const uint32_t (&v)[16]) {
#pragma unroll
  for (int q = 0; q < 4; ++q)
    *reinterpret_cast<uint4*>(dec + swizzle<64>(r, 4 * h + q)) =
        make_uint4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
}

template <class T>
struct Pair2;
template <>
struct Pair2<__nv_bfloat16> {
  using type = __nv_bfloat162;
  static __device__ __forceinline__ type make(float a, float b) { return __floats2bfloat162_rn(a, b); }
};
template <>
struct Pair2<__half> {
  using type = __half2;
  static __device__ __forceinline__ type make(float a, float b) { return __floats2half2_rn(a, b); }
};

// grid: (N tiles, row-tile bound); 8 warps as 2 (rows) x 4 (cols), each a BM/2 x 32 warp tile
// of (BM / 32) x 4 m16n8k16 products. BM (32, 64 or 128) follows the rows per expert, so few
// tokens per expert do not pay for padded rows. Requires K % 8 == 0 and 16-byte aligned x
// rows and w.
// The W operand of grouped_mma_kernel, a kMmaBN x W::kBK tile per k-step, through kMmaStages
// stages of kStageBytes in shared memory: fetch(stage, extra, e, n0, k0, p, tid) issues thread
// tid's asynchronous copies of expert e's tile at (n0, k0) into a stage, and tile(stage, extra,
// dec, e, n0, k0, p, tid) returns the landed tile as swizzled T rows (swizzle<kBK>). `extra` is
// kExtraBytes of shared memory the loader keeps across k-steps (its copies there ride in the
// k-step's group); kMinBlocks the blocks per SM the kernel's registers are budgeted for (0: the
// compiler's choice). A loader with kDecodes stages the weights in another form and decodes
// them into `dec` (kMmaBN x kBK T values); the kernel then waits for every thread's part before
// the products.
// Dense experts (T rows): the stage is the tile.
template <class T>
struct DenseExpertTiles {
  static constexpr int kBK = kMmaBK;
  static constexpr int kStageBytes = kMmaBN * kBK * int(sizeof(T));
  static constexpr int kExtraBytes = 0;
  static constexpr bool kDecodes = false;
  static constexpr int kMinBlocks = 0;
  __device__ __forceinline__ void fetch(unsigned char* stage, unsigned char*, int e, int n0, int k0,
                                        const MatmulIdParams<T>& p, int tid) const {
    T* db = reinterpret_cast<T*>(stage);
    const T* wexp = p.w + int64_t(e) * p.n * p.k;
#pragma unroll
    for (int i = 0; i < (kMmaBN * kBK / 8) / kMmaThreads; ++i) {
      const int c = tid + i * kMmaThreads, r = c >> 2, ch = c & 3;
      const int kk = k0 + ch * 8;
      const bool ok = n0 + r < p.n && kk < p.k;
      const T* src = ok ? wexp + int64_t(n0 + r) * p.k + kk : p.w;
      cp_async16(db + swizzle<kBK>(r, ch), src, ok);
    }
  }
  __device__ __forceinline__ const T* tile(const unsigned char* stage, const unsigned char*, T*, int, int, int,
                                           const MatmulIdParams<T>&, int) const {
    return reinterpret_cast<const T*>(stage);
  }
};

// Dynamic shared memory of a BM-row tile: kMmaStages stages of A (BM x BK) and of W's form,
// the decoded tile for loaders that decode, and the loader's own.
template <class T, class W>
constexpr int grouped_smem_bytes(int bm) {
  return kMmaStages * (bm * W::kBK * int(sizeof(T)) + W::kStageBytes) +
         (W::kDecodes ? kMmaBN * W::kBK * int(sizeof(T)) : 0) + W::kExtraBytes;
}

template <class T, int BM, class W = DenseExpertTiles<T>>
__global__ void __launch_bounds__(kMmaThreads, W::kMinBlocks) grouped_mma_kernel(GroupedParams<T> gp, W w) {
  constexpr int MI = BM / 32, BK = W::kBK, kChunks = BK / 8;
  pdl_wait();
  pdl_launch_dependents();
  const MatmulIdParams<T>& p = gp.mm;
  int e, row_begin, rows;
  if (!find_tile(gp.tile_start, gp.offsets, p.experts, blockIdx.y, BM, e, row_begin, rows)) return;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sa = reinterpret_cast<T*>(smem_raw);
  unsigned char* sb = smem_raw + kMmaStages * BM * BK * sizeof(T);
  T* dec = reinterpret_cast<T*>(sb + kMmaStages * W::kStageBytes);
  unsigned char* extra = reinterpret_cast<unsigned char*>(dec) + (W::kDecodes ? kMmaBN * BK * sizeof(T) : 0);
  __shared__ int x_row[BM];    // x row (pair or token) of each tile row
  __shared__ int out_row[BM];  // pair index of each tile row, -1 past the end
  const int tid = threadIdx.x;
  for (int r = tid; r < BM; r += kMmaThreads) {
    if (r < rows) {
      const int pair = int(gp.sorted_rows[row_begin + r]);
      out_row[r] = pair;
      x_row[r] = p.x_per_slot ? pair : pair / p.top_k;
    } else {
      out_row[r] = -1;
      x_row[r] = 0;
    }
  }
  __syncthreads();
  const int n0 = blockIdx.x * kMmaBN;
  const int k_tiles = (p.k + BK - 1) / BK;
  auto w_stage = [&](int stage) { return sb + stage * W::kStageBytes; };

  // This thread's 16-byte chunks of x's tile (chunk c: row c / kChunks, columns 8 (c % kChunks) ..): where
  // they come from at k = 0 (null past the tile's rows) and where they go in a stage, formed
  // once, so that a k-step's copies cost an add and a compare each.
  constexpr int kAChunks = BM * BK / 8, kAPerThread = (kAChunks + kMmaThreads - 1) / kMmaThreads;
  const T* a_src[kAPerThread];
  int a_dst[kAPerThread], a_col[kAPerThread];
#pragma unroll
  for (int i = 0; i < kAPerThread; ++i) {
    const int c = tid + i * kMmaThreads, r = (c / kChunks) % BM, ch = c % kChunks;
    a_src[i] = c < kAChunks && r < rows ? p.x + int64_t(x_row[r]) * p.x_row_stride + ch * 8 : nullptr;
    a_dst[i] = swizzle<BK>(r, ch);
    a_col[i] = ch * 8;
  }

  // Starts the copies of x's rows and W of tile kt.
  auto load_tile = [&](int stage, int kt) {
    const int k0 = kt * BK;
    T* da = sa + stage * BM * BK;
#pragma unroll
    for (int i = 0; i < kAPerThread; ++i) {
      if (tid + i * kMmaThreads >= kAChunks) break;
      const bool ok = a_src[i] != nullptr && k0 + a_col[i] < p.k;
      cp_async16(da + a_dst[i], ok ? a_src[i] + k0 : p.x, ok);
    }
    w.fetch(w_stage(stage), extra, e, n0, k0, p, tid);
  };

  const int warp = tid >> 5, lane = tid & 31;
  const int wm = (warp >> 2) * (BM / 2), wn = (warp & 3) * 32;
  float acc[MI][4][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

#pragma unroll
  for (int s = 0; s < kMmaStages - 1; ++s) {
    if (s < k_tiles) load_tile(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kMmaStages - 2>();
    __syncthreads();  // tile kt landed for every thread; stage (kt - 1) is free again
    const int next = kt + kMmaStages - 1;
    if (next < k_tiles) load_tile(next % kMmaStages, next);
    cp_async_commit();
    const T* ta = sa + (kt % kMmaStages) * BM * BK;
    const T* tb = w.tile(w_stage(kt % kMmaStages), extra, dec, e, n0, kt * BK, p, tid);
    if constexpr (W::kDecodes) __syncthreads();  // the whole decoded tile before the products
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      uint32_t af[MI][4], bf[4][2];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
        ldsm_x4(af[mi], ta + swizzle<BK>(wm + mi * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        uint32_t r[4];
        ldsm_x4(r, tb + swizzle<BK>(wn + nj * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1)));
        bf[2 * nj][0] = r[0];
        bf[2 * nj][1] = r[1];
        bf[2 * nj + 1][0] = r[2];
        bf[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mma_16816<T>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
  }
  cp_async_wait<0>();

  // Accumulator (mi, ni): c0 c1 at row lane / 4, columns 2 (lane % 4) + {0, 1}; c2 c3 eight rows down.
  const bool pairs_ok = (p.n & 1) == 0;
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm + mi * 16 + (lane >> 2) + h * 8;
      const int pair = out_row[r];
      if (pair < 0) continue;
      T* orow = p.out + int64_t(pair) * p.n;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int c = n0 + wn + ni * 8 + (lane & 3) * 2;
        const float v0 = acc[mi][ni][2 * h], v1 = acc[mi][ni][2 * h + 1];
        if (pairs_ok && c + 1 < p.n) {
          *reinterpret_cast<typename Pair2<T>::type*>(orow + c) = Pair2<T>::make(v0, v1);
        } else {
          if (c < p.n) orow[c] = from_f32<T>(v0);
          if (c + 1 < p.n) orow[c + 1] = from_f32<T>(v1);
        }
      }
    }
}

// ---- prefill: FMA grouped GEMM (f32, or operands the tensor-core path cannot load) ---------

inline constexpr int kSimtBM = 64, kSimtBN = 64, kSimtBK = 16, kSimtThreads = 256;

// grid: (N tiles, row-tile bound); each thread a 4 x 4 block of outputs.
template <class T>
__global__ void __launch_bounds__(kSimtThreads) grouped_simt_kernel(GroupedParams<T> gp) {
  pdl_wait();
  pdl_launch_dependents();
  const MatmulIdParams<T>& p = gp.mm;
  int e, row_begin, rows;
  if (!find_tile(gp.tile_start, gp.offsets, p.experts, blockIdx.y, kSimtBM, e, row_begin, rows)) return;
  __shared__ float as[kSimtBK][kSimtBM + 4];
  __shared__ float bs[kSimtBK][kSimtBN + 4];
  __shared__ int64_t x_off[kSimtBM];
  __shared__ int out_row[kSimtBM];
  const int tid = threadIdx.x;
  for (int r = tid; r < kSimtBM; r += kSimtThreads) {
    const int pair = r < rows ? int(gp.sorted_rows[row_begin + r]) : -1;
    out_row[r] = pair;
    x_off[r] = pair < 0 ? 0 : int64_t(p.x_per_slot ? pair : pair / p.top_k) * p.x_row_stride;
  }
  __syncthreads();
  const int n0 = blockIdx.x * kSimtBN;
  const T* wexp = p.w + int64_t(e) * p.n * p.k;
  const int ty = tid / 16, tx = tid % 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < p.k; k0 += kSimtBK) {
#pragma unroll
    for (int i = 0; i < kSimtBM * kSimtBK / kSimtThreads; ++i) {
      const int idx = tid + i * kSimtThreads, r = idx / kSimtBK, kk = idx % kSimtBK;
      as[kk][r] = r < rows && k0 + kk < p.k ? to_f32(p.x[x_off[r] + k0 + kk]) : 0.f;
      bs[kk][r] = n0 + r < p.n && k0 + kk < p.k ? to_f32(wexp[int64_t(n0 + r) * p.k + k0 + kk]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtBK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = as[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = bs[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int pair = out_row[ty * 4 + i];
    if (pair < 0) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = n0 + tx * 4 + j;
      if (c < p.n) p.out[int64_t(pair) * p.n + c] = from_f32<T>(acc[i][j]);
    }
  }
}

}  // namespace mlxn::kernels
