// CPU token-sequential delta rule. One (sequence, value head) per task; per token two
// passes over the [K, V] state: the first reads S^T k and S^T q, the second applies
//   S' = e S + k delta^T   with   delta = beta (v - e S^T k),   o = e S^T q + (k . q) delta.
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/gdn_common.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::GdnArgs;

namespace {

template <class T>
void recurrent(const GdnArgs& a) {
  const int64_t K = a.K, V = a.V, H = a.H, group = a.H / a.Hk;
  parallel_for(a.seq.N * H, std::max<int64_t>(a.seq.T, 1) * K * V * 6, [&](int64_t i0, int64_t i1) {
    const gdn::FlushDenormals ftz;
    std::vector<float> S(static_cast<size_t>(K * V)), q(static_cast<size_t>(K)), k(static_cast<size_t>(K));
    std::vector<float> v(static_cast<size_t>(V)), ks(static_cast<size_t>(V)), qs(static_cast<size_t>(V));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / H, h = item % H, hk = h / group;
      const gdn::SeqSpan sp = gdn::seq_span(a.seq, 0, n);
      const size_t state_off = size_t((n * H + h) * K * V);
      if (a.h0)
        std::memcpy(S.data(), a.h0 + state_off, sizeof(float) * size_t(K * V));
      else
        std::fill(S.begin(), S.end(), 0.f);
      for (int64_t t = 0; t < sp.len; ++t) {
        const int64_t tok = sp.begin + t;
        gdn::load_row(gdn::head_ptr<T>(a.q, tok, hk), K, q.data());
        gdn::load_row(gdn::head_ptr<T>(a.k, tok, hk), K, k.data());
        gdn::load_row(gdn::head_ptr<T>(a.v, tok, h), V, v.data());
        if (a.l2_norm_qk) {
          gdn::l2_normalize(q.data(), K, a.l2_eps);
          gdn::l2_normalize(k.data(), K, a.l2_eps);
        }
        float kq = 0;
        for (int64_t i = 0; i < K; ++i) {
          q[size_t(i)] *= a.scale;
          kq += k[size_t(i)] * q[size_t(i)];
        }
        const float e = std::exp(gdn::row_value(a.g, tok, h));
        const float b = gdn::row_value(a.beta, tok, h);
        std::fill(ks.begin(), ks.end(), 0.f);
        std::fill(qs.begin(), qs.end(), 0.f);
        for (int64_t i = 0; i < K; ++i) {
          const float* row = S.data() + i * V;
          const float ki = k[size_t(i)], qi = q[size_t(i)];
          for (int64_t j = 0; j < V; ++j) {
            ks[size_t(j)] += row[j] * ki;
            qs[size_t(j)] += row[j] * qi;
          }
        }
        // ks := delta, qs := o
        for (int64_t j = 0; j < V; ++j) {
          const float d = b * (v[size_t(j)] - e * ks[size_t(j)]);
          ks[size_t(j)] = d;
          qs[size_t(j)] = e * qs[size_t(j)] + kq * d;
        }
        for (int64_t i = 0; i < K; ++i) {
          float* row = S.data() + i * V;
          const float ki = k[size_t(i)];
          for (int64_t j = 0; j < V; ++j) row[j] = e * row[j] + ki * ks[size_t(j)];
        }
        gdn::store_row(qs.data(), V, gdn::head_ptr_mut<T>(a.out, tok, h));
      }
      if (a.ht) std::memcpy(a.ht + state_off, S.data(), sizeof(float) * size_t(K * V));
    }
  });
}

void gdn_recurrent_cpu(Session&, const GdnArgs& a) {
  dispatch_float(a.q.dtype, "gdn_recurrent", [&]<class T>() { recurrent<T>(a); });
}

}  // namespace

MLXN_REGISTER_KERNEL(gdn_recurrent, gdn, cpu, kFloatTypes, detail::GdnArgs, gdn_recurrent_cpu);

}  // namespace mlxn::cpu
