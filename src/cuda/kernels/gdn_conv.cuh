#pragma once
// Causal depthwise conv + SiLU (prefill, state update, decode step) and the GDN gates.
// x, out: [tokens, C] rows `stride` elements apart; weight [C, W]; states [N, W - 1, C].
#include "cuda/kernels/bulk_copy.cuh"
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
inline constexpr int kConvDepth = 5;      // rows each thread keeps in flight

// Blocks of kConvThreads per SM that the register bound allows without spills (ptxas, sm_90):
// the weights, bias and window of 8 bf16/f16 channels take 16 f32 registers per tap, 4 f32
// channels half that.
template <class T>
__host__ __device__ constexpr int conv_min_blocks(int W) {
  if constexpr (sizeof(T) == 4) return W <= 5 ? 4 : 3;
  return W <= 4 ? 3 : 2;
}

// What one thread of either prefill kernel holds for its NC channels from c0 (nc of them in
// range, 0 for a thread past C): the taps and bias as f32, the inputs of the S = W - 1 rows
// before the next token (the window, sliding by renaming in unrolled loops), and where the
// next token's sequence begins and ends.
template <class T, int W, int kChannels = Vec<T>::N>
struct ConvLane {
  static constexpr int NC = kChannels, S = W - 1;
  const ConvParams<T>& p;
  int c0, nc;
  float w[W][NC], bias[NC];
  float xw[S][NC];  // xw[k]: input row t - S + k of the next token t (rows before 0: never used)
  int64_t n = 0, begin = 0, next = 0;

  __device__ ConvLane(const ConvParams<T>& params, int c) : p(params), c0(c), nc(p.C - c < NC ? max(p.C - c, 0) : NC) {
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int ch = j < nc ? c0 + j : 0;
#pragma unroll
      for (int k = 0; k < W; ++k) w[k][j] = nc ? param_f32(p.weight, p.weight_kind, int64_t(ch) * W + k) : 0.f;
      bias[j] = p.bias && nc ? param_f32(p.bias, p.bias_kind, ch) : 0.f;
    }
  }

  __device__ int64_t seq_end() const { return p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T; }
  __device__ void start(int64_t t) {
    n = seq_of(p.seq, t, begin);
    next = seq_end();
  }
  // To the sequence of token t (t at or after the current one's start).
  __device__ void advance(int64_t t) {
    while (t >= next && n + 1 < p.seq.N) {  // crossed into the next (non-empty) sequence
      ++n;
      begin = next;
      next = seq_end();
    }
  }
  // A batch of `rows` tokens from t whose windows all lie inside one sequence.
  __device__ bool inside(int64_t t, int rows) const { return t - S >= begin && t + rows <= next; }

  // Token tt's pre-activation (input row cur) into acc, then the window slides. kSeqChecks:
  // taps before the sequence's first token come from the initial state (or are zero).
  template <bool kSeqChecks>
  __device__ void sum_taps(int64_t tt, const float (&cur)[NC], float (&acc)[NC]) {
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
    slide(cur);
  }
  static __device__ void silu_all(float (&acc)[NC]) {
#pragma unroll
    for (int j = 0; j < NC; ++j) acc[j] = silu_f(acc[j]);
  }
  // Token tt's output into dst (its nc channels, one by one), the activation a runtime choice.
  template <bool kSeqChecks>
  __device__ void token(int64_t tt, const float (&cur)[NC], T* dst) {
    float acc[NC];
    sum_taps<kSeqChecks>(tt, cur, acc);
    if (p.silu) silu_all(acc);  // one uniform branch per token, not one per channel
    store_chunk<false>(dst, 0, nc, acc);
  }
  __device__ void slide(const float (&cur)[NC]) {
#pragma unroll
    for (int k = 0; k + 1 < S; ++k)
#pragma unroll
      for (int j = 0; j < NC; ++j) xw[k][j] = xw[k + 1][j];
#pragma unroll
    for (int j = 0; j < NC; ++j) xw[S - 1][j] = cur[j];
  }
};

