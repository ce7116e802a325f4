#pragma once
// Float64 references of the gdn family, written from the definitions in ops.md §4: the
// delta rule token by token (never chunked), the causal conv tap by tap, the gates.
// Arrays are row-major and contiguous: q, k [tokens, Hk, K]; v [tokens, H, V];
// g, beta [tokens, H]; states [N, H, K, V].
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "support/support.h"

namespace mlxn::test::gdn_ref {

struct Dims {
  int64_t B = 1, T = 1, Hk = 1, H = 1, K = 64, V = 64;
};

// (first token, length) of every sequence: B rows of T tokens, or the cu offsets.
inline std::vector<std::pair<int64_t, int64_t>> spans(const Dims& d, const std::vector<int32_t>& cu) {
  std::vector<std::pair<int64_t, int64_t>> s;
  if (cu.empty()) {
    for (int64_t b = 0; b < d.B; ++b) s.push_back({b * d.T, d.T});
  } else {
    for (size_t i = 0; i + 1 < cu.size(); ++i) s.push_back({cu[i], cu[i + 1] - cu[i]});
  }
  return s;
}

struct Result {
  std::vector<double> o;        // [tokens, H, V]
  std::vector<double> ht;       // [N, H, K, V]
  std::vector<double> h_chunk;  // [slots, H, K, V]: the state before each chunk (per chunk slot)
};

inline void normalize(std::vector<double>& x, double eps) {
  double ss = 0;
  for (double t : x) ss += t * t;
  const double inv = 1.0 / std::sqrt(ss + eps);
  for (double& t : x) t *= inv;
}

// The recurrence: S = S e^g; delta = beta (v - S^T k); S += k delta^T; o = S^T (scale q).
// slot_of(n, c) gives the chunk slot where the state before chunk c of sequence n goes.
template <class SlotOf>
Result delta_rule(const Dims& d, const std::vector<int32_t>& cu, const std::vector<double>& q,
                  const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& g,
                  const std::vector<double>& beta, double scale, bool l2, double eps, const std::vector<double>* h0,
                  int64_t slots_total, SlotOf slot_of) {
  const auto sp = spans(d, cu);
  const int64_t N = int64_t(sp.size()), K = d.K, V = d.V, H = d.H, group = d.H / d.Hk;
  Result r;
  r.o.assign(static_cast<size_t>(d.B * d.T * H * V), 0.0);
  r.ht.assign(static_cast<size_t>(N * H * K * V), 0.0);
  r.h_chunk.assign(static_cast<size_t>(slots_total * H * K * V), 0.0);
  std::vector<double> S(static_cast<size_t>(K * V)), qv(static_cast<size_t>(K)), kv(static_cast<size_t>(K));
  std::vector<double> ks(static_cast<size_t>(V));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t hk = h / group;
      const size_t soff = size_t((n * H + h) * K * V);
      for (int64_t i = 0; i < K * V; ++i) S[size_t(i)] = h0 ? (*h0)[soff + size_t(i)] : 0.0;
      for (int64_t t = 0; t < sp[size_t(n)].second; ++t) {
        const int64_t tok = sp[size_t(n)].first + t;
        const int64_t slot = t % 64 == 0 ? slot_of(n, t / 64) : -1;
        if (slot >= 0) {
          for (int64_t i = 0; i < K * V; ++i) r.h_chunk[size_t((slot * H + h) * K * V + i)] = S[size_t(i)];
        }
        for (int64_t i = 0; i < K; ++i) {
          qv[size_t(i)] = q[size_t((tok * d.Hk + hk) * K + i)];
          kv[size_t(i)] = k[size_t((tok * d.Hk + hk) * K + i)];
        }
        if (l2) {
          normalize(qv, eps);
          normalize(kv, eps);
        }
        const double e = std::exp(g[size_t(tok * H + h)]), b = beta[size_t(tok * H + h)];
        for (double& s : S) s *= e;
        for (int64_t j = 0; j < V; ++j) {
          double acc = 0;
          for (int64_t i = 0; i < K; ++i) acc += S[size_t(i * V + j)] * kv[size_t(i)];
          ks[size_t(j)] = b * (v[size_t((tok * H + h) * V + j)] - acc);
        }
        for (int64_t i = 0; i < K; ++i)
          for (int64_t j = 0; j < V; ++j) S[size_t(i * V + j)] += kv[size_t(i)] * ks[size_t(j)];
        for (int64_t j = 0; j < V; ++j) {
          double acc = 0;
          for (int64_t i = 0; i < K; ++i) acc += S[size_t(i * V + j)] * qv[size_t(i)] * scale;
          r.o[size_t((tok * H + h) * V + j)] = acc;
        }
      }
      for (int64_t i = 0; i < K * V; ++i) r.ht[soff + size_t(i)] = S[size_t(i)];
    }
  return r;
}

inline Result delta_rule(const Dims& d, const std::vector<int32_t>& cu, const std::vector<double>& q,
                         const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& g,
                         const std::vector<double>& beta, double scale, bool l2, double eps = 1e-6,
                         const std::vector<double>* h0 = nullptr) {
  return delta_rule(d, cu, q, k, v, g, beta, scale, l2, eps, h0, 0, [](int64_t, int64_t) { return int64_t(-1); });
}

// The conv: out = act(bias + sum_j w[c, j] x[t - (W-1) + j, c]); state [N, W-1, C].
struct ConvResult {
  std::vector<double> out, state;
};
inline ConvResult conv(const std::vector<double>& x, int64_t B, int64_t T, int64_t C, const std::vector<double>& w,
                       int64_t W, const std::vector<double>* bias, const std::vector<double>* state_in,
                       const std::vector<int32_t>& cu, bool silu) {
  Dims d;
  d.B = B;
  d.T = T;
  const auto sp = spans(d, cu);
  const int64_t S = W - 1, N = int64_t(sp.size());
  ConvResult r;
  r.out.assign(static_cast<size_t>(B * T * C), 0.0);
  r.state.assign(static_cast<size_t>(N * S * C), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const auto [begin, len] = sp[size_t(n)];
    auto at = [&](int64_t p, int64_t c) {
      if (p >= 0) return x[size_t((begin + p) * C + c)];
      return state_in ? (*state_in)[size_t((n * S + S + p) * C + c)] : 0.0;
    };
    for (int64_t t = 0; t < len; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double acc = bias ? (*bias)[size_t(c)] : 0.0;
        for (int64_t j = 0; j < W; ++j) acc += w[size_t(c * W + j)] * at(t - S + j, c);
        r.out[size_t((begin + t) * C + c)] = silu ? acc / (1.0 + std::exp(-acc)) : acc;
      }
    for (int64_t i = 0; i < S; ++i)
      for (int64_t c = 0; c < C; ++c) r.state[size_t((n * S + i) * C + c)] = at(len - S + i, c);
  }
  return r;
}

}  // namespace mlxn::test::gdn_ref
