// CPU MoE routing, weighted sum, gated activation and token grouping.
#include <cmath>
#include <vector>

#include "cpu/common.h"
#include "ops/elementwise_math.h"
#include "ops/moe_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::MoeGluArgs;
using detail::MoeGroupArgs;
using detail::MoeRouteArgs;
using detail::MoeSumArgs;

namespace {

template <class T>
void route_rows(const MoeRouteArgs& a) {
  const int64_t e_count = a.logits.cols, k = a.top_k;
  parallel_for(a.logits.rows, e_count * (k + 4), [&](int64_t r0, int64_t r1) {
    std::vector<float> logit(static_cast<size_t>(e_count)), score(static_cast<size_t>(e_count)),
        key(static_cast<size_t>(e_count));
    std::vector<char> taken(static_cast<size_t>(e_count));
    for (int64_t r = r0; r < r1; ++r) {
      load_row(static_cast<const T*>(a.logits.data) + r * a.logits.row_stride, logit.data(), e_count);
      if (a.sigmoid) {
        for (int64_t e = 0; e < e_count; ++e) score[size_t(e)] = 1.f / (1.f + std::exp(-logit[size_t(e)]));
      } else {
        float mx = -INFINITY;
        for (float v : logit) mx = std::fmax(mx, v);
        double z = 0;
        for (int64_t e = 0; e < e_count; ++e) {
          score[size_t(e)] = std::exp(logit[size_t(e)] - mx);
          z += score[size_t(e)];
        }
        const float inv = float(1.0 / z);
        for (auto& v : score) v *= inv;
      }
      // Selection key: the logit (monotonic in the score, and exact) unless a bias shifts
      // the scores; NaN never wins.
      for (int64_t e = 0; e < e_count; ++e) {
        float v = a.score_bias ? score[size_t(e)] + a.score_bias[e] : logit[size_t(e)];
        key[size_t(e)] = std::isnan(v) ? -INFINITY : v;
        taken[size_t(e)] = 0;
      }
      auto* ids = static_cast<uint32_t*>(a.ids) + r * k;
      float* w = a.weights + r * k;
      float sum = 0.f;
      for (int64_t j = 0; j < k; ++j) {
        int64_t best = -1;
        for (int64_t e = 0; e < e_count; ++e)
          if (!taken[size_t(e)] && (best < 0 || key[size_t(e)] > key[size_t(best)])) best = e;
        taken[size_t(best)] = 1;
        ids[j] = uint32_t(best);
        w[j] = score[size_t(best)];
        sum += w[j];
      }
      const float norm = a.renormalize ? 1.f / sum : 1.f;
      for (int64_t j = 0; j < k; ++j) {
        w[j] *= norm;
        if (a.expert_scale) w[j] *= a.expert_scale[ids[j]];
      }
    }
  });
}

void moe_route_cpu(Session&, const MoeRouteArgs& a) {
  dispatch_float(a.logits.dtype, "moe_route", [&]<class T>() { route_rows<T>(a); });
}

template <class T>
void weighted_sum_rows(const MoeSumArgs& a) {
  const int64_t d = a.dim;
  parallel_for(a.tokens, d * (a.top_k + 2), [&](int64_t t0, int64_t t1) {
    std::vector<float> acc(static_cast<size_t>(d)), tmp(static_cast<size_t>(d));
    for (int64_t t = t0; t < t1; ++t) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < a.top_k; ++j) {
        load_row(static_cast<const T*>(a.y.data) + (t * a.top_k + j) * a.y.row_stride, tmp.data(), d);
        const float w = a.weights[t * a.top_k + j];
        for (int64_t i = 0; i < d; ++i) acc[size_t(i)] += w * tmp[size_t(i)];
      }
      if (a.shared.data) {
        float g = 1.f;
        if (a.gate) {
          const float logit = a.gate_dtype == DType::f32 ? static_cast<const float*>(a.gate)[t * a.gate_stride]
                                                         : to_float(static_cast<const T*>(a.gate)[t * a.gate_stride]);
          g = 1.f / (1.f + std::exp(-logit));
        }
        load_row(static_cast<const T*>(a.shared.data) + t * a.shared.row_stride, tmp.data(), d);
        for (int64_t i = 0; i < d; ++i) acc[size_t(i)] += g * tmp[size_t(i)];
      }
      if (a.residual.data) {
        load_row(static_cast<const T*>(a.residual.data) + t * a.residual.row_stride, tmp.data(), d);
        for (int64_t i = 0; i < d; ++i) acc[size_t(i)] += tmp[size_t(i)];
      }
      store_row(acc.data(), static_cast<T*>(a.out.data) + t * a.out.row_stride, d);
    }
  });
}

