#pragma once
// Token-sequential delta rule (decode steps, short prompts). A warp owns 8 columns of one
// (sequence, value head): lane (cl, rl) holds columns 4cl..4cl+3 of rows rl, rl + 16, ...
// of the f32 state, K/16 rows. Per token: S^T k and S^T q in one pass, a reduction over K
// by shuffles within the warp, then
//   delta = beta (v - e S^T k),  o = e S^T q + (k.q) delta,  S = e S + k delta^T.
// The state is brought in with cp.async into the lane's own shared-memory slots: all of a
// lane's 16-byte state loads are in flight at once without holding registers (the shared
// slab, not the register file, bounds the state bytes in flight per SM), and as each lane
// reads back only what it copied there is no barrier anywhere in the kernel.
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

__device__ __forceinline__ float scalar_f32(const void* p, int kind, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  if (kind == 1) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

inline constexpr int kRecThreads = 128, kRecCols = 32;  // a block: 4 warps x 8 columns
inline constexpr int kRecWarpCols = 8;

// 10 blocks per SM at K <= 128 (48 registers, 16 KB of state each): 160 KB of state in
// flight per SM when all are loading.
template <class T, int K>
__global__ void __launch_bounds__(kRecThreads, K <= 128 ? 10 : 4) recurrent_kernel(RecurrentParams<T> p) {
  constexpr int RL = 16, R = K / RL;  // row lanes, rows per lane
  // slab[warp][r][c]: state row r, column c of the warp's 8; lane (cl, rl) uses columns
  // 4cl..4cl+3 of rows rl + 16 i (conflict-free 16-byte accesses: 8 lanes hit 32 banks).
  __shared__ float4 slab[kRecThreads / 32][K][kRecWarpCols / 4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int cl = lane & 1, rl = lane >> 1;
  const int h = blockIdx.y, n = blockIdx.z, hk = h / p.group;
  const int c0 = blockIdx.x * kRecCols + warp * kRecWarpCols + cl * 4;  // first state column of this lane
  float4(&own)[K][kRecWarpCols / 4] = slab[warp];
  const int64_t soff = (int64_t(n) * p.H + h) * K * p.V;

#pragma unroll
  for (int i = 0; i < R; ++i) {
    const int r = rl + i * RL;
    if (p.h0)
      cp_async<16>(&own[r][cl], p.h0 + soff + int64_t(r) * p.V + c0, true);
    else
      own[r][cl] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
  cp_async_commit();
  int64_t begin, len, slot;
  seq_span(p.seq, n, begin, len, slot);

  for (int64_t t = 0; t < len; ++t) {
    const int64_t tok = begin + t;
    // this lane's rows of q and k, and |q|^2, |k|^2, q.k over all K rows (the two column
    // lanes hold the same rows: the sum runs over the row lanes only)
    float qr[R], kr[R], nq = 0.f, nk = 0.f, qk = 0.f;
    const T* qp = p.q + tok * p.q_tok + hk * p.q_head;
    const T* kp = p.k + tok * p.k_tok + hk * p.k_head;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      qr[i] = to_f32(qp[rl + i * RL]);
      kr[i] = to_f32(kp[rl + i * RL]);
      nq += qr[i] * qr[i];
      nk += kr[i] * kr[i];
      qk += qr[i] * kr[i];
    }
    float v[4];
    const T* vp = p.v + tok * p.v_tok + h * p.v_head + c0;
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = to_f32(vp[j]);
    const float e = __expf(p.g[tok * p.g_stride + h]);
    const float b = scalar_f32(p.beta, p.beta_kind, tok * p.beta_stride + h);
#pragma unroll
    for (int o = 2; o < 32; o <<= 1) {
      nq += __shfl_xor_sync(0xffffffffu, nq, o);
      nk += __shfl_xor_sync(0xffffffffu, nk, o);
      qk += __shfl_xor_sync(0xffffffffu, qk, o);
    }
    const float rq = p.l2 ? rsqrtf(nq + p.l2_eps) : 1.f, rk = p.l2 ? rsqrtf(nk + p.l2_eps) : 1.f;
    const float qs = rq * p.scale;  // q's factor: normalisation and scale

    if (t == 0) cp_async_wait<0>();
    float ks[4] = {0.f, 0.f, 0.f, 0.f}, qv[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const float4 s = own[rl + i * RL][cl];
      const float sj[4] = {s.x, s.y, s.z, s.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        ks[j] += sj[j] * kr[i];
        qv[j] += sj[j] * qr[i];
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int o = 2; o < 32; o <<= 1) {
        ks[j] += __shfl_xor_sync(0xffffffffu, ks[j], o);
        qv[j] += __shfl_xor_sync(0xffffffffu, qv[j], o);
      }
    }
    float delta[4], o[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      delta[j] = b * (v[j] - e * ks[j] * rk);
      o[j] = e * qv[j] * qs + qk * rq * rk * p.scale * delta[j];
    }
    if (rl == 0) {
      T* dst = p.out + tok * p.o_tok + h * p.o_head + c0;
#pragma unroll
      for (int j = 0; j < 4; ++j) dst[j] = from_f32<T>(o[j]);
    }
    // S = e S + (k rk) delta^T: back to the slots, or at the last token straight to ht
    const bool last = t + 1 == len;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int r = rl + i * RL;
      const float kk = kr[i] * rk;
      const float4 s = own[r][cl];
      const float4 u = make_float4(e * s.x + kk * delta[0], e * s.y + kk * delta[1], e * s.z + kk * delta[2],
                                   e * s.w + kk * delta[3]);
      if (!last)
        own[r][cl] = u;
      else if (p.ht)
        *reinterpret_cast<float4*>(p.ht + soff + int64_t(r) * p.V + c0) = u;
    }
  }

  if (len == 0 && p.ht) {  // no tokens: the state passes through
    cp_async_wait<0>();
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int r = rl + i * RL;
      *reinterpret_cast<float4*>(p.ht + soff + int64_t(r) * p.V + c0) = own[r][cl];
    }
  }
}

}  // namespace mlxn::kernels::gdn
