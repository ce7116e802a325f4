// CPU norms: one pass accumulates the row statistic, a second applies weight and epilogue.
#include <cmath>
#include <vector>

#include "cpu/common.h"
#include "ops/norm_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::NormArgs;
using detail::NormEpilogue;
using detail::NormStat;

namespace {

template <class T, class W>
void norm_rows(const NormArgs& a) {
  const int64_t cols = a.x.cols;
  const auto* w = static_cast<const W*>(a.weight);
  const auto* b = static_cast<const W*>(a.bias);
  parallel_for(a.x.rows, 3 * cols, [&](int64_t r0, int64_t r1) {
    std::vector<float> v(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = static_cast<const T*>(a.x.data) + r * a.x.row_stride;
      for (int64_t i = 0; i < cols; ++i) v[size_t(i)] = to_float(x[i]);
      if (a.residual.data) {
        const T* res = static_cast<const T*>(a.residual.data) + r * a.residual.row_stride;
        for (int64_t i = 0; i < cols; ++i) v[size_t(i)] += to_float(res[i]);
        if (a.sum_out.data) {
          T* so = static_cast<T*>(a.sum_out.data) + r * a.sum_out.row_stride;
          for (int64_t i = 0; i < cols; ++i) so[i] = from_float<T>(v[size_t(i)]);
        }
      }
      // Sums in double: a serial f32 sum over a wide row loses digits that the GPU's
      // tree reduction keeps.
      double mean_d = 0, ss = 0;
      if (a.stat == NormStat::layer) {
        for (int64_t i = 0; i < cols; ++i) mean_d += v[size_t(i)];
        mean_d /= double(cols);
      }
      const float mean = float(mean_d);
      for (int64_t i = 0; i < cols; ++i) {
        const double d = double(v[size_t(i)]) - mean_d;
        ss += d * d;
      }
      const double denom = a.stat == NormStat::l2 ? ss : ss / double(cols);
      const float inv = float(1.0 / std::sqrt(denom + double(a.eps)));
      T* y = static_cast<T*>(a.out.data) + r * a.out.row_stride;
      const T* o = a.other.data ? static_cast<const T*>(a.other.data) + r * a.other.row_stride : nullptr;
      for (int64_t i = 0; i < cols; ++i) {
        float t = (v[size_t(i)] - mean) * inv;
        if (w) t *= a.weight_offset ? 1.f + to_float(w[i]) : to_float(w[i]);
        if (b) t += to_float(b[i]);
        switch (a.epilogue) {
          case NormEpilogue::none: break;
          case NormEpilogue::mul: t *= to_float(o[i]); break;
          case NormEpilogue::gate: { const float z = to_float(o[i]); t *= z / (1.f + std::exp(-z)); break; }
          case NormEpilogue::add: t += to_float(o[i]); break;
        }
        y[i] = from_float<T>(t);
      }
    }
  });
}

void norm_cpu(Session&, const NormArgs& a) {
  dispatch_float(a.x.dtype, "norm", [&]<class T>() {
    if (a.weight_dtype == DType::f32 || (!a.weight && !a.bias)) norm_rows<T, float>(a);
    else norm_rows<T, T>(a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(rms_norm, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(rms_norm_mul, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(rms_norm_residual, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(rms_norm_add, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(rms_norm_heads, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(l2_norm, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(ssm_norm_gate, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);
MLXN_REGISTER_KERNEL(layer_norm, norm, cpu, kFloatTypes, detail::NormArgs, norm_cpu);

}  // namespace mlxn::cpu
