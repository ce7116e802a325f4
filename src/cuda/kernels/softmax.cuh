#pragma once
// Row softmax with scale, soft-capping and an additive mask. Three shapes of kernel:
//   - narrow rows: one warp per row, the row in registers, warp shuffles only;
//   - rows up to 32 values per thread of a 1024-thread block: one block per row, the row in
//     registers, so x is read from memory once;
//   - wider rows: one block per row, an online pass (running max and a sum rescaled whenever
//     the max grows) and then an output pass that reads x again.
// Logits are kept in log2 units (t * log2 e) so every exponential is one exp2f. A thread
// first reduces its own values to a (max, sum) pair; pairs then merge across the block in
// one reduction instead of a max reduction followed by a sum reduction.
#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

template <class T, class M>
struct SoftmaxKernelParams {
  const T* x;
  T* out;
  const M* mask;  // may be null
  int64_t x_stride, out_stride, mask_stride;  // elements between rows
  int64_t rows;
  int64_t mask_rows;  // row r reads mask row r % mask_rows
  int cols;
  float scale;
  float softcap;  // 0 = off
  bool vec;       // rows 16-byte aligned, cols and strides multiples of the vector width
};

constexpr float kLog2e = 1.4426950408889634f;

// One row's logit in log2 units. m is the mask value (0 without a mask, may be -inf).
template <class T, class M>
__device__ __forceinline__ float softmax_logit2(const SoftmaxKernelParams<T, M>& p, float x, float m) {
  float t = x * p.scale;
  if (p.softcap > 0.f) t = p.softcap * tanhf(t / p.softcap);
  return (t + m) * kLog2e;
}

// N consecutive elements of a row from column c, as floats; columns past the end read as
// `pad`. With vec, c is a multiple of N and the row allows 16-byte loads of U.
template <class U, int N>
__device__ __forceinline__ void softmax_load(const U* row, int c, int cols, bool vec, float pad, float (&dst)[N]) {
  if (vec) {
    constexpr int VN = Vec<U>::N;
    static_assert(N % VN == 0, "vector width must divide the chunk");
    if (c < cols) {
#pragma unroll
      for (int q = 0; q < N / VN; ++q) {
        const Vec<U> v = load_vec(row + c + q * VN);
#pragma unroll
        for (int j = 0; j < VN; ++j) dst[q * VN + j] = to_f32(v.v[j]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) dst[j] = pad;
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) dst[j] = c + j < cols ? to_f32(row[c + j]) : pad;
  }
}

template <class T, int N>
__device__ __forceinline__ void softmax_store(T* row, int c, int cols, bool vec, const float (&src)[N]) {
  if (vec) {
    if (c < cols) {
      Vec<T> v;
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(src[j]);
      store_vec(row + c, v);
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (c + j < cols) row[c + j] = from_f32<T>(src[j]);
  }
}

// Logits of chunk [c, c + N) of a row; columns past the end are -inf (they add nothing).
// MASKED is a template flag so the unmasked kernels carry no mask registers.
template <class T, class M, bool MASKED, int N>
__device__ __forceinline__ void softmax_chunk(const SoftmaxKernelParams<T, M>& p, const T* x, const M* m, int c,
                                              float (&t)[N]) {
  float mv[N] = {};
  softmax_load<T, N>(x, c, p.cols, p.vec, 0.f, t);
  if constexpr (MASKED) softmax_load<M, N>(m, c, p.cols, p.vec, 0.f, mv);
#pragma unroll
  for (int j = 0; j < N; ++j) t[j] = c + j < p.cols ? softmax_logit2(p, t[j], MASKED ? mv[j] : 0.f) : -INFINITY;
}

template <class T, class M, bool MASKED>
__device__ __forceinline__ const M* softmax_mask_row(const SoftmaxKernelParams<T, M>& p, int64_t row) {
  return MASKED ? p.mask + (row % p.mask_rows) * p.mask_stride : nullptr;
}

// (max, sum of exp2(t - max)) of a set of logits. max == -inf means the set is empty or
// fully masked; its sum is then 0.
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
  const float shift = m == -INFINITY ? 0.f : m;  // all -inf: every exp2 below is 0
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k)
#pragma unroll
    for (int j = 0; j < N; ++j) {
      v[k][j] = exp2f(v[k][j] - shift);
      s += v[k][j];
    }
  return {m, s};
}

