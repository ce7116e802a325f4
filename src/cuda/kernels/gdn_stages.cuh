#pragma once
// The chunk stages of the delta rule as plain f32 (SIMT) kernels, every dtype: each stage op
// on its own, and gdn_chunk for f32 inputs. One block per (chunk slot, value head) unless
// said otherwise; chunk matrices in shared memory as [64][65] floats (padded rows).
#include "cuda/kernels/gdn_common.cuh"

namespace mlxn::kernels::gdn {

template <class T>
struct HeadPtr {
  T* data;
  int64_t tok, head;  // strides (elements)
  __device__ __forceinline__ T* at(int64_t t, int64_t h) const { return data + t * tok + h * head; }
};

struct StageParams {
  SeqLayout seq;
  int H, group, K, V;
  const float* g;  // [tokens, H] rows g_stride apart
  int64_t g_stride;
  float* g_cum;
  int64_t gc_stride;
  const void* beta;
  int64_t beta_stride;
  int beta_kind;
  float* A;  // [tokens, H, 64]
  const float* A_in;
  float* h;  // [B * slots, H, K, V]
  const float* h0;
  float* ht;
  float scale, l2_eps;
  bool l2;  // normalise q and k rows on load
};

constexpr int kPad = kChunk + 1;

__device__ __forceinline__ float beta_at(const StageParams& p, int64_t tok, int h) {
  return scalar_f32(p.beta, p.beta_kind, tok * p.beta_stride + h);
}

// rn[i] = 1 / sqrt(|x_i|^2 + eps) for the chunk's rows (1 without l2); rows >= len get 0.
template <class T>
__device__ void row_norms(const HeadPtr<const T>& x, int64_t tok0, int len, int head, int K, bool l2, float eps,
                          float* rn) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int i = warp; i < kChunk; i += nw) {
    float ss = 0.f;
    if (l2 && i < len)
      for (int c = lane; c < K; c += 32) {
        const float v = to_f32(x.at(tok0 + i, head)[c]);
        ss += v * v;
      }
    ss = warp_sum(ss);
    if (lane == 0) rn[i] = i < len ? (l2 ? rsqrtf(ss + eps) : 1.f) : 0.f;
  }
}

// Chunk-local inclusive cumsum of g; block of 64 threads per (slot, head).
__global__ void cumsum_kernel(StageParams p) {
  __shared__ float s[kChunk];
  int64_t n, tok0;
  int len;
  if (!chunk_of_slot(p.seq, blockIdx.x, n, tok0, len)) return;
  const int h = blockIdx.y, i = threadIdx.x;
  s[i] = i < len ? p.g[(tok0 + i) * p.g_stride + h] : 0.f;
  __syncthreads();
  for (int o = 1; o < kChunk; o <<= 1) {
    const float add = i >= o ? s[i - o] : 0.f;
    __syncthreads();
    s[i] += add;
    __syncthreads();
  }
  if (i < len) p.g_cum[(tok0 + i) * p.gc_stride + h] = s[i];
}

// A[i, j] = beta_i k_i.k_j exp(gc_i - gc_j), j < i. 256 threads: thread (i, 16 columns).
template <class T>
__global__ void __launch_bounds__(256) kkt_kernel(StageParams p, HeadPtr<const T> k) {
  __shared__ float tile[kChunk][kPad];
  __shared__ float rn[kChunk], gc[kChunk];
  int64_t n, tok0;
  int len;
  if (!chunk_of_slot(p.seq, blockIdx.x, n, tok0, len)) return;
  const int h = blockIdx.y, hk = h / p.group, tid = threadIdx.x;
  const int i = tid >> 2, j0 = (tid & 3) * 16;
  row_norms(k, tok0, len, hk, p.K, p.l2, p.l2_eps, rn);
  if (tid < kChunk) gc[tid] = tid < len ? p.g_cum[(tok0 + tid) * p.gc_stride + h] : 0.f;
  float acc[16] = {};
  for (int x0 = 0; x0 < p.K; x0 += kChunk) {
    __syncthreads();
    for (int e = tid; e < kChunk * kChunk; e += blockDim.x) {
      const int r = e / kChunk, c = e % kChunk;
      tile[r][c] = r < len ? to_f32(k.at(tok0 + r, hk)[x0 + c]) : 0.f;
    }
    __syncthreads();
    for (int c = 0; c < kChunk; ++c) {
      const float a = tile[i][c];
#pragma unroll
      for (int j = 0; j < 16; ++j) acc[j] += a * tile[j0 + j][c];
    }
  }
  if (i < len) {
    const float b = beta_at(p, tok0 + i, h) * rn[i];
    float* dst = p.A + ((tok0 + i) * p.H + h) * kChunk + j0;
#pragma unroll
    for (int j = 0; j < 16; ++j) dst[j] = j0 + j < i ? b * acc[j] * rn[j0 + j] * __expf(gc[i] - gc[j0 + j]) : 0.f;
  }
}

