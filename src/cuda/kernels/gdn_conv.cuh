#pragma once
// Causal depthwise conv + SiLU (prefill, state update, decode step) and the GDN gates.
// x, out: [tokens, C] rows `stride` elements apart; weight [C, W]; states [N, W - 1, C].
#include "cuda/kernels/gdn_common.cuh"

namespace mlxn::kernels::gdn {

template <class T>
struct ConvParams {
  const T* x;
  T* out;
  int64_t x_stride, out_stride;
  const void* weight;  // [C, W] of dtype weight_kind
  const void* bias;    // [C] or null, of dtype bias_kind
  int weight_kind, bias_kind;
  const T* state_in;  // [N, W - 1, C] or null
  T* state_out;       // [N, W - 1, C] or null
  SeqLayout seq;
  int64_t tokens;  // B * T
  int C;
  bool vec;  // rows and channel groups 16-byte aligned
  bool silu;
};

__device__ __forceinline__ float silu_f(float x) { return x / (1.f + __expf(-x)); }

// A parameter of any float dtype (kind 0 f32, 1 f16, 2 bf16) as float.
__device__ __forceinline__ float param_f32(const void* p, int kind, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  if (kind == 1) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

// Channel group of thread: NC = 16 / sizeof(T) channels; tokens [t0, t0 + TT).
// Block: 32 lanes along channels x (blockDim.x / 32) warps along tokens.
template <class T, int W, int TT>
__global__ void __launch_bounds__(128) conv_prefill_kernel(ConvParams<T> p) {
  constexpr int NC = Vec<T>::N, S = W - 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c0 = (blockIdx.x * 32 + lane) * NC;
  const int64_t t0 = (int64_t(blockIdx.y) * (blockDim.x >> 5) + warp) * TT;
  if (c0 >= p.C || t0 >= p.tokens) return;
  const int nc = p.C - c0 < NC ? p.C - c0 : NC;
  const bool vec = p.vec && nc == NC;

  float w[W][NC], bias[NC];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const int c = c0 + (j < nc ? j : 0);
#pragma unroll
    for (int k = 0; k < W; ++k) w[k][j] = param_f32(p.weight, p.weight_kind, int64_t(c) * W + k);
    bias[j] = p.bias ? param_f32(p.bias, p.bias_kind, c) : 0.f;
  }

  // Rows t0 - S .. t0 + TT - 1 of the channel group (rows outside [0, tokens) read as 0).
  float xw[S + TT][NC];
#pragma unroll
  for (int r = 0; r < S + TT; ++r) {
    const int64_t row = t0 - S + r;
    if (row >= 0 && row < p.tokens) {
      const T* src = p.x + row * p.x_stride + c0;
      if (vec) {
        load_f32<T, NC>(src, true, xw[r]);
      } else {
#pragma unroll
        for (int j = 0; j < NC; ++j) xw[r][j] = j < nc ? to_f32(src[j]) : 0.f;
      }
    } else {
#pragma unroll
      for (int j = 0; j < NC; ++j) xw[r][j] = 0.f;
    }
  }

  int64_t begin = 0;
  int64_t n = seq_of(p.seq, t0, begin);
  int64_t next = p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T;
#pragma unroll
  for (int i = 0; i < TT; ++i) {
    const int64_t t = t0 + i;
    if (t >= p.tokens) break;
    while (t >= next && n + 1 < p.seq.N) {  // crossed into the next (non-empty) sequence
      ++n;
      begin = next;
      next = p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T;
    }
    float acc[NC];
#pragma unroll
    for (int j = 0; j < NC; ++j) acc[j] = bias[j];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const int64_t src = t - S + k;
      if (src >= begin) {
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[j] += w[k][j] * xw[i + k][j];
      } else if (p.state_in) {
        // before the sequence: the state row S - (begin - src)
        const T* st = p.state_in + (n * S + S - (begin - src)) * p.C + c0;
#pragma unroll
        for (int j = 0; j < NC; ++j)
          if (j < nc) acc[j] += w[k][j] * to_f32(st[j]);
      }
    }
    if (p.silu) {
#pragma unroll
      for (int j = 0; j < NC; ++j) acc[j] = silu_f(acc[j]);
    }
    T* dst = p.out + t * p.out_stride + c0;
    if (vec) {
      store_f32<T, NC>(dst, true, acc);
    } else {
#pragma unroll
      for (int j = 0; j < NC; ++j)
        if (j < nc) dst[j] = from_f32<T>(acc[j]);
    }
  }
}

