// CPU causal depthwise conv + SiLU (prefill and decode step) and the GDN gates.
#include <cmath>
#include <vector>

#include "cpu/gdn_common.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::GdnGateArgs;
using detail::SsmConvArgs;
using detail::SsmConvStepArgs;

namespace {

// The parameters (weight, bias, A_log, dt_bias) as a float vector.
std::vector<float> param_floats(const void* p, DType dt, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  if (!p) return v;
  for (int64_t i = 0; i < n; ++i) {
    switch (dt) {
      case DType::f32:
        v[size_t(i)] = static_cast<const float*>(p)[i];
        break;
      case DType::f16:
        v[size_t(i)] = float(static_cast<const Half*>(p)[i]);
        break;
      default:
        v[size_t(i)] = float(static_cast<const BFloat16*>(p)[i]);
        break;
    }
  }
  return v;
}

inline float silu(float x) { return x / (1.f + std::exp(-x)); }

template <class T>
void conv(const SsmConvArgs& a) {
  const int64_t C = a.C, W = a.W, S = W - 1;
  const std::vector<float> w = param_floats(a.weight, a.weight_dtype, C * W);
  const std::vector<float> bias = param_floats(a.bias, a.bias_dtype, C);
  constexpr int64_t kBlock = 256;
  const int64_t cblocks = (C + kBlock - 1) / kBlock;
  const auto* x = static_cast<const T*>(a.x.data);
  auto* out = static_cast<T*>(a.out.data);
  const auto* sin = static_cast<const T*>(a.state_in);
  auto* sout = static_cast<T*>(a.state_out);
  // One task = one sequence x one block of channels: the conv of its tokens, then (after
  // every read of state_in) the new state, so state_out may be state_in.
  parallel_for(a.seq.N * cblocks, std::max<int64_t>(a.seq.T, 1) * kBlock * W, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t n = it / cblocks, cb = (it % cblocks) * kBlock, ce = std::min(C, cb + kBlock);
      const gdn::SeqSpan sp = gdn::seq_span(a.seq, 0, n);
      // Input of the sequence at relative position p (p < 0: from the state).
      auto at = [&](int64_t p, int64_t c) -> float {
        if (p >= 0) return to_float(x[(sp.begin + p) * a.x.row_stride + c]);
        return sin ? to_float(sin[(n * S + S + p) * C + c]) : 0.f;
      };
      for (int64_t t = 0; t < sp.len; ++t) {
        T* o = out + (sp.begin + t) * a.out.row_stride;
        for (int64_t c = cb; c < ce; ++c) {
          float acc = bias[size_t(c)];
          for (int64_t j = 0; j < W; ++j) acc += w[size_t(c * W + j)] * at(t - S + j, c);
          o[c] = from_float<T>(a.silu ? silu(acc) : acc);
        }
      }
      if (sout) {
        // Ascending i reads position len - S + i, i.e. state index len + i >= i: never one
        // already overwritten when the state is updated in place.
        for (int64_t i = 0; i < S; ++i)
          for (int64_t c = cb; c < ce; ++c) sout[(n * S + i) * C + c] = from_float<T>(at(sp.len - S + i, c));
      }
    }
  });
}

void ssm_conv_cpu(Session&, const SsmConvArgs& a) {
  dispatch_float(a.x.dtype, "ssm_conv", [&]<class T>() { conv<T>(a); });
}

template <class T>
void conv_step(const SsmConvStepArgs& a) {
  const int64_t C = a.C, W = a.W, S = W - 1;
  const std::vector<float> w = param_floats(a.weight, a.weight_dtype, C * W);
  const std::vector<float> bias = param_floats(a.bias, a.bias_dtype, C);
  parallel_for(a.B, C * W, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* x = static_cast<const T*>(a.x.data) + b * a.x.row_stride;
      T* o = static_cast<T*>(a.out.data) + b * a.out.row_stride;
      T* st = static_cast<T*>(a.state) + b * S * C;
      for (int64_t c = 0; c < C; ++c) {
        const T xc = x[c];
        float acc = bias[size_t(c)];
        for (int64_t j = 0; j < S; ++j) acc += w[size_t(c * W + j)] * to_float(st[j * C + c]);
        acc += w[size_t(c * W + S)] * to_float(xc);
        for (int64_t j = 0; j + 1 < S; ++j) st[j * C + c] = st[(j + 1) * C + c];
        st[(S - 1) * C + c] = xc;
        o[c] = from_float<T>(a.silu ? silu(acc) : acc);
      }
    }
  });
}

void ssm_conv_step_cpu(Session&, const SsmConvStepArgs& a) {
  dispatch_float(a.x.dtype, "ssm_conv_step", [&]<class T>() { conv_step<T>(a); });
}

template <class T, class BT>
void gate(const GdnGateArgs& a) {
  const int64_t H = a.a.cols;
  const std::vector<float> A_log = param_floats(a.A_log, a.A_log_dtype, H);
  const std::vector<float> dt_bias = param_floats(a.dt_bias, a.dt_bias_dtype, H);
  std::vector<float> decay(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h) decay[size_t(h)] = -std::exp(A_log[size_t(h)]);
  parallel_for(a.a.rows, H * 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* ar = static_cast<const T*>(a.a.data) + r * a.a.row_stride;
      const T* br = static_cast<const T*>(a.b.data) + r * a.b.row_stride;
      float* gr = static_cast<float*>(a.g.data) + r * a.g.row_stride;
      BT* betar = static_cast<BT*>(a.beta.data) + r * a.beta.row_stride;
      for (int64_t h = 0; h < H; ++h) {
        const float x = to_float(ar[h]) + dt_bias[size_t(h)];
        const float sp = x > 20.f ? x : std::log1p(std::exp(x));
        gr[h] = decay[size_t(h)] * sp;
        betar[h] = from_float<BT>(1.f / (1.f + std::exp(-to_float(br[h]))));
      }
    }
  });
}

void gdn_gate_cpu(Session&, const GdnGateArgs& a) {
  dispatch_float(a.a.dtype, "gdn_gate", [&]<class T>() {
    if (a.beta.dtype == DType::f32)
      gate<T, float>(a);
    else
      gate<T, T>(a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(ssm_conv, gdn, cpu, kFloatTypes, detail::SsmConvArgs, ssm_conv_cpu);
MLXN_REGISTER_KERNEL(ssm_conv_step, gdn, cpu, kFloatTypes, detail::SsmConvStepArgs, ssm_conv_step_cpu);
MLXN_REGISTER_KERNEL(gdn_gate, gdn, cpu, kFloatTypes, detail::GdnGateArgs, gdn_gate_cpu);

}  // namespace mlxn::cpu
