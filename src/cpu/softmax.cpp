// CPU softmax: one pass builds the logits and their max, a second exponentiates and sums,
// a third scales. Sums in double, so wide rows match the GPU's tree reduction.
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/common.h"
#include "ops/registry.h"
#include "ops/simd_exp.h"
#include "ops/softmax_args.h"

namespace mlxn::cpu {

using detail::SoftmaxArgs;

namespace {

template <class T, class M>
void softmax_rows(const SoftmaxArgs& a) {
  const int64_t cols = a.x.cols;
  const float scale = a.scale, cap = a.softcap;
  const bool capped = cap > 0.f;
  parallel_for(a.x.rows, 4 * cols, [&](int64_t r0, int64_t r1) {
    std::vector<float> t(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = static_cast<const T*>(a.x.data) + r * a.x.row_stride;
      const M* m = a.mask.data ? static_cast<const M*>(a.mask.data) + (r % a.mask.rows) * a.mask.row_stride : nullptr;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < cols; ++i) {
        float v = to_float(x[i]) * scale;
        if (capped) v = cap * std::tanh(v / cap);
        if (m) v += to_float(m[i]);
        t[size_t(i)] = v;
        mx = v > mx ? v : mx;
      }
      T* y = static_cast<T*>(a.out.data) + r * a.out.row_stride;
      if (mx == -std::numeric_limits<float>::infinity()) {  // fully masked row: defined as zeros
        for (int64_t i = 0; i < cols; ++i) y[i] = from_float<T>(0.f);
        continue;
      }
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < cols; ++i) {
        const float e = simd_exp(t[size_t(i)] - mx);
        t[size_t(i)] = e;
        sum += e;
      }
      const float inv = float(1.0 / sum);
      for (int64_t i = 0; i < cols; ++i) y[i] = from_float<T>(t[size_t(i)] * inv);
    }
  });
}

void softmax_cpu(Session&, const SoftmaxArgs& a) {
  dispatch_float(a.x.dtype, "softmax", [&]<class T>() {
    if (a.mask.data && a.mask.dtype == DType::f32) softmax_rows<T, float>(a);
    else softmax_rows<T, T>(a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(softmax, softmax, cpu, kFloatTypes, detail::SoftmaxArgs, softmax_cpu);

}  // namespace mlxn::cpu