void moe_weighted_sum_cpu(Session&, const MoeSumArgs& a) {
  dispatch_float(a.dtype, "moe_weighted_sum", [&]<class T>() { weighted_sum_rows<T>(a); });
}

template <class T>
void glu_rows(const MoeGluArgs& a) {
  const int64_t n = a.out.cols;
  parallel_for(a.out.rows, 3 * n, [&](int64_t r0, int64_t r1) {
    std::vector<float> gu(static_cast<size_t>(2 * n)), o(static_cast<size_t>(n));
    for (int64_t r = r0; r < r1; ++r) {
      load_row(static_cast<const T*>(a.gate_up.data) + r * a.gate_up.row_stride, gu.data(), 2 * n);
      for (int64_t i = 0; i < n; ++i) {
        const float g = gu[size_t(i)];
        const float act = a.gelu ? ew::GluAct<true>{}(g) : ew::GluAct<false>{}(g);
        o[size_t(i)] = act * gu[size_t(n + i)];
      }
      store_row(o.data(), static_cast<T*>(a.out.data) + r * a.out.row_stride, n);
    }
  });
}

void moe_glu_cpu(Session&, const MoeGluArgs& a) {
  dispatch_float(a.out.dtype, "moe_glu", [&]<class T>() { glu_rows<T>(a); });
}

// Stable counting sort of pair indices by expert; invalid ids form a last bucket.
void moe_group_tokens_cpu(Session&, const MoeGroupArgs& a) {
  const auto* ids = static_cast<const uint32_t*>(a.ids);
  auto* rows = static_cast<uint32_t*>(a.sorted_rows);
  auto* offsets = static_cast<uint32_t*>(a.offsets);
  const int64_t e_count = a.experts;
  std::vector<int64_t> start(static_cast<size_t>(e_count + 2), 0);
  auto bucket = [&](int64_t p) { return ids[p] < uint64_t(e_count) ? int64_t(ids[p]) : e_count; };
  for (int64_t p = 0; p < a.pairs; ++p) ++start[size_t(bucket(p) + 1)];
  for (int64_t e = 0; e <= e_count; ++e) start[size_t(e + 1)] += start[size_t(e)];
  for (int64_t e = 0; e <= e_count; ++e) offsets[e] = uint32_t(start[size_t(e)]);
  for (int64_t p = 0; p < a.pairs; ++p) rows[start[size_t(bucket(p))]++] = uint32_t(p);
}

}  // namespace

MLXN_REGISTER_KERNEL(moe_route, moe, cpu, kFloatTypes, detail::MoeRouteArgs, moe_route_cpu);
MLXN_REGISTER_KERNEL(moe_weighted_sum, moe, cpu, kFloatTypes, detail::MoeSumArgs, moe_weighted_sum_cpu);
MLXN_REGISTER_KERNEL(moe_glu, moe, cpu, kFloatTypes, detail::MoeGluArgs, moe_glu_cpu);
MLXN_REGISTER_KERNEL(moe_group_tokens, moe, cpu, (DTypeSet{DType::i32, DType::u32}), detail::MoeGroupArgs,
                     moe_group_tokens_cpu);

}  // namespace mlxn::cpu
