#pragma once
// Row softmax with scale, soft-capping and an additive mask. Kernel shapes:
//   - narrow rows: one warp per row, the row in registers, warp shuffles only;
//   - rows up to 32 values per thread of a 512-thread block: one block per row, the row in
//     registers, so x is read from memory once;
//   - wider rows up to 4 such blocks: a thread-block cluster per row, each block holding a
//     slice in registers, the blocks' (max, sum) pairs merged through distributed shared
//     memory. Two 512-thread blocks fit an SM where one 1024-thread block would, so one
//     row's loads overlap another row's stores;
//   - wider still: one block per row, an online pass (running max and a sum rescaled as the
//     max grows), then an output pass that reads x again.
// A thread first reduces its own values to a (shift, sum) pair; pairs then merge across the
// block in one reduction instead of a max reduction followed by a sum reduction.
// Exponentials are exp2f(fma(t, log2 e, -shift)) with shift = max * log2 e rounded to float:
// the fma keeps t * log2 e exact, so the argument is accurate to its own (small) size however
// large the logits. Sums are kept relative to the shift actually used (not to the exact
// max * log2 e), so every rescaling between shifts is exact and the rounding of a shift
// cancels in the normalisation.
#include <cooperative_groups.h>

#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

template <class T, class M>
struct SoftmaxKernelParams {
  const T* x;
  T* out;
  const M* mask;                              // may be null
  int64_t x_stride, out_stride, mask_stride;  // elements between rows
  int64_t rows;
  int64_t mask_rows;  // row r reads mask row r % mask_rows
  int cols;
  int part_cols;  // columns per block of a cluster (a multiple of the vector width)
  float scale;
  float softcap;  // 0 = off
};

constexpr float kLog2e = 1.4426950408889634f;

// A logit in natural units. m is the mask value (0 without a mask; may be -inf).
template <class T, class M>
__device__ __forceinline__ float softmax_logit(const SoftmaxKernelParams<T, M>& p, float x, float m) {
  float t = x * p.scale;
  if (p.softcap > 0.f) t = p.softcap * tanhf(t / p.softcap);
  return t + m;
}

// exp2(t * log2 e - shift): exp(t - max) up to the factor 2^(max * log2 e - shift).
__device__ __forceinline__ float softmax_exp(float t, float shift) { return exp2f(fmaf(t, kLog2e, -shift)); }

// The shift for logits whose max is m: -inf when m is (empty or fully masked).
__device__ __forceinline__ float softmax_shift(float m) { return m == -INFINITY ? -INFINITY : m * kLog2e; }

// Turns raw x values of chunk [c, c + N) (already loaded into t) into logits; columns at or
// past `end` become -inf (they add nothing). The mask is read here rather than with x: it
// is small and shared by many rows, so it is usually a cache hit.
template <bool VEC, bool MASKED, class T, class M, int N>
__device__ __forceinline__ void softmax_logits(const SoftmaxKernelParams<T, M>& p, const M* m, int c, int end,
                                               float (&t)[N]) {
  float mv[N] = {};
  if constexpr (MASKED) load_chunk<VEC, M, N>(m, c, end, mv);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const bool in = VEC ? c < end : c + j < end;
    t[j] = in ? softmax_logit(p, t[j], mv[j]) : -INFINITY;
  }
}

template <bool MASKED, class T, class M>
__device__ __forceinline__ const M* softmax_mask_row(const SoftmaxKernelParams<T, M>& p, int64_t row) {
  return MASKED ? p.mask + (row % p.mask_rows) * p.mask_stride : nullptr;
}

// A set of logits as (m, s): m its shift (max * log2 e, rounded) and s the sum of
// exp2(t * log2 e - m). m == -inf means the set is empty or fully masked; s is then 0.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum merge_max_sum(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * exp2f(a.m - m) + b.s * exp2f(b.m - m)};
}

__device__ __forceinline__ MaxSum warp_max_sum(MaxSum v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = merge_max_sum(v, w);
  }
  return v;
}

// Every thread of the block gets the merged pair. Called once per kernel (no reuse of scratch).
__device__ __forceinline__ MaxSum block_max_sum(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_max_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : MaxSum{-INFINITY, 0.f};
  return warp_max_sum(v);
}

// Exponentiates a thread's VPT x N logits in place against its own max; returns its pair.
template <int VPT, int N>
__device__ __forceinline__ MaxSum exp_local(float (&v)[VPT][N]) {
  float m = -INFINITY;
#pragma unroll
  for (int k = 0; k < VPT; ++k)
#pragma unroll
    for (int j = 0; j < N; ++j) m = fmaxf(m, v[k][j]);
  const float shift = softmax_shift(m);
  const float use = m == -INFINITY ? 0.f : shift;  // every term is 0 then
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k)
#pragma unroll
    for (int j = 0; j < N; ++j) {
      v[k][j] = softmax_exp(v[k][j], use);
      s += v[k][j];
    }
  return {shift, s};
}

// Factor turning a thread's local exponentials into outputs: 2^(local shift - row shift) /
// row sum. A fully masked row (row shift -inf) gives 0, so its outputs are zeros; a NaN sum
// propagates.
__device__ __forceinline__ float output_factor(MaxSum local, MaxSum row) {
  if (row.m == -INFINITY || local.m == -INFINITY) return 0.f;
  return exp2f(local.m - row.m) / row.s;
}

// One warp per row; blockDim = (32, rows per block). Lane l owns chunks (k * 32 + l) * N;
// 32 * VPT * N >= cols.
template <class T, class M, bool MASKED, bool VEC, int VPT>
__global__ void __launch_bounds__(256) softmax_warp_kernel(SoftmaxKernelParams<T, M> p) {
  constexpr int N = Vec<T>::N;
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.rows) return;  // whole warps leave together: no block barrier below
  const int lane = threadIdx.x;
  const T* x = p.x + row * p.x_stride;
  const M* m = softmax_mask_row<MASKED>(p, row);
  float v[VPT][N];