// The new state of every sequence: its last S inputs (from the state where the sequence
// is shorter). One thread per (sequence, channel); all S values are read before any is
// written, so state_out may be state_in.
template <class T, int S>
__global__ void conv_state_kernel(ConvParams<T> p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.seq.N * p.C) return;
  const int64_t n = i / p.C;
  const int c = int(i % p.C);
  int64_t begin, len, slot;
  seq_span(p.seq, n, begin, len, slot);
  T v[S];
#pragma unroll
  for (int k = 0; k < S; ++k) {
    const int64_t src = len - S + k;
    if (src >= 0)
      v[k] = p.x[(begin + src) * p.x_stride + c];
    else
      v[k] = p.state_in ? p.state_in[(n * S + S + src) * p.C + c] : from_f32<T>(0.f);
  }
#pragma unroll
  for (int k = 0; k < S; ++k) p.state_out[(n * S + k) * p.C + c] = v[k];
}

template <class T>
struct ConvStepParams {
  const T* x;
  T* out;
  int64_t x_stride, out_stride;
  T* state;  // [B, S, C]
  const void* weight;
  const void* bias;
  int weight_kind, bias_kind;
  int64_t B;
  int C;
  bool silu;
};

// One decode token: thread per (batch row, channel); the state column shifts in place.
template <class T, int W>
__global__ void conv_step_kernel(ConvStepParams<T> p) {
  constexpr int S = W - 1;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.B * p.C) return;
  const int64_t b = i / p.C;
  const int c = int(i % p.C);
  T* st = p.state + b * S * p.C + c;
  const T xc = p.x[b * p.x_stride + c];
  T win[W];
#pragma unroll
  for (int k = 0; k < S; ++k) win[k] = st[int64_t(k) * p.C];
  win[S] = xc;
  float acc = p.bias ? param_f32(p.bias, p.bias_kind, c) : 0.f;
#pragma unroll
  for (int k = 0; k < W; ++k) acc += param_f32(p.weight, p.weight_kind, int64_t(c) * W + k) * to_f32(win[k]);
#pragma unroll
  for (int k = 0; k < S; ++k) st[int64_t(k) * p.C] = win[k + 1];
  p.out[b * p.out_stride + c] = from_f32<T>(p.silu ? silu_f(acc) : acc);
}

template <class T, class BT, class PA, class PD>
struct GateParams {
  const T* a;
  const T* b;
  float* g;
  BT* beta;
  int64_t a_stride, b_stride, g_stride, beta_stride;
  const PA* A_log;    // [H]
  const PD* dt_bias;  // [H]
  int64_t rows;
  int H;
};

// g = -exp(A_log) softplus(a + dt_bias); beta = sigmoid(b). One thread per element.
template <class T, class BT, class PA, class PD>
__global__ void gate_kernel(GateParams<T, BT, PA, PD> p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.rows * p.H) return;
  const int64_t r = i / p.H;
  const int h = int(i % p.H);
  const float x = to_f32(p.a[r * p.a_stride + h]) + to_f32(p.dt_bias[h]);
  const float sp = x > 20.f ? x : log1pf(expf(x));
  p.g[r * p.g_stride + h] = -expf(to_f32(p.A_log[h])) * sp;
  p.beta[r * p.beta_stride + h] = from_f32<BT>(1.f / (1.f + expf(-to_f32(p.b[r * p.b_stride + h]))));
}

}  // namespace mlxn::kernels::gdn
