#pragma once
// Row reductions and orderings: cumsum (CUB block scan), argmax (packed 64-bit max),
// argsort (CUB block radix sort for rows that fit one block; the segmented device sort is
// driven from the entry), top_k (block radix select: histogram passes over 8-bit digits of
// an order-preserving key find the k-th largest key, then the survivors are gathered in
// index order and bitonic-sorted).
//
// Float order everywhere: order_key() maps a float to a u32 whose integer order is numeric
// order, with every NaN above +inf and -0 equal to +0. Equal keys go to the lowest index.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

__device__ __forceinline__ uint32_t order_key(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0xffffffffu;  // NaN: above everything
  if (u == 0x80000000u) u = 0;                              // -0 == +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// ---- cumsum --------------------------------------------------------------------------------

// Running total carried from one tile of a row to the next. CUB calls it from the first
// warp with each tile's sum and uses lane 0's return value as the tile's prefix.
struct RunningTotal {
  float total;
  __device__ __forceinline__ float operator()(float tile_sum) {
    const float prefix = total;
    total += tile_sum;
    return prefix;
  }
};

// One block per row; tiles of THREADS * N elements, N = 16 bytes of T per thread. Each
// element is read and written by the same thread, so in place is safe.
template <class T, int THREADS>
__global__ void __launch_bounds__(THREADS)
    cumsum_rows_kernel(const T* x, int64_t x_stride, T* out, int64_t out_stride, int cols, bool vec) {
  constexpr int N = Vec<T>::N;
  using Scan = cub::BlockScan<float, THREADS, cub::BLOCK_SCAN_WARP_SCANS>;
  __shared__ typename Scan::TempStorage scan;
  const T* xr = x + int64_t(blockIdx.x) * x_stride;
  T* yr = out + int64_t(blockIdx.x) * out_stride;
  RunningTotal prefix{0.f};
  for (int base = 0; base < cols; base += THREADS * N) {
    const int c = base + int(threadIdx.x) * N;
    float v[N];
    if (vec && c < cols) {
      const Vec<T> w = load_vec(xr + c);
#pragma unroll
      for (int j = 0; j < N; ++j) v[j] = to_f32(w.v[j]);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) v[j] = c + j < cols ? to_f32(xr[c + j]) : 0.f;
    }
    Scan(scan).InclusiveSum(v, v, prefix);
    __syncthreads();  // the scan storage is reused by the next tile
    if (vec && c < cols) {
      Vec<T> w;
#pragma unroll
      for (int j = 0; j < N; ++j) w.v[j] = from_f32<T>(v[j]);
      store_vec(yr + c, w);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j)
        if (c + j < cols) yr[c + j] = from_f32<T>(v[j]);
    }
  }
}

// ---- argmax --------------------------------------------------------------------------------

// Key in the high half, the complemented index in the low half: the u64 maximum is the
// largest value, and among equal values the lowest index.
__device__ __forceinline__ uint64_t argmax_pack(float v, int i) {
  return (uint64_t(order_key(v)) << 32) | uint64_t(~uint32_t(i));
}
__device__ __forceinline__ int argmax_index(uint64_t packed) { return int(~uint32_t(packed & 0xffffffffu)); }

