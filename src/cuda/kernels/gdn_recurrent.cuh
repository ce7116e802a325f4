#pragma once
// Token-sequential delta rule (decode steps, short prompts). One block per
// (sequence, value head, 32-column slice of V); its [K, 32] slice of the f32 state lives in
// registers for the whole sequence: thread (cg, rg) owns columns 4cg..4cg+3 of rows
// rg, rg + 16, ... Per token: S^T k and S^T q in one pass, a reduction over K, then
//   delta = beta (v - e S^T k),  o = e S^T q + (k.q) delta,  S = e S + k delta^T.
#include "cuda/kernels/gdn_common.cuh"

namespace mlxn::kernels::gdn {

template <class T>
struct RecurrentParams {
  const T *q, *k, *v;
  T* out;
  int64_t q_tok, q_head, k_tok, k_head, v_tok, v_head, o_tok, o_head;  // strides (elements)
  const float* g;
  int64_t g_stride;
  const void* beta;
  int64_t beta_stride;
  int beta_kind;  // 0 f32, 1 f16, 2 bf16
  const float* h0;
  float* ht;
  SeqLayout seq;
  int H, group, V;
  float scale, l2_eps;
  bool l2;
};

inline constexpr int kRecThreads = 128, kRecCols = 32;

// The state is read and written once per step, and a model streams all its other weights
// through L2 before the next step reads it again: both sides carry the evict-first hint
// (`ld/st.global.cs`). Measured on an H200, B32 in place: 77.7-78.9% of copy with plain
// accesses, 83-85% with the hint on both sides (bench/NOTES.md, run 25).
// The bound caps K <= 128 at 64 registers (no spills): 8 blocks per SM instead of 6, a third
// more state bytes in flight for large decode batches.
template <class T, int K>
__global__ void __launch_bounds__(kRecThreads, K <= 128 ? 8 : 4) recurrent_kernel(RecurrentParams<T> p) {
  constexpr int RG = kRecThreads / 8;  // row groups
  constexpr int R = K / RG;            // rows per thread
  __shared__ float sq[K], sk[K], sv[kRecCols];
  __shared__ float red[4][kRecCols][2];
  __shared__ float sred[3][kRecThreads / 32];
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int cg = tid & 7, rg = tid >> 3;
  const int h = blockIdx.y, n = blockIdx.z, hk = h / p.group;
  const int c0 = blockIdx.x * kRecCols + cg * 4;  // first state column of this thread
  int64_t begin, len, slot;
  seq_span(p.seq, n, begin, len, slot);

  const int64_t soff = (int64_t(n) * p.H + h) * K * p.V;
  float S[R][4];
#pragma unroll
  for (int i = 0; i < R; ++i) {
    if (p.h0) {
      const float4 x = __ldcs(reinterpret_cast<const float4*>(p.h0 + soff + int64_t(rg + i * RG) * p.V + c0));
      S[i][0] = x.x, S[i][1] = x.y, S[i][2] = x.z, S[i][3] = x.w;
    } else {
      S[i][0] = S[i][1] = S[i][2] = S[i][3] = 0.f;
    }
  }

  for (int64_t t = 0; t < len; ++t) {
    const int64_t tok = begin + t;
    // q, k of the key head and the v slice into shared memory, with |q|^2, |k|^2, q.k.
    float pq = 0.f, pk = 0.f, pqk = 0.f;
    for (int i = tid; i < K; i += kRecThreads) {
      const float qi = to_f32(p.q[tok * p.q_tok + hk * p.q_head + i]);
      const float ki = to_f32(p.k[tok * p.k_tok + hk * p.k_head + i]);
      sq[i] = qi;
      sk[i] = ki;
      pq += qi * qi;
      pk += ki * ki;
      pqk += qi * ki;
    }
    if (tid < kRecCols) sv[tid] = to_f32(p.v[tok * p.v_tok + h * p.v_head + blockIdx.x * kRecCols + tid]);
    pq = warp_sum(pq);
    pk = warp_sum(pk);
    pqk = warp_sum(pqk);
    if (lane == 0) sred[0][warp] = pq, sred[1][warp] = pk, sred[2][warp] = pqk;
    __syncthreads();
    float nq = 0.f, nk = 0.f, qk = 0.f;
#pragma unroll
    for (int w = 0; w < kRecThreads / 32; ++w) nq += sred[0][w], nk += sred[1][w], qk += sred[2][w];
    const float rq = p.l2 ? rsqrtf(nq + p.l2_eps) : 1.f, rk = p.l2 ? rsqrtf(nk + p.l2_eps) : 1.f;
    const float qs = rq * p.scale;  // q's factor: normalisation and scale
    const float e = __expf(p.g[tok * p.g_stride + h]);
    const float b = scalar_f32(p.beta, p.beta_kind, tok * p.beta_stride + h);

    float ks[4] = {0.f, 0.f, 0.f, 0.f}, qv[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int r = rg + i * RG;
      const float kr = sk[r], qr = sq[r];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        ks[j] += S[i][j] * kr;
        qv[j] += S[i][j] * qr;
      }
    }
    // reduce over the row groups: lanes cg + 8m within the warp, then the four warps
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int o = 8; o < 32; o <<= 1) {
        ks[j] += __shfl_xor_sync(0xffffffffu, ks[j], o);
        qv[j] += __shfl_xor_sync(0xffffffffu, qv[j], o);
      }
    }
    if (lane < 8) {
#pragma unroll
      for (int j = 0; j < 4; ++j) red[warp][cg * 4 + j][0] = ks[j], red[warp][cg * 4 + j][1] = qv[j];
    }
    __syncthreads();
    float delta[4], o[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = cg * 4 + j;
      const float kS = (red[0][c][0] + red[1][c][0] + red[2][c][0] + red[3][c][0]) * rk;
      const float qS = (red[0][c][1] + red[1][c][1] + red[2][c][1] + red[3][c][1]) * qs;
      delta[j] = b * (sv[c] - e * kS);
      o[j] = e * qS + qk * rq * rk * p.scale * delta[j];
    }
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const float kr = sk[rg + i * RG] * rk;
#pragma unroll
      for (int j = 0; j < 4; ++j) S[i][j] = e * S[i][j] + kr * delta[j];
    }
    if (rg == 0) {
      T* dst = p.out + tok * p.o_tok + h * p.o_head + c0;
#pragma unroll
      for (int j = 0; j < 4; ++j) dst[j] = from_f32<T>(o[j]);
    }
    __syncthreads();  // shared buffers are rewritten by the next token
  }

  if (p.ht) {
#pragma unroll
    for (int i = 0; i < R; ++i)
      __stcs(reinterpret_cast<float4*>(p.ht + soff + int64_t(rg + i * RG) * p.V + c0),
             make_float4(S[i][0], S[i][1], S[i][2], S[i][3]));
  }
}

}  // namespace mlxn::kernels::gdn