// Ai = (I + A)^-1: thread c solves column c by forward substitution (A[i][j] is read by
// every thread at once; column c is only touched by thread c, so no barrier is needed).
__global__ void __launch_bounds__(64) solve_kernel(StageParams p) {
  __shared__ float A[kChunk][kPad], X[kChunk][kPad];
  int64_t n, tok0;
  int len;
  if (!chunk_of_slot(p.seq, blockIdx.x, n, tok0, len)) return;
  const int h = blockIdx.y, c = threadIdx.x;
  for (int i = 0; i < kChunk; ++i) A[i][c] = i < len ? p.A_in[((tok0 + i) * p.H + h) * kChunk + c] : 0.f;
  __syncthreads();
  for (int i = 0; i < kChunk; ++i) {
    float x = i == c ? 1.f : 0.f;
    for (int j = c; j < i; ++j) x -= A[i][j] * X[j][c];
    X[i][c] = x;
  }
  for (int i = 0; i < len; ++i) p.A[((tok0 + i) * p.H + h) * kChunk + c] = X[i][c];
}

// w = Ai (beta exp(gc) k), u = Ai (beta v). 256 threads: thread (row i, 16 columns) of a
// 64-column tile; columns of K then of V in tiles of 64.
template <class T, class U>
__global__ void __launch_bounds__(256)
    wu_kernel(StageParams p, HeadPtr<const T> k, HeadPtr<const T> v, HeadPtr<U> w, HeadPtr<U> u) {
  __shared__ float Ai[kChunk][kPad], tile[kChunk][kPad];
  __shared__ float rn[kChunk], sk[kChunk], sv[kChunk];
  int64_t n, tok0;
  int len;
  if (!chunk_of_slot(p.seq, blockIdx.x, n, tok0, len)) return;
  const int h = blockIdx.y, hk = h / p.group, tid = threadIdx.x;
  const int i = tid >> 2, c0 = (tid & 3) * 16;
  row_norms(k, tok0, len, hk, p.K, p.l2, p.l2_eps, rn);
  for (int e = tid; e < kChunk * kChunk; e += blockDim.x) {
    const int r = e / kChunk, c = e % kChunk;
    Ai[r][c] = r < len ? p.A_in[((tok0 + r) * p.H + h) * kChunk + c] : 0.f;
  }
  __syncthreads();
  if (tid < kChunk) {
    const float b = tid < len ? beta_at(p, tok0 + tid, h) : 0.f;
    sv[tid] = b;
    sk[tid] = tid < len ? b * __expf(p.g_cum[(tok0 + tid) * p.gc_stride + h]) * rn[tid] : 0.f;
  }
  for (int part = 0; part < 2; ++part) {
    const int D = part == 0 ? p.K : p.V;
    for (int x0 = 0; x0 < D; x0 += kChunk) {
      __syncthreads();
      for (int e = tid; e < kChunk * kChunk; e += blockDim.x) {
        const int r = e / kChunk, c = e % kChunk;
        float val = 0.f;
        if (r < len)
          val = part == 0 ? to_f32(k.at(tok0 + r, hk)[x0 + c]) * sk[r] : to_f32(v.at(tok0 + r, h)[x0 + c]) * sv[r];
        tile[r][c] = val;
      }
      __syncthreads();
      float acc[16] = {};
      for (int j = 0; j <= i; ++j) {
        const float a = Ai[i][j];
#pragma unroll
        for (int c = 0; c < 16; ++c) acc[c] += a * tile[j][c0 + c];
      }
      if (i < len) {
        U* dst = (part == 0 ? w.at(tok0 + i, h) : u.at(tok0 + i, h)) + x0 + c0;
#pragma unroll
        for (int c = 0; c < 16; ++c) dst[c] = from_f32<U>(acc[c]);
      }
    }
  }
}