// grid (rows, segments): block (r, s) reduces columns [s * seg_len, (s + 1) * seg_len) of
// row r. With one segment it writes out[r]; otherwise its packed maximum goes to
// partial[r * segments + s] for argmax_finish_kernel. With vec, seg_len and cols are
// multiples of N and rows are 16-byte aligned.
template <class T, int THREADS>
__global__ void __launch_bounds__(THREADS)
    argmax_kernel(const T* x, int64_t x_stride, int cols, int seg_len, bool vec, int32_t* out, uint64_t* partial) {
  constexpr int N = Vec<T>::N;
  __shared__ uint64_t scratch[32];
  const T* xr = x + int64_t(blockIdx.x) * x_stride;
  const int begin = int(blockIdx.y) * seg_len;
  const int end = min(cols, begin + seg_len);
  uint64_t best = 0;  // below every real packed value (the lowest key, -inf's, is > 0)
  if (vec) {
    for (int c = begin + int(threadIdx.x) * N; c < end; c += THREADS * N) {
      const Vec<T> w = load_vec(xr + c);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const uint64_t p = argmax_pack(to_f32(w.v[j]), c + j);
        best = p > best ? p : best;
      }
    }
  } else {
    for (int c = begin + int(threadIdx.x); c < end; c += THREADS) {
      const uint64_t p = argmax_pack(to_f32(xr[c]), c);
      best = p > best ? p : best;
    }
  }
  best = warp_max_u64(best);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = best;
  __syncthreads();
  if (warp == 0) {
    best = lane < THREADS / 32 ? scratch[lane] : 0;
    best = warp_max_u64(best);
    if (lane == 0) {
      if (partial)
        partial[int64_t(blockIdx.x) * gridDim.y + blockIdx.y] = best;
      else
        out[blockIdx.x] = argmax_index(best);
    }
  }
}

// One warp per row over that row's `segments` partial maxima.
__global__ void argmax_finish_kernel(const uint64_t* partial, int segments, int64_t rows, int32_t* out) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  uint64_t best = 0;
  for (int s = lane; s < segments; s += 32) {
    const uint64_t p = partial[row * segments + s];
    best = p > best ? p : best;
  }
  best = warp_max_u64(best);
  if (lane == 0) out[row] = argmax_index(best);
}

// ---- argsort -------------------------------------------------------------------------------

// A row of at most THREADS * ITEMS elements sorted in one block. The radix sort is stable
// and sorts ascending on the complemented key, so larger values come first and equal
// values keep index order. Padding sorts last (complemented key 0xffffffff belongs to no
// float: that would be key 0, and NaNs all map to 0xffffffff).
template <int THREADS, int ITEMS>
__global__ void __launch_bounds__(THREADS)
    argsort_block_kernel(const float* x, int64_t x_stride, int32_t* out, int64_t out_stride, int cols) {
  using Sort = cub::BlockRadixSort<uint32_t, THREADS, ITEMS, int32_t>;
  static_assert(sizeof(typename Sort::TempStorage) <= 48 * 1024, "block sort storage exceeds static shared memory");
  __shared__ typename Sort::TempStorage storage;
  const float* xr = x + int64_t(blockIdx.x) * x_stride;
  uint32_t keys[ITEMS];
  int32_t idx[ITEMS];
#pragma unroll
  for (int j = 0; j < ITEMS; ++j) {
    const int i = int(threadIdx.x) * ITEMS + j;  // blocked: thread order is index order
    keys[j] = i < cols ? ~order_key(xr[i]) : 0xffffffffu;
    idx[j] = i;
  }
  Sort(storage).SortBlockedToStriped(keys, idx);
  int32_t* yr = out + int64_t(blockIdx.x) * out_stride;
#pragma unroll
  for (int j = 0; j < ITEMS; ++j) {
    const int i = j * THREADS + int(threadIdx.x);
    if (i < cols) yr[i] = idx[j];
  }
}

// Inputs of the device-wide segmented sort: complemented keys and column indices laid out
// with row stride `stride`, and each row's [begin, end) offsets.
__global__ void argsort_prepare_kernel(const float* x, int64_t x_stride, int64_t rows, int cols, int64_t stride,
                                       uint32_t* keys, int32_t* idx, int* begin, int* end) {
  const int64_t n = rows * cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols;
    const int c = int(e - r * cols);
    keys[r * stride + c] = ~order_key(x[r * x_stride + c]);
    idx[r * stride + c] = c;
    if (c == 0) {
      begin[r] = int(r * stride);
      end[r] = int(r * stride + cols);
    }
  }
}

// ---- top_k ---------------------------------------------------------------------------------

constexpr int kTopKThreads = 512;
constexpr int kTopKMaxK = 1024;        // survivors held in shared memory
constexpr int kTopKCandidates = 4096;  // a candidate set this small is finished in shared memory
constexpr int kTopKItems = 8;          // elements per thread per pass tile
constexpr int kTopKSegment = 4096;     // columns per block in the segmented first stage
constexpr int kTopKFew = 32;           // undecided keys this few are ranked by one warp

