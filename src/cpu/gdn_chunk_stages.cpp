// CPU chunk stages, each on its own: the same per-chunk arithmetic as the fused gdn_chunk,
// with every intermediate read from and written to the caller's tensors.
#include <cstring>
#include <vector>

#include "cpu/gdn_chunk_math.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::GdnStageArgs;
using detail::kChunk;
using detail::RowView;

namespace {

constexpr auto C64 = static_cast<size_t>(kChunk);

inline float* row_f32(const RowView& r, int64_t token) { return static_cast<float*>(r.data) + token * r.row_stride; }

// Reads a chunk's per-token scalars of head h from a [tokens, H] view.
inline void load_scalars(const RowView& r, int64_t tok, int64_t n, int64_t h, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = gdn::row_value(r, tok + i, h);
}

// Runs f(sequence span, chunk index, first token, tokens, head) for every chunk of every head.
template <class F>
void for_each_chunk(const GdnStageArgs& a, int64_t work, F&& f) {
  const std::vector<gdn::ChunkRef> chunks = gdn::list_chunks(a.seq);
  const auto nc = int64_t(chunks.size());
  parallel_for(nc * a.H, work, [&](int64_t i0, int64_t i1) {
    const gdn::FlushDenormals ftz;
    for (int64_t it = i0; it < i1; ++it) {
      const gdn::ChunkRef ref = chunks[size_t(it / a.H)];
      const gdn::SeqSpan sp = gdn::seq_span(a.seq, a.slots, ref.n);
      const int64_t c0 = ref.c * kChunk;
      f(sp, ref.c, sp.begin + c0, std::min<int64_t>(kChunk, sp.len - c0), it % a.H);
    }
  });
}

void cumsum_cpu(Session&, const GdnStageArgs& a) {
  parallel_for(a.seq.N * a.H, a.seq.T, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t n = it / a.H, h = it % a.H;
      const gdn::SeqSpan sp = gdn::seq_span(a.seq, 0, n);
      float acc = 0;
      for (int64_t t = 0; t < sp.len; ++t) {
        if (t % kChunk == 0) acc = 0;
        acc += row_f32(a.g, sp.begin + t)[h];
        row_f32(a.g_cum, sp.begin + t)[h] = acc;
      }
    }
  });
}

template <class T>
void kkt(const GdnStageArgs& a) {
  const int64_t K = a.K, group = a.H / a.Hk;
  for_each_chunk(a, kChunk * kChunk * K, [&](const gdn::SeqSpan&, int64_t, int64_t tok, int64_t n, int64_t h) {
    thread_local std::vector<float> k, kt, A;
    k.resize(C64 * size_t(K));
    kt.resize(C64 * size_t(K));
    A.resize(C64 * C64);
    float beta[kChunk] = {}, gc[kChunk] = {};
    gdn::load_rows<T>(a.k, tok, n, h / group, K, k.data());
    load_scalars(a.beta, tok, n, h, beta);
    load_scalars(a.g_cum, tok, n, h, gc);
    gdn::transpose(n, K, k.data(), K, kt.data(), kChunk);
    gdn::chunk_kkt(n, K, k.data(), kt.data(), beta, gc, A.data());
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(a.A + ((tok + i) * a.H + h) * kChunk, A.data() + i * kChunk, sizeof(float) * C64);
  });
}

void kkt_cpu(Session&, const GdnStageArgs& a) {
  dispatch_float(a.k.dtype, "gdn_chunk_kkt", [&]<class T>() { kkt<T>(a); });
}

void solve_cpu(Session&, const GdnStageArgs& a) {
  for_each_chunk(a, kChunk * kChunk * kChunk / 6, [&](const gdn::SeqSpan&, int64_t, int64_t tok, int64_t n, int64_t h) {
    float A[kChunk * kChunk] = {}, Ai[kChunk * kChunk];
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(A + i * kChunk, a.A_in + ((tok + i) * a.H + h) * kChunk, sizeof(float) * C64);
    gdn::chunk_solve(n, A, Ai);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(a.A + ((tok + i) * a.H + h) * kChunk, Ai + i * kChunk, sizeof(float) * C64);
  });
}

template <class T, class U>
void wu(const GdnStageArgs& a) {
  const int64_t K = a.K, V = a.V, group = a.H / a.Hk;
  for_each_chunk(a, kChunk * kChunk * (K + V), [&](const gdn::SeqSpan&, int64_t, int64_t tok, int64_t n, int64_t h) {
    thread_local std::vector<float> k, v, w, u, kb, vb, Ai;
    for (auto* b : {&k, &w, &kb}) b->resize(C64 * size_t(K));
    for (auto* b : {&v, &u, &vb}) b->resize(C64 * size_t(V));
    Ai.resize(C64 * C64);
    float beta[kChunk] = {}, gc[kChunk] = {};
    gdn::load_rows<T>(a.k, tok, n, h / group, K, k.data());
    gdn::load_rows<T>(a.v, tok, n, h, V, v.data());
    load_scalars(a.beta, tok, n, h, beta);
    load_scalars(a.g_cum, tok, n, h, gc);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(Ai.data() + i * kChunk, a.A_in + ((tok + i) * a.H + h) * kChunk, sizeof(float) * C64);
    gdn::chunk_wu(n, K, V, Ai.data(), k.data(), v.data(), beta, gc, w.data(), u.data(), kb.data(), vb.data());
    gdn::store_rows<U>(a.w, tok, n, h, K, w.data());
    gdn::store_rows<U>(a.u, tok, n, h, V, u.data());
  });
}

