#pragma once
// Causal depthwise conv + SiLU prefill through a shared-memory tile, for rows that allow
// 16-byte accesses (aligned base, C and strides multiples of Vec<T>::N).
#include "cuda/kernels/gdn_conv.cuh"

namespace mlxn::kernels::gdn {

inline constexpr int kConvTileThreads = 128;                                    // 4 warps along tokens
inline constexpr int kConvTileTokens = 32;                                      // output tokens per tile
inline constexpr int kConvTileRun = kConvTileTokens / (kConvTileThreads / 32);  // tokens per thread
inline constexpr int kConvTileVecs = 32;  // 16-byte vectors per tile row: one per lane, 512 bytes

// Block = kConvTileTokens tokens x kConvTileVecs 16-byte channel vectors. The block first
// copies the S = W - 1 halo rows and its tokens into shared memory with 16-byte cp.async
// (a warp moves 512 contiguous bytes of one row per instruction), all in flight at once;
// one wait and one barrier later, lane l computes vector l for a run of kConvTileRun
// consecutive tokens, reading its W taps from shared memory, and writes 16-byte vectors
// (a warp writes 512 contiguous bytes of a row). The tile is small (~18 KB at W = 4): six
// blocks per SM (registers: <= 80 up to W = 4, no spills; 128 above) hold ~107 KB of loads
// in flight while they all load, and a long prefill is several waves, so one block's
// compute hides behind the others' loads.
// Taps before the token's sequence read the initial state (or zero); a run that lies inside
// one sequence, window included, skips those checks. Weights and bias stay in registers as
// f32, summed in the decode step's order, so a prefill equals the same tokens as steps.
template <class T, int W>
__global__ void __launch_bounds__(kConvTileThreads, W <= 4 ? 6 : 4) conv_tile_kernel(ConvParams<T> p) {
  constexpr int NV = Vec<T>::N, S = W - 1, TT = kConvTileTokens, RUN = kConvTileRun;
  constexpr int kRows = S + TT, kWarps = kConvTileThreads / 32;
  __shared__ Vec<T> rows[kRows][kConvTileVecs];  // rows[r][lane]: input row t0 - S + r
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t0 = int64_t(blockIdx.x) * TT;
  const int c0 = (blockIdx.y * kConvTileVecs + lane) * NV;
  const bool active = c0 < p.C;  // C is a multiple of NV: a vector is wholly inside or out
  const T* xc = p.x + (active ? c0 : 0);

  // Warp w copies rows w, w + kWarps, ...; rows outside [0, tokens) and lanes past C are zeroed.
#pragma unroll
  for (int r = warp; r < kRows; r += kWarps) {
    const int64_t row = t0 - S + r;
    const bool inside = active && row >= 0 && row < p.tokens;
    cp_async16(&rows[r][lane], inside ? xc + row * p.x_stride : p.x, inside);
  }
  cp_async_commit();

  // While the copies fly: weights, bias and the run's sequence.
  float w[W][NV], bias[NV];
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int c = active ? c0 + j : 0;
#pragma unroll
    for (int k = 0; k < W; ++k) w[k][j] = param_f32(p.weight, p.weight_kind, int64_t(c) * W + k);
    bias[j] = p.bias ? param_f32(p.bias, p.bias_kind, c) : 0.f;
  }
  const int64_t r0 = t0 + warp * RUN;  // the thread's first token
  const int64_t t_end = r0 + RUN < p.tokens ? r0 + RUN : p.tokens;
  int64_t begin = 0, n = 0, next = 0;
  if (r0 < p.tokens) {
    n = seq_of(p.seq, r0, begin);
    next = p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T;
  }

  cp_async_wait<0>();
  __syncthreads();
  if (!active || r0 >= p.tokens) return;

  // Not unrolled over tokens: unrolled, ptxas hoists every token's shared loads and spills.
  auto run = [&]<bool kSeqChecks>() {
#pragma unroll 1
    for (int i = 0; i < RUN; ++i) {
      const int64_t t = r0 + i;
      if (t >= t_end) break;
      if constexpr (kSeqChecks) {
        while (t >= next && n + 1 < p.seq.N) {  // crossed into the next (non-empty) sequence
          ++n;
          begin = next;
          next = p.seq.cu ? clamp_tok(p.seq.cu[n + 1], begin, p.tokens) : begin + p.seq.T;
        }
      }
      float acc[NV];
#pragma unroll
      for (int j = 0; j < NV; ++j) acc[j] = bias[j];
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const int64_t src = t - S + k;
        if (!kSeqChecks || k == S || src >= begin) {
          const Vec<T> g = rows[warp * RUN + i + k][lane];
#pragma unroll
          for (int j = 0; j < NV; ++j) acc[j] += w[k][j] * to_f32(g.v[j]);
        } else if (p.state_in) {
          // before the sequence: the state row S - (begin - src); its rows need not be aligned
          const T* st = p.state_in + (n * S + S - (begin - src)) * p.C + c0;
#pragma unroll
          for (int j = 0; j < NV; ++j) acc[j] += w[k][j] * to_f32(st[j]);
        }
      }
      Vec<T> y;
#pragma unroll
      for (int j = 0; j < NV; ++j) y.v[j] = from_f32<T>(p.silu ? silu_f(acc[j]) : acc[j]);
      store_vec(p.out + t * p.out_stride + c0, y);
    }
  };
  if (r0 - S >= begin && t_end <= next)
    run.template operator()<false>();
  else
    run.template operator()<true>();
}

}  // namespace mlxn::kernels::gdn