struct TopKShared {
  // Candidates (key, index); after the final selection the same bytes hold the sort buffer.
  union {
    struct {
      uint32_t key[kTopKCandidates];
      int32_t idx[kTopKCandidates];
    } cand;
    uint64_t sort[kTopKMaxK];
  };
  uint32_t surv_key[kTopKMaxK];
  int32_t surv_idx[kTopKMaxK];
  union {
    uint32_t hist[256];
    typename cub::BlockScan<uint32_t, kTopKThreads>::TempStorage scan;
  };
  uint32_t pick[3];            // chosen digit, elements above it, elements in it
  uint32_t few_key[kTopKFew];  // the last undecided keys, when they are this few
  int32_t few_idx[kTopKFew];
};
static_assert(sizeof(TopKShared) <= 48 * 1024, "top_k shared memory exceeds the static limit");

// Element sources. key(i) is the order key, index(i) the column in the row.
struct TopKRowSource {  // a row (or a segment of one) of floats in global memory
  const float* x;
  int base;  // column of x[0]
  __device__ __forceinline__ uint32_t key(int i) const { return order_key(x[i]); }
  __device__ __forceinline__ int32_t index(int i) const { return base + i; }
};
struct TopKPairSource {  // (key, index) arrays in global or shared memory
  const uint32_t* k;
  const int32_t* ix;
  __device__ __forceinline__ uint32_t key(int i) const { return k[i]; }
  __device__ __forceinline__ int32_t index(int i) const { return ix[i]; }
};

// The selection so far: keys whose masked bits equal `prefix` are still undecided, and
// k_rem of them are still to be taken; keys whose masked bits are above it are taken.
struct TopKState {
  uint32_t mask = 0, prefix = 0;
  int k_rem = 0;
  int n_eq = 0;  // undecided keys
};

// One radix level: histogram of the 8-bit digit at `shift` over the undecided keys, then
// the digit holding the k_rem-th largest of them. Every thread returns the same state.
template <class Src>
__device__ void topk_level(const Src& src, int n, int shift, TopKState& st, TopKShared& sh) {
  const int tid = threadIdx.x, lane = tid & 31;
  for (int i = tid; i < 256; i += kTopKThreads) sh.hist[i] = 0;
  __syncthreads();
  for (int base = 0; base < n; base += kTopKThreads * kTopKItems) {
    uint32_t kk[kTopKItems];
#pragma unroll
    for (int j = 0; j < kTopKItems; ++j) {
      const int i = base + j * kTopKThreads + tid;
      kk[j] = i < n ? src.key(i) : 0u;
    }
#pragma unroll
    for (int j = 0; j < kTopKItems; ++j) {
      const bool in = base + j * kTopKThreads + tid < n && (kk[j] & st.mask) == st.prefix;
      const unsigned active = __ballot_sync(0xffffffffu, in);
      if (in) {
        // Lanes with the same digit add once: skewed digits (most logits share their top
        // bits) would otherwise serialise on one shared-memory counter.
        const uint32_t digit = (kk[j] >> shift) & 255u;
        const unsigned peers = __match_any_sync(active, digit);
        if (lane == __ffs(peers) - 1) atomicAdd(&sh.hist[digit], uint32_t(__popc(peers)));
      }
    }
  }
  __syncthreads();
  if (tid < 32) {
    // Lane l scans digits 255 - 8l down to 248 - 8l; a warp scan finds the crossing lane.
    uint32_t c[8], sum = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      c[j] = sh.hist[255 - (lane * 8 + j)];
      sum += c[j];
    }
    uint32_t incl = sum;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t t = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += t;
    }
    const uint32_t need = uint32_t(st.k_rem);
    uint32_t above = incl - sum;
    if (above < need && need <= incl) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (above + c[j] >= need) {
          sh.pick[0] = uint32_t(255 - (lane * 8 + j));
          sh.pick[1] = above;
          sh.pick[2] = c[j];
          break;
        }
        above += c[j];
      }
    }
  }
  __syncthreads();
  st.prefix |= sh.pick[0] << shift;
  st.mask |= 255u << shift;
  st.k_rem -= int(sh.pick[1]);
  st.n_eq = int(sh.pick[2]);
  __syncthreads();  // pick is rewritten by the next level
}

