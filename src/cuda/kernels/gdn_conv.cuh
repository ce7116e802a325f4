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
  int64_t run;  // tokens per thread, a multiple of kConvDepth
  bool silu;
};

// SiLU with an approximate reciprocal (2 ulp): the prefill and the decode step share it, so a
// prefill and the same tokens as steps give the same bits. exp(-x) is __expf's ex2 of
// -x log2(e), but flushed to zero below 2^-126: 1 + e rounds to 1 there either way, and the
// flush saves __expf's three-instruction denormal fix-up per element.
__device__ __forceinline__ float silu_f(float x) {
  float e;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(x * -1.44269504f));
  return __fdividef(x, 1.f + e);
}

// A parameter of any float dtype (kind 0 f32, 1 f16, 2 bf16) as float.
__device__ __forceinline__ float param_f32(const void* p, int kind, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  if (kind == 1) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

inline constexpr int kConvThreads = 128;  // 4 warps, each its own run of tokens
inline constexpr int kConvDepth = 10;     // rows each thread keeps in flight

// Blocks of kConvThreads per SM that the register bound allows without spills (ptxas, sm_90,
// both the 16-byte and the scalar path): the weights, bias and window of 8 bf16/f16 channels
// take 16 f32 registers per tap, 4 f32 channels half that.
template <class T>
__host__ __device__ constexpr int conv_min_blocks(int W) {
  if constexpr (sizeof(T) == 4) return W <= 5 ? 4 : 3;
  return W <= 4 ? 3 : 2;
}

// Thread = one 16-byte vector of channels (NC = 8 bf16/f16, 4 f32) x a run of p.run tokens
// (a multiple of kConvDepth); a warp covers 32 consecutive vectors, so each of its loads and
// stores moves 512 contiguous bytes of one token row. Everything stays in registers: the
// weights and bias as f32, the inputs of the S = W - 1 previous rows as f32 (the window slides
// by renaming in the unrolled batch of D tokens), and D raw rows in flight: the register of
// the row a token consumes is refilled with the row D ahead, so a thread waits only on its
// oldest load while the other D - 1 stay outstanding (a software pipeline in registers: no
// shared memory, no cp.async, no barrier). Rows are plain loads (load_once): the S halo rows
// before the run are read again by the previous run, and an evict-first hint would only slow
// the stores beside it.
// A batch of kConvDepth tokens whose window lies inside one sequence skips the sequence
// checks; the others step into each next sequence and read taps before its start from the
// initial state (or zero). kVec is false for rows that do not allow 16-byte accesses (odd
// strides, C not a multiple of NC): the same pipeline with scalar loads and stores.
template <class T, int W, bool kVec>
__global__ void __launch_bounds__(kConvThreads, conv_min_blocks<T>(W)) conv_prefill_kernel(ConvParams<T> p) {
  // The scalar path holds each 16-bit element of a row in flight in a register of its own:
  // half as many rows in flight (runs stay whole batches: D divides kConvDepth).
  constexpr int NC = Vec<T>::N, S = W - 1, D = kVec ? kConvDepth : kConvDepth / 2;
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c0 = (blockIdx.x * 32 + lane) * NC;
  const int64_t t0 = (int64_t(blockIdx.y) * (kConvThreads / 32) + warp) * p.run;
  if (c0 >= p.C || t0 >= p.tokens) return;
  const int64_t t_end = t0 + p.run < p.tokens ? t0 + p.run : p.tokens;
  const int nc = p.C - c0 < NC ? p.C - c0 : NC;
  const T* xc = p.x + c0;

  // One row of the thread's channels from `src`: a 16-byte load, or nc scalars and zeros.
  auto load = [&](const T* src) {
    if constexpr (kVec) {
      return load_once(reinterpret_cast<const uint4*>(src));
    } else {
      Vec<T> v;
#pragma unroll
      for (int j = 0; j < NC; ++j) v.v[j] = j < nc ? src[j] : from_f32<T>(0.f);
      return *reinterpret_cast<const uint4*>(v.v);
    }
  };

  // Prologue: the S halo rows and the first D rows in flight together.
  uint4 halo[S], q[D];  // q[i]: row t + i of the batch at t
#pragma unroll
  for (int k = 0; k < S; ++k)
    halo[k] = t0 - S + k >= 0 ? load(xc + (t0 - S + k) * p.x_stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int i = 0; i < D; ++i) q[i] = t0 + i < t_end ? load(xc + (t0 + i) * p.x_stride) : make_uint4(0, 0, 0, 0);
  const T* src = xc + (t0 + D) * p.x_stride;  // the next row to load
  T* dst = p.out + t0 * p.out_stride + c0;    // the next row to store

  float w[W][NC], bias[NC];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const int c = c0 + (j < nc ? j : 0);
#pragma unroll
    for (int k = 0; k < W; ++k) w[k][j] = param_f32(p.weight, p.weight_kind, int64_t(c) * W + k);
    bias[j] = p.bias ? param_f32(p.bias, p.bias_kind, c) : 0.f;
  }

  float xw[S][NC];  // xw[k]: input row t - S + k of the next token t (rows before 0: never used)
#pragma unroll
  for (int k = 0; k < S; ++k) unpack_f32<T>(halo[k], xw[k]);

  int64_t begin = 0;
  int64_t n = seq_of(p.seq, t0, begin);
  auto seq_end = [&] { return p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T; };
  int64_t next = seq_end();
  auto advance = [&](int64_t t) {
    while (t >= next && n + 1 < p.seq.N) {  // crossed into the next (non-empty) sequence
      ++n;
      begin = next;
      next = seq_end();
    }
  };

  // Tokens t .. t + D - 1 (those before t_end).
  auto batch = [&]<bool kSeqChecks>(int64_t t) {
    const int64_t rest = t_end - t - D;  // rows after this batch still to load
    const int ahead = rest < D ? int(rest) : D;
#pragma unroll
    for (int i = 0; i < D; ++i) {
      const int64_t tt = t + i;
      float cur[NC];
      unpack_f32<T>(q[i], cur);
      if (i < ahead) q[i] = load(src);  // row tt + D: D rows stay in flight
      src += p.x_stride;
      if (!kSeqChecks || tt < t_end) {
        if constexpr (kSeqChecks) advance(tt);
        float acc[NC];
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[j] = bias[j];
#pragma unroll
        for (int k = 0; k < S; ++k) {
          const int64_t from = tt - S + k;
          if (!kSeqChecks || from >= begin) {
#pragma unroll
            for (int j = 0; j < NC; ++j) acc[j] += w[k][j] * xw[k][j];
          } else if (p.state_in) {
            // before the sequence: the state row S - (begin - from)
            const T* st = p.state_in + (n * S + S - (begin - from)) * p.C + c0;
#pragma unroll
            for (int j = 0; j < NC; ++j)
              if (j < nc) acc[j] += w[k][j] * to_f32(st[j]);
          }
        }
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[j] += w[S][j] * cur[j];
        if (p.silu) {  // one uniform branch per token, not one per channel
#pragma unroll
          for (int j = 0; j < NC; ++j) acc[j] = silu_f(acc[j]);
        }
        store_chunk<kVec>(dst, 0, nc, acc);
      }
      dst += p.out_stride;
#pragma unroll
      for (int k = 0; k + 1 < S; ++k)
#pragma unroll
        for (int j = 0; j < NC; ++j) xw[k][j] = xw[k + 1][j];
#pragma unroll
      for (int j = 0; j < NC; ++j) xw[S - 1][j] = cur[j];
    }
  };
  for (int64_t t = t0; t < t_end; t += D) {
    advance(t);
    // t + D <= next <= tokens, and runs are whole batches: every token of it is before t_end
    if (t - S >= begin && t + D <= next)
      batch.template operator()<false>(t);
    else
      batch.template operator()<true>(t);
  }
}

// The new state of every sequence: its last S inputs (from the state where the sequence
// is shorter). One thread per (sequence, channel); all S values are read before any is
// written, so state_out may be state_in.
template <class T, int S>
__global__ void conv_state_kernel(ConvParams<T> p) {
  pdl_wait();  // launched with launch_pdl after the conv, which reads state_in
  pdl_launch_dependents();
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