#pragma unroll
  for (int k = 0; k < VPT; ++k) load_chunk<VEC, T, N>(x, (k * 32 + lane) * N, p.cols, v[k]);
#pragma unroll
  for (int k = 0; k < VPT; ++k) softmax_logits<VEC, MASKED>(p, m, (k * 32 + lane) * N, p.cols, v[k]);
  const MaxSum local = exp_local<VPT, N>(v);
  const float f = output_factor(local, warp_max_sum(local));
  T* y = p.out + row * p.out_stride;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * 32 + lane) * N;
    if (c >= p.cols) break;
#pragma unroll
    for (int j = 0; j < N; ++j) v[k][j] *= f;
    store_chunk<VEC, T, N>(y, c, p.cols, v[k]);
  }
}

// CLUSTER blocks per row (1: a plain block per row). Block `part` of a row owns columns
// [part * part_cols, (part + 1) * part_cols); its thread t owns chunks starting at
// part * part_cols + (k * blockDim.x + t) * N; blockDim * VPT * N >= part_cols.
// At most 512 threads, and at most 64 registers a thread so that two blocks fit an SM.
template <class T, class M, bool MASKED, bool VEC, int VPT, int CLUSTER>
__global__ void __launch_bounds__(512, 2) softmax_block_kernel(SoftmaxKernelParams<T, M> p) {
  constexpr int N = Vec<T>::N;
  __shared__ MaxSum scratch[32];
  const int64_t row = CLUSTER > 1 ? blockIdx.x / CLUSTER : blockIdx.x;
  const int c0 = CLUSTER > 1 ? int(blockIdx.x % CLUSTER) * p.part_cols : 0;
  const int end = CLUSTER > 1 ? min(p.cols, c0 + p.part_cols) : p.cols;
  const T* x = p.x + row * p.x_stride;
  const M* m = softmax_mask_row<MASKED>(p, row);
  float v[VPT][N];
  // Every load is issued before the first use, so their latencies overlap.
#pragma unroll
  for (int k = 0; k < VPT; ++k) load_chunk<VEC, T, N>(x, c0 + (k * blockDim.x + threadIdx.x) * N, end, v[k]);
#pragma unroll
  for (int k = 0; k < VPT; ++k) softmax_logits<VEC, MASKED>(p, m, c0 + (k * blockDim.x + threadIdx.x) * N, end, v[k]);
  const MaxSum local = exp_local<VPT, N>(v);
  MaxSum total = block_max_sum(local, scratch);
  if constexpr (CLUSTER > 1) {
    // Each block publishes its pair; every block merges all of them in the same order, so
    // the blocks of a row agree exactly. The second barrier keeps each block's shared
    // memory alive until the others have read it.
    namespace cg = cooperative_groups;
    __shared__ MaxSum published;
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) published = total;
    cluster.sync();
    MaxSum merged{-INFINITY, 0.f};
#pragma unroll
    for (int r = 0; r < CLUSTER; ++r) merged = merge_max_sum(merged, *cluster.map_shared_rank(&published, r));
    cluster.sync();
    total = merged;
  }
  const float f = output_factor(local, total);
  T* y = p.out + row * p.out_stride;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = c0 + (k * blockDim.x + threadIdx.x) * N;
    if (c >= end) break;
#pragma unroll
    for (int j = 0; j < N; ++j) v[k][j] *= f;
    store_chunk<VEC, T, N>(y, c, end, v[k]);
  }
}

// Rows too wide for registers: online (max, sum) pass, then the output pass. Each thread
// touches the same columns in both passes, so in-place use is safe.
template <class T, class M, bool MASKED, bool VEC>
__global__ void __launch_bounds__(1024) softmax_wide_kernel(SoftmaxKernelParams<T, M> p) {
  constexpr int N = Vec<T>::N;
  __shared__ MaxSum scratch[32];
  const int64_t row = blockIdx.x;
  const T* x = p.x + row * p.x_stride;
  const M* m = softmax_mask_row<MASKED>(p, row);
  const int step = blockDim.x * N;
  MaxSum acc{-INFINITY, 0.f};
  for (int c = threadIdx.x * N; c < p.cols; c += step) {
    float t[N];
    load_chunk<VEC, T, N>(x, c, p.cols, t);
    softmax_logits<VEC, MASKED>(p, m, c, p.cols, t);
    float cm = -INFINITY;
#pragma unroll
    for (int j = 0; j < N; ++j) cm = fmaxf(cm, t[j]);
    const float nm = fmaxf(acc.m, softmax_shift(cm));
    if (nm == -INFINITY) continue;
    float s = acc.s * exp2f(acc.m - nm);
#pragma unroll
    for (int j = 0; j < N; ++j) s += softmax_exp(t[j], nm);
    acc = {nm, s};
  }
  const MaxSum total = block_max_sum(acc, scratch);
  const float shift = total.m == -INFINITY ? 0.f : total.m;
  const float inv = total.m == -INFINITY ? 0.f : 1.f / total.s;
  T* y = p.out + row * p.out_stride;
  for (int c = threadIdx.x * N; c < p.cols; c += step) {
    float t[N];
    load_chunk<VEC, T, N>(x, c, p.cols, t);
    softmax_logits<VEC, MASKED>(p, m, c, p.cols, t);
#pragma unroll
    for (int j = 0; j < N; ++j) t[j] = softmax_exp(t[j], shift) * inv;
    store_chunk<VEC, T, N>(y, c, p.cols, t);
  }
}

}  // namespace mlxn::kernels