// Ordered compaction: keys above the prefix go to gt_*[gt_base + rank], undecided keys
// with rank < eq_limit to eq_*[eq_base + rank]; ranks count in index order, so equal keys
// keep index order.
template <class Src>
__device__ void topk_gather(const Src& src, int n, const TopKState& st, uint32_t* gt_key, int32_t* gt_idx, int gt_base,
                            uint32_t* eq_key, int32_t* eq_idx, int eq_base, int eq_limit, TopKShared& sh) {
  using Scan = cub::BlockScan<uint32_t, kTopKThreads>;
  const int tid = threadIdx.x;
  uint32_t run_gt = 0, run_eq = 0;
  for (int base = 0; base < n; base += kTopKThreads * kTopKItems) {
    uint32_t kk[kTopKItems];
    uint32_t count = 0;  // above in the high half, undecided in the low half (each <= 4096)
#pragma unroll
    for (int j = 0; j < kTopKItems; ++j) {
      const int i = base + tid * kTopKItems + j;  // blocked, so thread order is index order
      kk[j] = i < n ? src.key(i) : 0u;
      if (i < n) {
        const uint32_t m = kk[j] & st.mask;
        count += m > st.prefix ? 0x10000u : m == st.prefix ? 1u : 0u;
      }
    }
    uint32_t excl, total;
    Scan(sh.scan).ExclusiveSum(count, excl, total);
    uint32_t pg = run_gt + (excl >> 16), pe = run_eq + (excl & 0xffffu);
#pragma unroll
    for (int j = 0; j < kTopKItems; ++j) {
      const int i = base + tid * kTopKItems + j;
      if (i >= n) break;
      const uint32_t m = kk[j] & st.mask;
      if (m > st.prefix) {
        gt_key[gt_base + pg] = kk[j];
        gt_idx[gt_base + pg] = src.index(i);
        ++pg;
      } else if (m == st.prefix) {
        if (pe < uint32_t(eq_limit)) {
          eq_key[eq_base + pe] = kk[j];
          eq_idx[eq_base + pe] = src.index(i);
        }
        ++pe;
      }
    }
    run_gt += total >> 16;
    run_eq += total & 0xffffu;
    __syncthreads();  // scan storage reuse; the writes above are visible after this
  }
}

// No more radix levels are needed once every undecided key is taken, all digits are
// fixed (the undecided keys are equal), or the undecided keys are few enough to rank.
__device__ __forceinline__ bool topk_pinned(const TopKState& st, int shift) {
  return st.n_eq == st.k_rem || shift == 0 || st.n_eq <= kTopKFew;
}

// Radix levels over a source until topk_pinned. Leaves shift at the last level done.
template <class Src>
__device__ void topk_levels(const Src& src, int n, int& shift, TopKState& st, TopKShared& sh) {
  for (;;) {
    topk_level(src, n, shift, st, sh);
    if (topk_pinned(st, shift)) return;
    shift -= 8;
  }
}