// The prefill for rows that do not allow 16-byte accesses (odd strides, or C not a multiple
// of 16 bytes; the others take conv_bulk_kernel). Thread = NC channels (a 16-byte vector's
// worth: 8 bf16/f16, 4 f32) x a run of p.run tokens (a multiple of kConvDepth); a warp covers
// 32 such groups. Everything stays in registers: D rows in flight, each 16-bit element in a
// register of its own, the row a token consumes refilled with the row D ahead, so a thread
// waits only on its oldest loads while the others stay outstanding (a software pipeline in
// registers: no shared memory, no barrier).
// A batch of D tokens whose window lies inside one sequence skips the sequence checks; the
// others step into each next sequence and read taps before its start from the initial state
// (or zero).
template <class T, int W>
__global__ void __launch_bounds__(kConvThreads, conv_min_blocks<T>(W)) conv_scalar_kernel(ConvParams<T> p) {
  constexpr int NC = Vec<T>::N, S = W - 1, D = kConvDepth;
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c0 = (blockIdx.x * 32 + lane) * NC;
  const int64_t t0 = (int64_t(blockIdx.y) * (kConvThreads / 32) + warp) * p.run;
  if (c0 >= p.C || t0 >= p.tokens) return;
  const int64_t t_end = t0 + p.run < p.tokens ? t0 + p.run : p.tokens;
  const int nc = p.C - c0 < NC ? p.C - c0 : NC;
  const T* xc = p.x + c0;

  // One row of the thread's channels from `src`: nc scalars and zeros.
  auto load = [&](const T* src) {
    Vec<T> v;
#pragma unroll
    for (int j = 0; j < NC; ++j) v.v[j] = j < nc ? src[j] : from_f32<T>(0.f);
    return *reinterpret_cast<const uint4*>(v.v);
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

  ConvLane<T, W> cl(p, c0);
#pragma unroll
  for (int k = 0; k < S; ++k) unpack_f32<T>(halo[k], cl.xw[k]);
  cl.start(t0);

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
        if constexpr (kSeqChecks) cl.advance(tt);
        cl.template token<kSeqChecks>(tt, cur, dst);
      }
      dst += p.out_stride;
    }
  };
  for (int64_t t = t0; t < t_end; t += D) {
    cl.advance(t);
    // t + D <= next <= tokens, and runs are whole batches: every token of it is before t_end
    if (cl.inside(t, D))
      batch.template operator()<false>(t);
    else
      batch.template operator()<true>(t);
  }
}

// The bulk-copy prefill (16-byte accessible rows). Block = kBulkWarps compute warps + one
// producer warp, over 2 KB of every row (a lane's 8-byte piece: NC = 4 bf16/f16 or 2 f32
// channels, whose taps and window fit 72 registers at W <= 4, so 24 compute warps share an
// SM) and a run of p.run tokens (a multiple of kBulkRows). The rows t0 - S .. t_end - 1 stream
// through a ring of kBulkStages stages of kBulkRows rows, both ways on the copy engine: the
// producer loads a stage's rows (one cp.async.bulk per row, counted on the stage's full
// barrier); each compute lane reads its piece of a row and writes the token's output over it
// (no one else reads it); once every compute warp has released the stage, the producer
// stores its output rows (bulk copies to global) and refills it. The compute warps make no
// global access at all: their issue is all arithmetic (bench/NOTES.md, runs 32-38, 100-).
// Row j of the stream (token t0 - S + j) is row j % R of stage j / R. A batch of R tokens
// from t0 + b R reads stream rows S + b R .. S + b R + R - 1: tokens i < R - S from stage b,
// the rest from stage b + 1, a boundary known at compile time in the unrolled batch. There
// the warp releases stage b: every row of it has been read and holds its output (rows < S
// were written in batch b - 1).
inline constexpr int kBulkWarps = 8, kBulkThreads = 32 * (kBulkWarps + 1);
inline constexpr int kBulkRows = 8, kBulkStages = 4;
inline constexpr int kBulkPiece = 8;                   // bytes of a row per compute lane
inline constexpr int kBulkRowPieces = 32 * kBulkWarps;  // pieces per row of a block
inline constexpr int kBulkSmem = kBulkStages * kBulkRows * kBulkRowPieces * kBulkPiece;
// Registers: 3 blocks per SM (the ring allows 3) hold the taps, bias and window of 4
// channels up to W = 4 (or 2 f32 channels at every width); 16-bit channels at W = 5..7 take 2
// blocks, and W = 8 one (at 2 blocks it spills).
template <class T>
__host__ __device__ constexpr int conv_bulk_registers(int W) {
  return sizeof(T) == 4 || W <= 4 ? 72 : W <= 7 ? 112 : 160;
}