// The inter-chunk scan. Block per (32-column slice of V, head, sequence), 128 threads; the
// [K, 32] state slice in registers as in the recurrent kernel (thread (cg, rg): columns
// 4cg.., rows rg + 16m). Per chunk: snapshot h; v_new = u - w h (8 tokens per reduction
// round); h = e^G h + sum_i k_i (v_new_i e^(G - gc_i)).
template <class T, class U, int K>
__global__ void __launch_bounds__(128)
    state_kernel(StageParams p, HeadPtr<const T> k, HeadPtr<const U> w, HeadPtr<const U> u, HeadPtr<U> v_new) {
  constexpr int RG = 16, R = K / RG, TB = 8;
  __shared__ float red[4][TB][32];
  __shared__ float vn[kChunk][32];
  __shared__ float rn[kChunk], gc[kChunk];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, cg = tid & 7, rg = tid >> 3;
  const int h = blockIdx.y, hk = h / p.group;
  const int64_t nseq = blockIdx.z;
  const int col0 = blockIdx.x * 32, c0 = col0 + cg * 4;
  int64_t begin, len, slot;
  seq_span(p.seq, nseq, begin, len, slot);
  const int64_t soff = (nseq * p.H + h) * int64_t(K) * p.V;
  float S[R][4];
#pragma unroll
  for (int m = 0; m < R; ++m) {
    const int r = rg + m * RG;
#pragma unroll
    for (int j = 0; j < 4; ++j) S[m][j] = p.h0 ? p.h0[soff + int64_t(r) * p.V + c0 + j] : 0.f;
  }
  for (int64_t c = 0; c * kChunk < len; ++c) {
    const int64_t tok0 = begin + c * kChunk;
    const int nt = int(len - c * kChunk < kChunk ? len - c * kChunk : kChunk);
    float* hs = p.h + ((slot + c) * p.H + h) * int64_t(K) * p.V;
#pragma unroll
    for (int m = 0; m < R; ++m)
#pragma unroll
      for (int j = 0; j < 4; ++j) hs[int64_t(rg + m * RG) * p.V + c0 + j] = S[m][j];
    __syncthreads();  // the previous chunk is done with rn, gc, vn
    row_norms(k, tok0, nt, hk, K, p.l2, p.l2_eps, rn);
    if (tid < kChunk) gc[tid] = tid < nt ? p.g_cum[(tok0 + tid) * p.gc_stride + h] : 0.f;
    for (int i0 = 0; i0 < nt; i0 += TB) {
      float part[TB][4];
#pragma unroll
      for (int t = 0; t < TB; ++t) {
#pragma unroll
        for (int j = 0; j < 4; ++j) part[t][j] = 0.f;
        if (i0 + t < nt) {
          const U* wr = w.at(tok0 + i0 + t, h);
#pragma unroll
          for (int m = 0; m < R; ++m) {
            const float wv = to_f32(wr[rg + m * RG]);
#pragma unroll
            for (int j = 0; j < 4; ++j) part[t][j] += wv * S[m][j];
          }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          part[t][j] += __shfl_xor_sync(0xffffffffu, part[t][j], 8);
          part[t][j] += __shfl_xor_sync(0xffffffffu, part[t][j], 16);
        }
      }
      if (lane < 8) {
#pragma unroll
        for (int t = 0; t < TB; ++t)
#pragma unroll
          for (int j = 0; j < 4; ++j) red[warp][t][cg * 4 + j] = part[t][j];
      }
      __syncthreads();
      for (int e = tid; e < TB * 32; e += blockDim.x) {
        const int t = e / 32, col = e % 32;
        if (i0 + t < nt) {
          const float wh = red[0][t][col] + red[1][t][col] + red[2][t][col] + red[3][t][col];
          const U val = from_f32<U>(to_f32(u.at(tok0 + i0 + t, h)[col0 + col]) - wh);
          v_new.at(tok0 + i0 + t, h)[col0 + col] = val;
          vn[i0 + t][col] = to_f32(val);  // the scan goes on from v_new as stored
        }
      }
      __syncthreads();
    }
    const float G = gc[nt - 1], eG = __expf(G);
#pragma unroll
    for (int m = 0; m < R; ++m)
#pragma unroll
      for (int j = 0; j < 4; ++j) S[m][j] *= eG;
    for (int i = 0; i < nt; ++i) {
      const float d = __expf(G - gc[i]) * rn[i];
      const T* kr = k.at(tok0 + i, hk);
      float vd[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) vd[j] = vn[i][cg * 4 + j] * d;
#pragma unroll
      for (int m = 0; m < R; ++m) {
        const float kv = to_f32(kr[rg + m * RG]);
#pragma unroll
        for (int j = 0; j < 4; ++j) S[m][j] += kv * vd[j];
      }
    }
  }
  if (p.ht) {
#pragma unroll
    for (int m = 0; m < R; ++m)
#pragma unroll
      for (int j = 0; j < 4; ++j) p.ht[soff + int64_t(rg + m * RG) * p.V + c0 + j] = S[m][j];
  }
}

