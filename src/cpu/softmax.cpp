// CPU softmax: whole-row passes the compiler vectorises (convert, logits, max, exp, sum,
// scale, convert back); the sum uses row_sum's independent partial sums.
#include <algorithm>
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
    std::vector<float> t(static_cast<size_t>(cols)), mrow(a.mask.data ? static_cast<size_t>(cols) : 0);
    float* tp = t.data();
    for (int64_t r = r0; r < r1; ++r) {
      load_row(static_cast<const T*>(a.x.data) + r * a.x.row_stride, tp, cols);
      if (scale != 1.f)
        for (int64_t i = 0; i < cols; ++i) tp[i] *= scale;
      if (capped)
        for (int64_t i = 0; i < cols; ++i) tp[i] = cap * std::tanh(tp[i] / cap);
      if (a.mask.data) {
        load_row(static_cast<const M*>(a.mask.data) + (r % a.mask.rows) * a.mask.row_stride, mrow.data(), cols);
        for (int64_t i = 0; i < cols; ++i) tp[i] += mrow[size_t(i)];
      }
      float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
      for (int64_t i = 0; i < cols; ++i) mx = tp[i] > mx ? tp[i] : mx;
      T* y = static_cast<T*>(a.out.data) + r * a.out.row_stride;
      if (mx == -std::numeric_limits<float>::infinity()) {  // fully masked row: defined as zeros
        std::fill(t.begin(), t.end(), 0.f);
      } else {
        for (int64_t i = 0; i < cols; ++i) tp[i] = simd_exp(tp[i] - mx);
        const float inv = float(1.0 / row_sum(tp, cols));
        for (int64_t i = 0; i < cols; ++i) tp[i] *= inv;
      }
      store_row(tp, y, cols);
    }
  });
}

void softmax_cpu(Session&, const SoftmaxArgs& a) {
  dispatch_float(a.x.dtype, "softmax", [&]<class T>() {
    if (a.mask.data && a.mask.dtype == DType::f32)
      softmax_rows<T, float>(a);
    else
      softmax_rows<T, T>(a);
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(softmax, softmax, cpu, kFloatTypes, detail::SoftmaxArgs, softmax_cpu);

}  // namespace mlxn::cpu
