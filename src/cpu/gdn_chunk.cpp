// CPU chunked delta rule, fused: one (sequence, value head) per task, its chunks in order,
// every stage on buffers of one chunk (a few tens of KB, cache resident).
#include <cstring>
#include <vector>

#include "cpu/gdn_chunk_math.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::GdnArgs;
using detail::kChunk;

namespace {

struct ChunkScratch {
  std::vector<float> q, k, v, w, u, vn, o, kb, vb, A, Ai, P, kt, g, gc, beta, h;
  ChunkScratch(int64_t K, int64_t V) {
    const auto C = static_cast<size_t>(kChunk);
    for (auto* b : {&q, &k, &w, &kb}) b->resize(C * size_t(K));
    for (auto* b : {&v, &u, &vn, &o, &vb}) b->resize(C * size_t(V));
    for (auto* b : {&A, &Ai, &P}) b->resize(C * C);
    kt.resize(size_t(K) * C);
    for (auto* b : {&g, &gc, &beta}) b->resize(C);
    h.resize(size_t(K * V));
  }
};

template <class T>
void chunked(const GdnArgs& a) {
  const int64_t K = a.K, V = a.V, H = a.H, group = a.H / a.Hk;
  parallel_for(a.seq.N * H, std::max<int64_t>(a.seq.T, 1) * K * V * 8, [&](int64_t i0, int64_t i1) {
    const gdn::FlushDenormals ftz;
    ChunkScratch sc(K, V);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / H, h = item % H, hk = h / group;
      const gdn::SeqSpan sp = gdn::seq_span(a.seq, 0, n);
      const size_t state_off = size_t((n * H + h) * K * V);
      if (a.h0)
        std::memcpy(sc.h.data(), a.h0 + state_off, sizeof(float) * size_t(K * V));
      else
        std::fill(sc.h.begin(), sc.h.end(), 0.f);
      for (int64_t c0 = 0; c0 < sp.len; c0 += kChunk) {
        const int64_t nt = std::min<int64_t>(kChunk, sp.len - c0), tok = sp.begin + c0;
        gdn::load_rows<T>(a.q, tok, nt, hk, K, sc.q.data());
        gdn::load_rows<T>(a.k, tok, nt, hk, K, sc.k.data());
        gdn::load_rows<T>(a.v, tok, nt, h, V, sc.v.data());
        if (a.l2_norm_qk)
          for (int64_t i = 0; i < nt; ++i) {
            gdn::l2_normalize(sc.q.data() + i * K, K, a.l2_eps);
            gdn::l2_normalize(sc.k.data() + i * K, K, a.l2_eps);
          }
        for (int64_t i = 0; i < nt; ++i) {
          sc.g[size_t(i)] = gdn::row_value(a.g, tok + i, h);
          sc.beta[size_t(i)] = gdn::row_value(a.beta, tok + i, h);
        }
        gdn::chunk_cumsum(nt, sc.g.data(), sc.gc.data());
        gdn::transpose(nt, K, sc.k.data(), K, sc.kt.data(), kChunk);
        gdn::chunk_kkt(nt, K, sc.k.data(), sc.kt.data(), sc.beta.data(), sc.gc.data(), sc.A.data());
        gdn::chunk_solve(nt, sc.A.data(), sc.Ai.data());
        gdn::chunk_wu(nt, K, V, sc.Ai.data(), sc.k.data(), sc.v.data(), sc.beta.data(), sc.gc.data(), sc.w.data(),
                      sc.u.data(), sc.kb.data(), sc.vb.data());
        gdn::chunk_vnew(nt, K, V, sc.w.data(), sc.u.data(), sc.h.data(), sc.vn.data());
        gdn::chunk_output(nt, K, V, a.scale, sc.q.data(), sc.kt.data(), sc.h.data(), sc.vn.data(), sc.gc.data(),
                          sc.o.data(), sc.P.data());
        gdn::store_rows<T>(a.out, tok, nt, h, V, sc.o.data());
        gdn::chunk_state_update(nt, K, V, sc.kt.data(), sc.vn.data(), sc.gc.data(), sc.h.data(), sc.vb.data());
      }
      if (a.ht) std::memcpy(a.ht + state_off, sc.h.data(), sizeof(float) * size_t(K * V));
    }
  });
}

void gdn_chunk_cpu(Session&, const GdnArgs& a) {
  dispatch_float(a.q.dtype, "gdn_chunk", [&]<class T>() { chunked<T>(a); });
}

}  // namespace

MLXN_REGISTER_KERNEL(gdn_chunk, gdn, cpu, kFloatTypes, detail::GdnArgs, gdn_chunk_cpu);

}  // namespace mlxn::cpu
