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
  bool vec;  // rows allow kConvGroup-element accesses (16-byte aligned base, C and strides multiples of 4)
  bool silu;
};

// SiLU with an approximate reciprocal (2 ulp): the prefill and the decode step share it, so a
// prefill and the same tokens as steps give the same bits.
__device__ __forceinline__ float silu_f(float x) { return __fdividef(x, 1.f + __expf(-x)); }

// A parameter of any float dtype (kind 0 f32, 1 f16, 2 bf16) as float.
__device__ __forceinline__ float param_f32(const void* p, int kind, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  if (kind == 1) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

inline constexpr int kConvThreads = 128;  // 4 warps along tokens
inline constexpr int kConvGroup = 4;      // channels per thread
inline constexpr int kConvRun = 16;       // tokens per thread

// kConvGroup consecutive channels of one token: one 8-byte (f16, bf16) or 16-byte (f32) access.
template <class T>
struct ConvGroup {
  alignas(kConvGroup * sizeof(T)) T v[kConvGroup];
};

// The first n channels of a group one by one, the rest zero (rows without aligned groups).
template <class T>
__device__ __forceinline__ ConvGroup<T> load_partial(const T* src, int n) {
  ConvGroup<T> g;
#pragma unroll
  for (int j = 0; j < kConvGroup; ++j) g.v[j] = j < n ? src[j] : from_f32<T>(0.f);
  return g;
}

// A group as one access when `vec`, else its first n channels.
template <class T>
__device__ __forceinline__ void store_group(T* dst, bool vec, int n, const float (&src)[kConvGroup]) {
  ConvGroup<T> g;
#pragma unroll
  for (int j = 0; j < kConvGroup; ++j) g.v[j] = from_f32<T>(src[j]);
  if (vec) {
    *reinterpret_cast<ConvGroup<T>*>(dst) = g;
  } else {
#pragma unroll
    for (int j = 0; j < kConvGroup; ++j)
      if (j < n) dst[j] = g.v[j];
  }
}

// Thread = kConvGroup channels x a run of kConvRun tokens [t0, t0 + kConvRun); a warp covers
// 32 x kConvGroup contiguous channels of a token. The thread first issues cp.async copies of
// all its input rows (the S = W - 1 rows before the run and the run itself) into its own
// shared-memory slots, one commit group per token, so the whole run is in flight without
// holding registers; it then waits for one token at a time and computes it, keeping only the
// S previous inputs, weights and bias in registers. Each thread reads back only the slots it
// filled: no barrier. Taps before the token's sequence read the initial state (or zero); a
// run that lies inside one sequence, window included, skips those checks. Rows that do not
// allow 8/16-byte accesses (odd strides, a channel tail) are read directly, token by token.
// The bounds: 6 blocks per SM up to W = 4 (<= 85 registers); wider windows get up to 128, as
// without a bound ptxas keeps W = 6 under 96 registers and spills.
template <class T, int W>
__global__ void __launch_bounds__(kConvThreads, W <= 4 ? 6 : 4) conv_prefill_kernel(ConvParams<T> p) {
  constexpr int NC = kConvGroup, S = W - 1, TT = kConvRun;
  __shared__ ConvGroup<T> rows[S + TT][kConvThreads];  // rows[r][thread]: input row t0 - S + r
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int c0 = (blockIdx.x * 32 + lane) * NC;
  const int64_t t0 = (int64_t(blockIdx.y) * (kConvThreads / 32) + warp) * TT;
  if (c0 >= p.C || t0 >= p.tokens) return;
  const int64_t t_end = t0 + TT < p.tokens ? t0 + TT : p.tokens;
  const int nc = p.C - c0 < NC ? p.C - c0 : NC;
  const bool vec = p.vec && nc == NC;
  const T* xc = p.x + c0;

  if (vec) {
    // group 0: the window rows and token 0; group i: token i (rows outside [0, t_end) zeroed)
#pragma unroll
    for (int r = 0; r < S + TT; ++r) {
      const int64_t row = t0 - S + r;
      const bool inside = row >= 0 && row < t_end;
      cp_async<sizeof(ConvGroup<T>)>(&rows[r][tid], inside ? xc + row * p.x_stride : p.x, inside);
      if (r >= S) cp_async_commit();
    }
  }

  float w[W][NC], bias[NC];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const int c = c0 + (j < nc ? j : 0);
#pragma unroll
    for (int k = 0; k < W; ++k) w[k][j] = param_f32(p.weight, p.weight_kind, int64_t(c) * W + k);
    bias[j] = p.bias ? param_f32(p.bias, p.bias_kind, c) : 0.f;
  }

  int64_t begin = 0;
  int64_t n = seq_of(p.seq, t0, begin);
  int64_t next = p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T;

  // xw[k]: input row t - S + k of the next token t (rows before 0 read as 0; never used).
  float xw[S][NC];
  if (vec) cp_async_wait<TT - 1>();
#pragma unroll
  for (int k = 0; k < S; ++k) {
    const int64_t row = t0 - S + k;
    const ConvGroup<T> g = vec ? rows[k][tid] : row >= 0 ? load_partial(xc + row * p.x_stride, nc) : ConvGroup<T>{};
#pragma unroll
    for (int j = 0; j < NC; ++j) xw[k][j] = to_f32(g.v[j]);
  }

  auto run = [&]<bool kSeqChecks>() {
#pragma unroll
    for (int i = 0; i < TT; ++i) {
      const int64_t t = t0 + i;
      if (vec) cp_async_wait_n<TT>(TT - 1 - i);  // token i has landed (every group is waited for)
      if (t < t_end) {
        const ConvGroup<T> g = vec ? rows[S + i][tid] : load_partial(xc + t * p.x_stride, nc);
        float cur[NC];
#pragma unroll
        for (int j = 0; j < NC; ++j) cur[j] = to_f32(g.v[j]);
        if constexpr (kSeqChecks) {
          while (t >= next && n + 1 < p.seq.N) {  // crossed into the next (non-empty) sequence
            ++n;
            begin = next;
            next = p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T;
          }
        }
        float acc[NC];
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[j] = bias[j];
#pragma unroll
        for (int k = 0; k < S; ++k) {
          const int64_t src = t - S + k;
          if (!kSeqChecks || src >= begin) {
#pragma unroll
            for (int j = 0; j < NC; ++j) acc[j] += w[k][j] * xw[k][j];
          } else if (p.state_in) {
            // before the sequence: the state row S - (begin - src)
            const T* st = p.state_in + (n * S + S - (begin - src)) * p.C + c0;
#pragma unroll
            for (int j = 0; j < NC; ++j)
              if (j < nc) acc[j] += w[k][j] * to_f32(st[j]);
          }
        }
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[j] += w[S][j] * cur[j];
        if (p.silu) {
#pragma unroll
          for (int j = 0; j < NC; ++j) acc[j] = silu_f(acc[j]);
        }
        store_group(p.out + t * p.out_stride + c0, vec, nc, acc);
#pragma unroll
        for (int k = 0; k + 1 < S; ++k)
#pragma unroll
          for (int j = 0; j < NC; ++j) xw[k][j] = xw[k + 1][j];
#pragma unroll
        for (int j = 0; j < NC; ++j) xw[S - 1][j] = cur[j];
      }
    }
  };
  if (t0 - S >= begin && t_end <= next)
    run.template operator()<false>();
  else
    run.template operator()<true>();
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
