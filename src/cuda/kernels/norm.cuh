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
};

// What follows the scaled, weighted value: bias (layer_norm), then the epilogue operand o.
template <class T, class W>
__device__ __forceinline__ float bias_and_epilogue(const NormKernelParams<T, W>& p, float val, float b, float o) {
  if (p.bias) val += b;
  switch (p.epi) {
    case NormEpiK::mul:
      return val * o;
    case NormEpiK::gate:
      return val * o * sigmoidf_(o);
    case NormEpiK::add:
      return val + o;
    default:
      return val;
  }
}

// The row's x between the statistic and the output pass, chunk k as N = 16/sizeof(T) columns.
// 16-bit rows on the vector path stay as loaded (one raw 16-byte vector per chunk, unpacked
// at each use by unpack_f32): half the registers of floats, so more rows resident per SM,
// which is what keeps enough bytes in flight. Otherwise the chunks are floats.
template <class T, int VPT, bool kPacked>
struct RowChunks {
  static constexpr int N = Vec<T>::N;
  float f[VPT][N];
  template <bool kVec>
  __device__ __forceinline__ void load(const T* row, int k, int c, int cols) {
    load_chunk<kVec>(row, c, cols, f[k]);
  }
  __device__ __forceinline__ void get(int k, float (&d)[N]) const {
#pragma unroll
    for (int j = 0; j < N; ++j) d[j] = f[k][j];
  }
};
template <class T, int VPT>
struct RowChunks<T, VPT, true> {
  static constexpr int N = Vec<T>::N;
  uint4 v[VPT];
  template <bool kVec>
  __device__ __forceinline__ void load(const T* row, int k, int c, int cols) {
    static_assert(kVec, "packed chunks are 16-byte vectors");
    // if/else, not a conditional expression: with the latter ptxas issued chunks 2 and 3's
    // loads after chunk 0 and 1's sums of squares, half the row's bytes in flight (-2 points).
    if (c < cols)
      v[k] = load_once(reinterpret_cast<const uint4*>(row + c));
    else
      v[k] = make_uint4(0, 0, 0, 0);
  }
  // unpack_f32, not to_f32 per element: with the latter the compiler kept more of the
  // unpacked row live between the passes (bf16 at 4 chunks: 48 vs 38 registers).
  __device__ __forceinline__ void get(int k, float (&d)[N]) const { unpack_f32<T>(v[k], d); }
};

// One block per row; each thread owns VPT chunks of N = 16/sizeof(T) consecutive columns:
// chunk k of thread t starts at column (k * blockDim.x + t) * N, and blockDim * VPT * N >= cols.
// With one chunk per thread (the decode configuration) every load the row needs (x,
// residual, weight, bias, epilogue operand) is issued before the reduction, so their
// latencies overlap: that decides the time of a decode-sized call. With several chunks per
// thread (many rows) the operands are loaded after the reduction instead, keeping register
// use, and so the number of resident rows, where bandwidth needs it. kPacked (the host's
// choice for plain 16-bit norms: vector path, several chunks, only a weight: no residual, bias
// or epilogue operand) keeps x as loaded, see RowChunks.
template <class T, class W, int VPT, bool kVec, bool kPacked>
__global__ void __launch_bounds__(VPT == 1 ? 1024 : 256) norm_rows_kernel(NormKernelParams<T, W> p) {
  constexpr int N = Vec<T>::N;
  constexpr bool kPreload = VPT == 1;
  static_assert(!(kPacked && kPreload), "the decode configuration preloads floats");
  __shared__ float scratch[32];
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();
  const int64_t row = blockIdx.x;
  const T* x = p.x.data + row * p.x.row_stride;
  const T* o = p.other.data ? p.other.data + row * p.other.row_stride : nullptr;
  RowChunks<T, VPT, kPacked> xs;
  float w[kPreload ? VPT : 1][N], b[kPreload ? VPT : 1][N], ov[kPreload ? VPT : 1][N];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
    xs.template load<kVec>(x, k, c, p.cols);
    if constexpr (kPreload) {
      if (p.weight) load_chunk<kVec>(p.weight, c, p.cols, w[k]);
      if (p.bias) load_chunk<kVec>(p.bias, c, p.cols, b[k]);
      if (o) load_chunk<kVec>(o, c, p.cols, ov[k]);
    }
  }
  if constexpr (!kPacked) {
    if (p.residual.data) {
      const T* res = p.residual.data + row * p.residual.row_stride;
      float r[VPT][N];
#pragma unroll
      for (int k = 0; k < VPT; ++k) load_chunk<kVec>(res, (k * blockDim.x + threadIdx.x) * N, p.cols, r[k]);
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
#pragma unroll
        for (int j = 0; j < N; ++j) xs.f[k][j] += r[k][j];
        if (p.sum_out.data)
          store_chunk<kVec>(p.sum_out.data + row * p.sum_out.row_stride, (k * blockDim.x + threadIdx.x) * N, p.cols,
                            xs.f[k]);
      }
    }
  }
  float mean = 0.f;
  // Packed rows are rms or l2 (the host's choice): a layer pass here, even one not taken,
  // had the compiler keep the unpacked row alive across both passes (53 vs 38 registers).
  if (!kPacked && p.stat == NormStatK::layer) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      float v[N];
      xs.get(k, v);
#pragma unroll
      for (int j = 0; j < N; ++j) s += v[j];
    }
    mean = block_sum(s, scratch) / float(p.cols);
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
    float v[N];
    xs.get(k, v);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float d = c + j < p.cols ? v[j] - mean : 0.f;  // padding lanes hold 0, not -mean
      ss += d * d;
    }
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf((p.stat == NormStatK::l2 ? ss : ss / float(p.cols)) + p.eps);
  T* y = p.out.data + row * p.out.row_stride;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int c = (k * blockDim.x + threadIdx.x) * N;
    if (c >= p.cols) break;
    float v[N], wk[N], bk[N], ok[N], t[N];
    xs.get(k, v);
    const int kk = kPreload ? k : 0;
    if constexpr (kPreload) {
#pragma unroll
      for (int j = 0; j < N; ++j) {
        wk[j] = w[kk][j];
        bk[j] = b[kk][j];
        ok[j] = ov[kk][j];
      }
    } else {
      if (p.weight) load_chunk<kVec>(p.weight, c, p.cols, wk);
      if constexpr (!kPacked) {
        if (p.bias) load_chunk<kVec>(p.bias, c, p.cols, bk);
        if (o) load_chunk<kVec>(o, c, p.cols, ok);
      }
    }
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float val = (v[j] - mean) * inv;
      if (p.weight) val *= p.weight_offset ? 1.f + wk[j] : wk[j];
      if constexpr (!kPacked) val = bias_and_epilogue(p, val, bk[j], ok[j]);
      t[j] = val;
    }
    store_chunk<kVec>(y, c, p.cols, t);
  }
}

// Rows too wide for registers: statistic pass over memory, then a second pass (mostly L2).
template <class T, class W>
__global__ void __launch_bounds__(1024) norm_rows_wide_kernel(NormKernelParams<T, W> p) {
  __shared__ float scratch[32];
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();
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
    val = bias_and_epilogue(p, val, p.bias ? to_f32(p.bias[c]) : 0.f, o ? to_f32(o[c]) : 0.f);
    if (so) so[c] = from_f32<T>(xv);
    y[c] = from_f32<T>(val);
  }
}

}  // namespace mlxn::kernels