template <class T, int W>
__global__ void __launch_bounds__(kBulkThreads) __maxnreg__(conv_bulk_registers<T>(W)) conv_bulk_kernel(ConvParams<T> p) {
  using Piece = RawOf<kBulkPiece>;
  constexpr int NC = Vec<T, kBulkPiece>::N, S = W - 1, R = kBulkRows, K = kBulkStages;
  static_assert(S < R, "a batch's window crosses at most one stage boundary");
  extern __shared__ Piece ring[];  // [K][R][kBulkRowPieces]
  __shared__ uint64_t full[K], empty[K];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int slab = int(blockIdx.x) * kBulkRowPieces * NC;  // the block's first channel
  const int64_t t0 = int64_t(blockIdx.y) * p.run, t_end = min(t0 + p.run, p.tokens);
  const int stages = int((t_end - t0 + S + R - 1) / R);
  if (threadIdx.x == 0) {
    for (int k = 0; k < K; ++k) {
      mbar_init(&full[k], 1);
      mbar_init(&empty[k], kBulkWarps);
    }
  }
  __syncthreads();
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();

  if (warp == kBulkWarps) {  // the producer: lane r moves row r of each stage
    const uint32_t row_bytes = uint32_t(min(kBulkRowPieces * NC, p.C - slab)) * sizeof(T);
    auto slot_row = [&](int s) { return ring + ((s % K) * R + lane) * kBulkRowPieces; };
    // Stage s's output rows (tokens t0 .. t_end - 1 of it) to out, once all warps released it.
    auto store = [&](int s) {
      mbar_wait(&empty[s % K], (s / K) & 1);
      const int64_t tok = t0 - S + int64_t(s) * R + lane;
      if (lane < R && tok >= t0 && tok < t_end) bulk_copy_s2g(p.out + tok * p.out_stride + slab, slot_row(s), row_bytes);
      bulk_commit();
    };
    for (int s = 0; s < stages; ++s) {
      if (s >= K) {
        store(s - K);
        bulk_wait<0, true>();  // the stores have read the slot before the loads overwrite it
      }
      const int64_t first = t0 - S + int64_t(s) * R;  // token of the stage's row 0
      const int64_t lo = max(first, int64_t(0)), hi = min(first + R, t_end);
      if (lane == 0) mbar_arrive_expect(&full[s % K], uint32_t(hi - lo) * row_bytes);
      __syncwarp();
      const int64_t tok = first + lane;
      if (lane < R && tok >= lo && tok < hi)
        bulk_copy_g2s(slot_row(s), p.x + tok * p.x_stride + slab, row_bytes, &full[s % K]);
    }
    for (int s = max(stages - K, 0); s < stages; ++s) store(s);
    bulk_wait<0, false>();
    return;
  }

  const int unit = warp * 32 + lane;
  ConvLane<T, W, NC> cl(p, slab + unit * NC);
  Piece* mine = ring + unit;  // + (slot R + row) kBulkRowPieces
  auto at = [&](int s, int r) { return mine + ((s % K) * R + r) * kBulkRowPieces; };
  auto release = [&](int s) {
    fence_shared_for_async();  // this lane's outputs, before the producer's bulk stores read them
    __syncwarp();
    if (lane == 0) mbar_arrive(&empty[s % K]);
  };

  mbar_wait(&full[0], 0);
#pragma unroll
  for (int k = 0; k < S; ++k) unpack_f32<T>(*at(0, k), cl.xw[k]);
  cl.start(t0);

  // Tokens t0 + b R .. + R - 1 (those before t_end). The batches inside one sequence, where
  // all the warp's channels are in range, have no branch per token (the activation is a
  // template choice, the store unconditional), so their R tokens schedule as one block.
  auto batch = [&]<bool kSeqChecks, bool kSilu>(int b) {
    const int64_t t = t0 + int64_t(b) * R;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      if (i == R - S) {  // stage b is done with: release it, then wait for b + 1
        release(b);
        if (b + 1 < stages) mbar_wait(&full[(b + 1) % K], ((b + 1) / K) & 1);
      }
      const int64_t tt = t + i;
      Piece* rw = at(i < R - S ? b : b + 1, (S + i) % R);
      float cur[NC];
      unpack_f32<T>(*rw, cur);
      T* out = reinterpret_cast<T*>(rw);
      if constexpr (kSeqChecks) {
        if (tt < t_end) {
          cl.advance(tt);
          cl.template token<true>(tt, cur, out);
        }
      } else {
        float acc[NC];
        cl.template sum_taps<false>(tt, cur, acc);
        if constexpr (kSilu) cl.silu_all(acc);
        Vec<T, kBulkPiece> v;
#pragma unroll
        for (int j = 0; j < NC; ++j) v.v[j] = from_f32<T>(acc[j]);
        store_vec(out, v);
      }
    }
  };
  const bool warp_in_range = slab + (warp + 1) * 32 * NC <= p.C;
  int b = 0;
  for (; t0 + int64_t(b) * R < t_end; ++b) {
    const int64_t t = t0 + int64_t(b) * R;
    cl.advance(t);
    // t + R <= next <= tokens, and runs are whole batches: every token of it is before t_end
    if (!cl.inside(t, R) || !warp_in_range)
      batch.template operator()<true, false>(b);
    else if (p.silu)
      batch.template operator()<false, true>(b);
    else
      batch.template operator()<false, false>(b);
  }
  if (b < stages) release(b);  // the last stage, read (and written) by the last batch only
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