// Factor turning a thread's local exponentials into outputs: exp2(local max - row max) /
// row sum. A fully masked row (row max -inf) gives 0, so its outputs are zeros; a NaN sum
// propagates.
__device__ __forceinline__ float output_factor(MaxSum local, MaxSum row) {
  if (row.m == -INFINITY || local.m == -INFINITY) return 0.f;
  return exp2f(local.m - row.m) / row.s;
}

// One warp per row; rows_per_block warps per block (blockDim = 32 x rows_per_block).
// Lane l owns chunks (k * 32 + l) * N; 32 * VPT * N >= cols.
template <class T, class M, bool MASKED, int VPT>
__global__ void __launch_bounds__(256) softmax_warp_kernel(SoftmaxKernelParams<T, M> p) {
  constexpr int N = Vec<T>::N;
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.rows) return;  // whole warps leave together: no block barrier below
  const int lane = threadIdx.x;
  const T* x = p.x + row * p.x_stride;
  const M* m = softmax_mask_row<T, M, MASKED>(p, row);
  float v[VPT][N];
#pragma unroll
  for (int k = 0; k < VPT; ++k) softmax_chunk<T, M, MASKED, N>(p, x, m, (k * 32 + lane) * N, v[k]);
  const MaxSum local = exp_local<VPT, N>(v);
  const float f = output_factor(local, warp_max_sum(local));
  T* y = p.out + row * p.out_stride;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * 32 + lane) * N;
    if (c >= p.cols) break;
#pragma unroll
    for (int j = 0; j < N; ++j) v[k][j] *= f;
    softmax_store<T, N>(y, c, p.cols, p.vec, v[k]);
  }
}

// One block per row; thread t owns chunks (k * blockDim.x + t) * N; blockDim * VPT * N >= cols.
template <class T, class M, bool MASKED, int VPT>
__global__ void __launch_bounds__(1024) softmax_block_kernel(SoftmaxKernelParams<T, M> p) {
  constexpr int N = Vec<T>::N;
  __shared__ MaxSum scratch[32];
  const int64_t row = blockIdx.x;
  const T* x = p.x + row * p.x_stride;
  const M* m = softmax_mask_row<T, M, MASKED>(p, row);
  float v[VPT][N];
#pragma unroll
  for (int k = 0; k < VPT; ++k) softmax_chunk<T, M, MASKED, N>(p, x, m, (k * blockDim.x + threadIdx.x) * N, v[k]);
  const MaxSum local = exp_local<VPT, N>(v);
  const float f = output_factor(local, block_max_sum(local, scratch));
  T* y = p.out + row * p.out_stride;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
    if (c >= p.cols) break;
#pragma unroll
    for (int j = 0; j < N; ++j) v[k][j] *= f;
    softmax_store<T, N>(y, c, p.cols, p.vec, v[k]);
  }
}

// Rows too wide for registers: online (max, sum) pass, then the output pass. Each thread
// touches the same columns in both passes, so in-place use is safe.
template <class T, class M, bool MASKED>
__global__ void __launch_bounds__(1024) softmax_wide_kernel(SoftmaxKernelParams<T, M> p) {
  constexpr int N = Vec<T>::N;
  __shared__ MaxSum scratch[32];
  const int64_t row = blockIdx.x;
  const T* x = p.x + row * p.x_stride;
  const M* m = softmax_mask_row<T, M, MASKED>(p, row);
  const int step = blockDim.x * N;
  MaxSum acc{-INFINITY, 0.f};
  for (int c = threadIdx.x * N; c < p.cols; c += step) {
    float t[N];
    softmax_chunk<T, M, MASKED, N>(p, x, m, c, t);
    float cm = -INFINITY;
#pragma unroll
    for (int j = 0; j < N; ++j) cm = fmaxf(cm, t[j]);
    const float nm = fmaxf(acc.m, cm);
    if (nm == -INFINITY) continue;
    float s = acc.s * exp2f(acc.m - nm);
#pragma unroll
    for (int j = 0; j < N; ++j) s += exp2f(t[j] - nm);
    acc = {nm, s};
  }
  const MaxSum total = block_max_sum(acc, scratch);
  const float mx = total.m == -INFINITY ? 0.f : total.m;
  const float inv = total.m == -INFINITY ? 0.f : 1.f / total.s;
  T* y = p.out + row * p.out_stride;
  for (int c = threadIdx.x * N; c < p.cols; c += step) {
    float t[N];
    softmax_chunk<T, M, MASKED, N>(p, x, m, c, t);
#pragma unroll
    for (int j = 0; j < N; ++j) t[j] = exp2f(t[j] - mx) * inv;
    softmax_store<T, N>(y, c, p.cols, p.vec, t);
  }
}

}  // namespace mlxn::kernels