// Final selection once pinned: keys above the prefix go to surv[gt_base, k - k_rem), and
// k_rem undecided keys to surv[k - k_rem, k). When the undecided keys are equal or all
// taken, those are the first k_rem of them in index order; otherwise (at most kTopKFew of
// them) one warp ranks them by (key descending, index ascending).
template <class Src>
__device__ void topk_finish(const Src& src, int n, const TopKState& st, int gt_base, int k, TopKShared& sh) {
  const int eq_base = k - st.k_rem;
  if (st.n_eq == st.k_rem || st.n_eq > kTopKFew) {
    topk_gather(src, n, st, sh.surv_key, sh.surv_idx, gt_base, sh.surv_key, sh.surv_idx, eq_base, st.k_rem, sh);
    return;
  }
  topk_gather(src, n, st, sh.surv_key, sh.surv_idx, gt_base, sh.few_key, sh.few_idx, 0, st.n_eq, sh);
  const int lane = threadIdx.x;
  if (lane < st.n_eq) {  // lanes of warp 0 only: n_eq <= 32
    const uint32_t kl = sh.few_key[lane];
    int rank = 0;
    for (int j = 0; j < st.n_eq; ++j) {
      const uint32_t kj = sh.few_key[j];
      rank += kj > kl || (kj == kl && j < lane);  // gathered in index order
    }
    if (rank < st.k_rem) {
      sh.surv_key[eq_base + rank] = kl;
      sh.surv_idx[eq_base + rank] = sh.few_idx[lane];
    }
  }
  __syncthreads();
}

// The k largest of src[0, n) into sh.surv_key / surv_idx[0, k), unsorted; equal keys are
// in index order within the buffer, which the final sort does not rely on.
template <class Src>
__device__ void topk_select(const Src& src, int n, int k, TopKShared& sh) {
  TopKState st;
  st.k_rem = k;
  st.n_eq = n;
  int shift = 24;
  int gt_done = 0;  // survivors already placed
  if (n > kTopKCandidates) {
    // Stream over global memory until the undecided keys fit in shared memory.
    for (;;) {
      topk_level(src, n, shift, st, sh);
      if (topk_pinned(st, shift)) {
        topk_finish(src, n, st, 0, k, sh);
        return;
      }
      shift -= 8;
      if (st.n_eq <= kTopKCandidates) break;
    }
    topk_gather(src, n, st, sh.surv_key, sh.surv_idx, 0, sh.cand.key, sh.cand.idx, 0, st.n_eq, sh);
    gt_done = k - st.k_rem;
  } else {
    // Stage the whole source in shared memory. All of a thread's loads are issued before
    // its stores: the compiler cannot tell that the stores do not alias the source, and
    // would otherwise wait out one memory latency per element.
    for (int base = 0; base < n; base += kTopKThreads * kTopKItems) {
      uint32_t kk[kTopKItems];
      int32_t ii[kTopKItems];
#pragma unroll
      for (int j = 0; j < kTopKItems; ++j) {
        const int i = base + j * kTopKThreads + int(threadIdx.x);
        kk[j] = i < n ? src.key(i) : 0u;
        ii[j] = i < n ? src.index(i) : 0;
      }
#pragma unroll
      for (int j = 0; j < kTopKItems; ++j) {
        const int i = base + j * kTopKThreads + int(threadIdx.x);
        if (i < n) {
          sh.cand.key[i] = kk[j];
          sh.cand.idx[i] = ii[j];
        }
      }
    }
    __syncthreads();
  }
  const TopKPairSource cand{sh.cand.key, sh.cand.idx};
  const int cn = st.n_eq;
  topk_levels(cand, cn, shift, st, sh);
  topk_finish(cand, cn, st, gt_done, k, sh);
}

// Sorts the k survivors by (value descending, index ascending) and writes them out.
__device__ void topk_sort_and_write(int k, const float* xr, float* values, int32_t* indices, TopKShared& sh) {
  const int tid = threadIdx.x;
  int p = 1;
  while (p < k) p <<= 1;
  // Ascending order of (~key, index) is the required order; padding sorts last.
  for (int i = tid; i < p; i += kTopKThreads)
    sh.sort[i] = i < k ? (uint64_t(~sh.surv_key[i]) << 32) | uint32_t(sh.surv_idx[i]) : ~uint64_t(0);
  __syncthreads();
  // Bitonic network; pair i of a stage compares lo and lo + stride.
  auto stage = [&](int size, int stride, int first, int step) {
    for (int i = first; i < p / 2; i += step) {
      const int lo = 2 * stride * (i / stride) + (i % stride), hi = lo + stride;
      const bool ascending = (lo & size) == 0;
      const uint64_t a = sh.sort[lo], b = sh.sort[hi];
      if ((a > b) == ascending) {
        sh.sort[lo] = b;
        sh.sort[hi] = a;
      }
    }
  };
  if (p <= 64) {
    // Small k (the sampling case): one warp sorts, with warp barriers only.
    if (tid < 32) {
      for (int size = 2; size <= p; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
          stage(size, stride, tid, 32);
          __syncwarp();
        }
    }
  } else {
    for (int size = 2; size <= p; size <<= 1)
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        stage(size, stride, tid, kTopKThreads);
        __syncthreads();
      }
  }
  __syncthreads();
  for (int i = tid; i < k; i += kTopKThreads) {
    const int32_t ix = int32_t(uint32_t(sh.sort[i] & 0xffffffffu));
    const float v = xr[ix];
    indices[i] = ix;
    values[i] = v;
  }
}

