// CPU norms: one pass accumulates the row statistic, a second applies weight and epilogue.
#include <cmath>
#include <vector>

#include "cpu/common.h"
#include "ops/norm_args.h"
#include "ops/registry.h"
#include "ops/simd_exp.h"

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
  // Weight and bias converted once, not per row.
  std::vector<float> wf(w ? static_cast<size_t>(cols) : 0), bf(b ? static_cast<size_t>(cols) : 0);
  if (w) load_row(w, wf.data(), cols);
  if (b) load_row(b, bf.data(), cols);
  if (w && a.weight_offset)
    for (auto& x : wf) x += 1.f;
  parallel_for(a.x.rows, 3 * cols, [&](int64_t r0, int64_t r1) {
    std::vector<float> v(static_cast<size_t>(cols)), o(a.other.data ? static_cast<size_t>(cols) : 0),
        res(a.residual.data ? static_cast<size_t>(cols) : 0);
    float* vp = v.data();
    for (int64_t r = r0; r < r1; ++r) {
      load_row(static_cast<const T*>(a.x.data) + r * a.x.row_stride, vp, cols);
      if (a.residual.data) {
        float* rp = res.data();
        load_row(static_cast<const T*>(a.residual.data) + r * a.residual.row_stride, rp, cols);
        for (int64_t i = 0; i < cols; ++i) vp[i] += rp[i];
        if (a.sum_out.data) store_row(vp, static_cast<T*>(a.sum_out.data) + r * a.sum_out.row_stride, cols);
      }
      double mean_d = 0;
      if (a.stat == NormStat::layer) mean_d = row_sum(vp, cols) / double(cols);
      const double ss = row_sum_sq(vp, cols, float(mean_d));
      const double denom = a.stat == NormStat::l2 ? ss : ss / double(cols);
      const float inv = float(1.0 / std::sqrt(denom + double(a.eps)));
      const float mean = float(mean_d);
      for (int64_t i = 0; i < cols; ++i) vp[i] = (vp[i] - mean) * inv;
      if (w)
        for (int64_t i = 0; i < cols; ++i) vp[i] *= wf[size_t(i)];
      if (b)
        for (int64_t i = 0; i < cols; ++i) vp[i] += bf[size_t(i)];
      if (a.epilogue != NormEpilogue::none) {
        float* op = o.data();
        load_row(static_cast<const T*>(a.other.data) + r * a.other.row_stride, op, cols);
        if (a.epilogue == NormEpilogue::mul)
          for (int64_t i = 0; i < cols; ++i) vp[i] *= op[i];
        else if (a.epilogue == NormEpilogue::gate)
          for (int64_t i = 0; i < cols; ++i) vp[i] *= op[i] / (1.f + simd_exp(-op[i]));
        else
          for (int64_t i = 0; i < cols; ++i) vp[i] += op[i];
      }
      store_row(vp, static_cast<T*>(a.out.data) + r * a.out.row_stride, cols);
    }
  });
}

void norm_cpu(Session&, const NormArgs& a) {
  dispatch_float(a.x.dtype, "norm", [&]<class T>() {
    if (a.weight_dtype == DType::f32 || (!a.weight && !a.bias))
      norm_rows<T, float>(a);
    else
      norm_rows<T, T>(a);
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