// out = scale (e^gc (q h) + causal(q k^T e^(gc_i - gc_j)) v_new). Block per (slot, head,
// 32-column slice of V), 256 threads: thread (row i, 16 of the 64 P columns) for P = q k^T,
// and (row i, 8 of the 32 output columns).
template <class T, class U>
__global__ void __launch_bounds__(256)
    output_kernel(StageParams p, HeadPtr<const T> q, HeadPtr<const T> k, HeadPtr<const U> v_new, HeadPtr<T> out) {
  __shared__ float qt[kChunk][kPad], kt[kChunk][kPad];
  __shared__ float ht[kChunk][33];
  __shared__ float rq[kChunk], rk[kChunk], gc[kChunk];
  int64_t n, tok0;
  int len;
  const int64_t slot = blockIdx.x;
  if (!chunk_of_slot(p.seq, slot, n, tok0, len)) return;
  const int h = blockIdx.y, hk = h / p.group, tid = threadIdx.x;
  const int col0 = blockIdx.z * 32;
  const int i = tid >> 2, j0 = (tid & 3) * 16, o0 = (tid & 3) * 8;
  row_norms(q, tok0, len, hk, p.K, p.l2, p.l2_eps, rq);
  row_norms(k, tok0, len, hk, p.K, p.l2, p.l2_eps, rk);
  if (tid < kChunk) gc[tid] = tid < len ? p.g_cum[(tok0 + tid) * p.gc_stride + h] : 0.f;
  const float* hs = p.h + (slot * p.H + h) * int64_t(p.K) * p.V;
  float P[16] = {}, o[8] = {};
  for (int x0 = 0; x0 < p.K; x0 += kChunk) {
    __syncthreads();
    for (int e = tid; e < kChunk * kChunk; e += blockDim.x) {
      const int r = e / kChunk, c = e % kChunk;
      qt[r][c] = r < len ? to_f32(q.at(tok0 + r, hk)[x0 + c]) * rq[r] : 0.f;
      kt[r][c] = r < len ? to_f32(k.at(tok0 + r, hk)[x0 + c]) * rk[r] : 0.f;
    }
    for (int e = tid; e < kChunk * 32; e += blockDim.x) {
      const int r = e / 32, c = e % 32;
      ht[r][c] = hs[int64_t(x0 + r) * p.V + col0 + c];
    }
    __syncthreads();
    for (int c = 0; c < kChunk; ++c) {
      const float a = qt[i][c];
#pragma unroll
      for (int j = 0; j < 16; ++j) P[j] += a * kt[j0 + j][c];
#pragma unroll
      for (int j = 0; j < 8; ++j) o[j] += a * ht[c][o0 + j];
    }
  }
  __syncthreads();
  // P (decayed, causal) into qt; v_new slice into kt
#pragma unroll
  for (int j = 0; j < 16; ++j) qt[i][j0 + j] = j0 + j <= i ? P[j] * __expf(gc[i] - gc[j0 + j]) : 0.f;
  for (int e = tid; e < kChunk * 32; e += blockDim.x) {
    const int r = e / 32, c = e % 32;
    kt[r][c] = r < len ? to_f32(v_new.at(tok0 + r, h)[col0 + c]) : 0.f;
  }
  __syncthreads();
  if (i >= len) return;
  const float eg = __expf(gc[i]);
#pragma unroll
  for (int j = 0; j < 8; ++j) o[j] *= eg;
  for (int j = 0; j <= i; ++j) {
    const float a = qt[i][j];
#pragma unroll
    for (int c = 0; c < 8; ++c) o[c] += a * kt[j][o0 + c];
  }
  T* dst = out.at(tok0 + i, h) + col0 + o0;
#pragma unroll
  for (int c = 0; c < 8; ++c) dst[c] = from_f32<T>(o[c] * p.scale);
}

}  // namespace mlxn::kernels::gdn