struct TopKParams {
  const float* x;
  int64_t x_stride;
  int cols;
  int k;
  float* values;
  int64_t values_stride;
  int32_t* indices;
  int64_t indices_stride;
  // Two-stage form: segment s of row r writes its min(k, segment length) best to
  // cand_* + r * cand_stride + s * k; the merge reads cand_count of them per row.
  uint32_t* cand_key;
  int32_t* cand_idx;
  int64_t cand_stride;
  int cand_count;
};

// One block per row, straight from x.
__global__ void __launch_bounds__(kTopKThreads) topk_rows_kernel(TopKParams p) {
  __shared__ TopKShared sh;
  const float* xr = p.x + int64_t(blockIdx.x) * p.x_stride;
  topk_select(TopKRowSource{xr, 0}, p.cols, p.k, sh);
  __syncthreads();
  topk_sort_and_write(p.k, xr, p.values + int64_t(blockIdx.x) * p.values_stride,
                      p.indices + int64_t(blockIdx.x) * p.indices_stride, sh);
}

// First stage for few wide rows: grid (segments, rows); each block keeps its segment's best.
__global__ void __launch_bounds__(kTopKThreads) topk_segments_kernel(TopKParams p) {
  __shared__ TopKShared sh;
  const int64_t row = blockIdx.y;
  const int begin = int(blockIdx.x) * kTopKSegment;
  const int n = min(kTopKSegment, p.cols - begin);
  const int keep = min(p.k, n);
  topk_select(TopKRowSource{p.x + row * p.x_stride + begin, begin}, n, keep, sh);
  __syncthreads();
  uint32_t* ck = p.cand_key + row * p.cand_stride + int64_t(blockIdx.x) * p.k;
  int32_t* ci = p.cand_idx + row * p.cand_stride + int64_t(blockIdx.x) * p.k;
  for (int i = threadIdx.x; i < keep; i += kTopKThreads) {
    ck[i] = sh.surv_key[i];
    ci[i] = sh.surv_idx[i];
  }
}

// Second stage: the k best of each row's candidates.
__global__ void __launch_bounds__(kTopKThreads) topk_merge_kernel(TopKParams p) {
  __shared__ TopKShared sh;
  const int64_t row = blockIdx.x;
  const TopKPairSource src{p.cand_key + row * p.cand_stride, p.cand_idx + row * p.cand_stride};
  topk_select(src, p.cand_count, p.k, sh);
  __syncthreads();
  topk_sort_and_write(p.k, p.x + row * p.x_stride, p.values + row * p.values_stride, p.indices + row * p.indices_stride,
                      sh);
}

// Large k: the first k entries of each row's full descending order.
__global__ void topk_from_order_kernel(const int32_t* order, int64_t order_stride, const float* x, int64_t x_stride,
                                       int64_t rows, int k, float* values, int64_t values_stride, int32_t* indices,
                                       int64_t indices_stride) {
  const int64_t n = rows * k;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / k;
    const int j = int(e - r * k);
    const int32_t ix = order[r * order_stride + j];
    indices[r * indices_stride + j] = ix;
    values[r * values_stride + j] = x[r * x_stride + ix];
  }
}

}  // namespace mlxn::kernels