void wu_cpu(Session&, const GdnStageArgs& a) {
  dispatch_float(a.k.dtype, "gdn_chunk_wu", [&]<class T>() {
    if (a.w.dtype == DType::f32)
      wu<T, float>(a);
    else
      wu<T, T>(a);
  });
}

template <class T, class U>
void state(const GdnStageArgs& a) {
  const int64_t K = a.K, V = a.V, H = a.H, group = a.H / a.Hk;
  parallel_for(a.seq.N * H, std::max<int64_t>(a.seq.T, 1) * K * V * 4, [&](int64_t i0, int64_t i1) {
    const gdn::FlushDenormals ftz;
    std::vector<float> hs(static_cast<size_t>(K * V)), k(C64 * size_t(K)), w(C64 * size_t(K)), kt(C64 * size_t(K));
    std::vector<float> u(C64 * size_t(V)), vn(C64 * size_t(V)), vd(C64 * size_t(V));
    float gc[kChunk] = {};
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t n = it / H, h = it % H;
      const gdn::SeqSpan sp = gdn::seq_span(a.seq, a.slots, n);
      const size_t state_off = size_t((n * H + h) * K * V);
      if (a.h0)
        std::memcpy(hs.data(), a.h0 + state_off, sizeof(float) * size_t(K * V));
      else
        std::fill(hs.begin(), hs.end(), 0.f);
      for (int64_t c = 0; c * kChunk < sp.len; ++c) {
        const int64_t tok = sp.begin + c * kChunk, nt = std::min<int64_t>(kChunk, sp.len - c * kChunk);
        std::memcpy(a.h + ((sp.slot + c) * H + h) * K * V, hs.data(), sizeof(float) * size_t(K * V));
        gdn::load_rows<T>(a.k, tok, nt, h / group, K, k.data());
        gdn::load_rows<U>(a.w, tok, nt, h, K, w.data());
        gdn::load_rows<U>(a.u, tok, nt, h, V, u.data());
        load_scalars(a.g_cum, tok, nt, h, gc);
        gdn::chunk_vnew(nt, K, V, w.data(), u.data(), hs.data(), vn.data());
        gdn::store_rows<U>(a.v_new, tok, nt, h, V, vn.data());
        // The state goes on from v_new as stored, so the stages compose exactly.
        gdn::load_rows<U>(a.v_new, tok, nt, h, V, vn.data());
        gdn::transpose(nt, K, k.data(), K, kt.data(), kChunk);
        gdn::chunk_state_update(nt, K, V, kt.data(), vn.data(), gc, hs.data(), vd.data());
      }
      if (a.ht) std::memcpy(a.ht + state_off, hs.data(), sizeof(float) * size_t(K * V));
    }
  });
}

void state_cpu(Session&, const GdnStageArgs& a) {
  dispatch_float(a.k.dtype, "gdn_chunk_state", [&]<class T>() {
    if (a.w.dtype == DType::f32)
      state<T, float>(a);
    else
      state<T, T>(a);
  });
}

template <class T, class U>
void output(const GdnStageArgs& a) {
  const int64_t K = a.K, V = a.V, H = a.H, group = a.H / a.Hk;
  for_each_chunk(a, kChunk * (K * V + kChunk * (K + V)),
                 [&](const gdn::SeqSpan& sp, int64_t c, int64_t tok, int64_t n, int64_t h) {
                   thread_local std::vector<float> q, k, kt, vn, o, P;
                   for (auto* b : {&q, &k, &kt}) b->resize(C64 * size_t(K));
                   for (auto* b : {&vn, &o}) b->resize(C64 * size_t(V));
                   P.resize(C64 * C64);
                   float gc[kChunk] = {};
                   gdn::load_rows<T>(a.q, tok, n, h / group, K, q.data());
                   gdn::load_rows<T>(a.k, tok, n, h / group, K, k.data());
                   gdn::load_rows<U>(a.v_new, tok, n, h, V, vn.data());
                   load_scalars(a.g_cum, tok, n, h, gc);
                   const float* hs = a.h + ((sp.slot + c) * H + h) * K * V;
                   gdn::transpose(n, K, k.data(), K, kt.data(), kChunk);
                   gdn::chunk_output(n, K, V, a.scale, q.data(), kt.data(), hs, vn.data(), gc, o.data(), P.data());
                   gdn::store_rows<T>(a.out, tok, n, h, V, o.data());
                 });
}

void output_cpu(Session&, const GdnStageArgs& a) {
  dispatch_float(a.q.dtype, "gdn_chunk_output", [&]<class T>() {
    if (a.v_new.dtype == DType::f32)
      output<T, float>(a);
    else
      output<T, T>(a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(gdn_chunk_cumsum, gdn, cpu, {DType::f32}, detail::GdnStageArgs, cumsum_cpu);
MLXN_REGISTER_KERNEL(gdn_chunk_kkt, gdn, cpu, kFloatTypes, detail::GdnStageArgs, kkt_cpu);
MLXN_REGISTER_KERNEL(gdn_chunk_solve, gdn, cpu, {DType::f32}, detail::GdnStageArgs, solve_cpu);
MLXN_REGISTER_KERNEL(gdn_chunk_wu, gdn, cpu, kFloatTypes, detail::GdnStageArgs, wu_cpu);
MLXN_REGISTER_KERNEL(gdn_chunk_state, gdn, cpu, kFloatTypes, detail::GdnStageArgs, state_cpu);
MLXN_REGISTER_KERNEL(gdn_chunk_output, gdn, cpu, kFloatTypes, detail::GdnStageArgs, output_cpu);

}  // namespace mlxn::cpu
