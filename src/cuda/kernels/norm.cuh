#pragma once
// Row norms: one block per row, the row held in registers between the statistic and the
// output pass, so x is read from memory once. 16-byte vector access where the row is aligned.
#include "cuda/kernels/math.cuh"

namespace mlxn::kernels {

enum class NormStatK : int { rms, l2, layer };
enum class NormEpiK : int { none, mul, gate, add };

template <class T>
struct RowPtr {
  T* data;
  int64_t row_stride;
};

template <class T, class W>
struct NormKernelParams {
  RowPtr<const T> x;
  RowPtr<T> out;
  RowPtr<const T> residual;  // data may be null
  RowPtr<T> sum_out;         // data may be null
  RowPtr<const T> other;     // epilogue operand, may be null
  const W* weight;           // may be null
  const W* bias;             // may be null
  int cols;
  float eps;
  NormStatK stat;
  NormEpiK epi;
  bool weight_offset;
  bool vec;  // every row pointer 16-byte aligned and cols a multiple of the vector width
};

// Loads N consecutive elements starting at column c (vector or scalar with bounds).
template <class T, int N>
__device__ __forceinline__ void load_n(const T* row, int c, int cols, bool vec, float (&dst)[N]) {
  if (vec) {
    if (c < cols) {
      const Vec<T> v = load_vec(row + c);
#pragma unroll
      for (int j = 0; j < N; ++j) dst[j] = to_f32(v.v[j]);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) dst[j] = 0.f;
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) dst[j] = c + j < cols ? to_f32(row[c + j]) : 0.f;
  }
}

template <class T, int N>
__device__ __forceinline__ void store_n(T* row, int c, int cols, bool vec, const float (&src)[N]) {
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

// One block per row; each thread owns VPT chunks of N = 16/sizeof(T) consecutive columns:
// chunk k of thread t starts at column (k * blockDim.x + t) * N. blockDim * VPT * N >= cols.
template <class T, class W, int VPT>
__global__ void __launch_bounds__(1024) norm_rows_kernel(NormKernelParams<T, W> p) {
  constexpr int N = Vec<T>::N;
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* x = p.x.data + row * p.x.row_stride;
  float v[VPT][N];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
    load_n<T, N>(x, c, p.cols, p.vec, v[k]);
  }
  if (p.residual.data) {
    const T* res = p.residual.data + row * p.residual.row_stride;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int c = (k * blockDim.x + threadIdx.x) * N;
      float r[N];
      load_n<T, N>(res, c, p.cols, p.vec, r);
#pragma unroll
      for (int j = 0; j < N; ++j) v[k][j] += r[j];
      if (p.sum_out.data) store_n<T, N>(p.sum_out.data + row * p.sum_out.row_stride, c, p.cols, p.vec, v[k]);
    }
  }
  float mean = 0.f;
  if (p.stat == NormStatK::layer) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k)
#pragma unroll
      for (int j = 0; j < N; ++j) s += v[k][j];
    mean = block_sum(s, scratch) / float(p.cols);
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float d = c + j < p.cols ? v[k][j] - mean : 0.f;  // padding lanes hold 0, not -mean
      ss += d * d;
    }
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf((p.stat == NormStatK::l2 ? ss : ss / float(p.cols)) + p.eps);
  T* y = p.out.data + row * p.out.row_stride;
  const T* o = p.other.data ? p.other.data + row * p.other.row_stride : nullptr;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
    if (c >= p.cols) break;
    float t[N], ov[N];
    if (o) load_n<T, N>(o, c, p.cols, p.vec, ov);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int cj = c + j < p.cols ? c + j : p.cols - 1;  // clamp: scalar tail lanes are not stored
      float val = (v[k][j] - mean) * inv;
      if (p.weight) {
        const float w = to_f32(p.weight[cj]);
        val *= p.weight_offset ? 1.f + w : w;
      }
      if (p.bias) val += to_f32(p.bias[cj]);
      if (p.epi == NormEpiK::mul) val *= ov[j];
      else if (p.epi == NormEpiK::gate) val *= ov[j] * sigmoidf_(ov[j]);
      else if (p.epi == NormEpiK::add) val += ov[j];
      t[j] = val;
    }
    store_n<T, N>(y, c, p.cols, p.vec, t);
  }
}

// Rows too wide for registers: statistic pass over memory, then a second pass (mostly L2).
template <class T, class W>
__global__ void __launch_bounds__(1024) norm_rows_wide_kernel(NormKernelParams<T, W> p) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* x = p.x.data + row * p.x.row_stride;
  const T* res = p.residual.data ? p.residual.data + row * p.residual.row_stride : nullptr;
  auto at = [&](int c) { return to_f32(x[c]) + (res ? to_f32(res[c]) : 0.f); };
  float mean = 0.f;
  if (p.stat == NormStatK::layer) {
    float s = 0.f;
    for (int c = threadIdx.x; c < p.cols; c += blockDim.x) s += at(c);
    mean = block_sum(s, scratch) / float(p.cols);
  }
  float ss = 0.f;
  for (int c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float d = at(c) - mean;
    ss += d * d;
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf((p.stat == NormStatK::l2 ? ss : ss / float(p.cols)) + p.eps);
  T* y = p.out.data + row * p.out.row_stride;
  T* so = p.sum_out.data ? p.sum_out.data + row * p.sum_out.row_stride : nullptr;
  const T* o = p.other.data ? p.other.data + row * p.other.row_stride : nullptr;
  for (int c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float xv = at(c);
    float val = (xv - mean) * inv;
    if (p.weight) {
      const float w = to_f32(p.weight[c]);
      val *= p.weight_offset ? 1.f + w : w;
    }
    if (p.bias) val += to_f32(p.bias[c]);
    if (o) {
      const float ov = to_f32(o[c]);
      if (p.epi == NormEpiK::mul) val *= ov;
      else if (p.epi == NormEpiK::gate) val *= ov * sigmoidf_(ov);
      else if (p.epi == NormEpiK::add) val += ov;
    }
    if (so) so[c] = from_f32<T>(xv);
    y[c] = from_f32<T>(val);
  }
}

}  // namespace mlxn::kernels
