#pragma once
// The per-chunk arithmetic of the chunked delta rule on float buffers, one chunk of one
// value head at a time (n <= 64 tokens). Shared by the fused CPU gdn_chunk and the stage ops.
// Matrices are row-major; "[n, 64]" chunk matrices have a leading dim of 64.
#include <cmath>
#include <vector>

#include "cpu/gdn_common.h"

namespace mlxn::cpu::gdn {

// gc = inclusive cumsum of g over the chunk.
[[gnu::noinline]] inline void chunk_cumsum(int64_t n, const float* g, float* gc) {
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) gc[i] = acc += g[i];
}

// A[i, j] = beta_i (k_i . k_j) exp(gc_i - gc_j) for j < i, 0 elsewhere (64 columns).
// kt = k^T [K, 64] (transpose()).
[[gnu::noinline]] inline void chunk_kkt(int64_t n, int64_t K, const float* k, const float* kt, const float* beta,
                                        const float* gc, float* A) {
  gemm(n, n, K, k, K, kt, kChunk, A, kChunk, false, false, true);
  for (int64_t i = 0; i < n; ++i) {
    float* row = A + i * kChunk;
    const float gi = gc[i], bi = beta[i];
    // exp of the upper triangle's (positive) differences is clamped finite, then masked
    for (int64_t j = 0; j < kChunk; ++j) row[j] = j < i ? row[j] * bi * fast_exp(gi - gc[j]) : 0.f;
  }
}

// Ai = (I + A)^-1 for strictly lower-triangular A, by forward substitution over rows:
// Ai[i, :] = e_i - sum_{j < i} A[i, j] Ai[j, :].
[[gnu::noinline]] inline void chunk_solve(int64_t n, const float* A, float* Ai) {
  for (int64_t i = 0; i < n; ++i) {
    float* r = Ai + i * kChunk;
    for (int64_t c = 0; c < kChunk; ++c) r[c] = c == i ? 1.f : 0.f;
    for (int64_t j = 0; j < i; ++j) {
      const float a = A[i * kChunk + j];
      const float* rj = Ai + j * kChunk;
      for (int64_t c = 0; c <= j; ++c) r[c] -= a * rj[c];
    }
  }
}

// w = Ai (beta exp(gc) k): [n, K];  u = Ai (beta v): [n, V]. kb, vb: scratch [n, K], [n, V].
[[gnu::noinline]] inline void chunk_wu(int64_t n, int64_t K, int64_t V, const float* Ai, const float* k, const float* v,
                                       const float* beta, const float* gc, float* w, float* u, float* kb, float* vb) {
  for (int64_t i = 0; i < n; ++i) {
    const float sk = beta[i] * fast_exp(gc[i]);
    for (int64_t c = 0; c < K; ++c) kb[i * K + c] = k[i * K + c] * sk;
    for (int64_t c = 0; c < V; ++c) vb[i * V + c] = v[i * V + c] * beta[i];
  }
  gemm(n, K, n, Ai, kChunk, kb, K, w, K, false, true);
  gemm(n, V, n, Ai, kChunk, vb, V, u, V, false, true);
}

// v_new = u - w h: [n, V].
[[gnu::noinline]] inline void chunk_vnew(int64_t n, int64_t K, int64_t V, const float* w, const float* u,
                                         const float* h, float* v_new) {
  gemm_nn(n, V, K, w, K, h, V, v_new, V, false);
  for (int64_t i = 0; i < n * V; ++i) v_new[i] = u[i] - v_new[i];
}

// h := exp(G) h + k^T (v_new * exp(G - gc)), G = gc[n - 1]. kt = k^T [K, 64]; vd: scratch [n, V].
[[gnu::noinline]] inline void chunk_state_update(int64_t n, int64_t K, int64_t V, const float* kt, const float* v_new,
                                                 const float* gc, float* h, float* vd) {
  const float G = gc[n - 1], eG = std::exp(G);
  for (int64_t i = 0; i < n; ++i) {
    const float d = std::exp(G - gc[i]);
    for (int64_t c = 0; c < V; ++c) vd[i * V + c] = v_new[i * V + c] * d;
  }
  for (int64_t i = 0; i < K * V; ++i) h[i] *= eG;
  gemm_nn(K, V, n, kt, kChunk, vd, V, h, V, true);
}

// o = scale (exp(gc) (q h) + causal(q k^T exp(gc_i - gc_j)) v_new), diagonal included.
// kt = k^T [K, 64]; P: scratch [n, 64].
[[gnu::noinline]] inline void chunk_output(int64_t n, int64_t K, int64_t V, float scale, const float* q,
                                           const float* kt, const float* h, const float* v_new, const float* gc,
                                           float* o, float* P) {
  gemm_nn(n, V, K, q, K, h, V, o, V, false);
  for (int64_t i = 0; i < n; ++i) {
    const float e = fast_exp(gc[i]);
    for (int64_t c = 0; c < V; ++c) o[i * V + c] *= e;
  }
  gemm(n, n, K, q, K, kt, kChunk, P, kChunk, false, false, true);
  for (int64_t i = 0; i < n; ++i) {
    const float gi = gc[i];
    for (int64_t j = 0; j < kChunk; ++j) P[i * kChunk + j] = j <= i ? P[i * kChunk + j] * fast_exp(gi - gc[j]) : 0.f;
  }
  gemm(n, V, n, P, kChunk, v_new, V, o, V, true, true);
  for (int64_t i = 0; i < n * V; ++i) o[i] *= scale;
}

// Loads n head vectors of `dim` from tokens begin.. of head `head` into dst [n, dim].
template <class T>
inline void load_rows(const HeadView& hv, int64_t begin, int64_t n, int64_t head, int64_t dim, float* dst) {
  for (int64_t i = 0; i < n; ++i) load_row(head_ptr<T>(hv, begin + i, head), dim, dst + i * dim);
}
template <class T>
inline void store_rows(const HeadView& hv, int64_t begin, int64_t n, int64_t head, int64_t dim, const float* src) {
  for (int64_t i = 0; i < n; ++i) store_row(src + i * dim, dim, head_ptr_mut<T>(hv, begin + i, head));
}

// The chunks of every sequence as (sequence, chunk) pairs, for loops parallel over chunks.
struct ChunkRef {
  int64_t n, c;
};
inline std::vector<ChunkRef> list_chunks(const SeqLayout& l) {
  std::vector<ChunkRef> v;
  for (int64_t n = 0; n < l.N; ++n) {
    const SeqSpan sp = seq_span(l, 0, n);
    for (int64_t c = 0; c * kChunk < sp.len; ++c) v.push_back({n, c});
  }
  return v;
}

}  // namespace mlxn::cpu::gdn
