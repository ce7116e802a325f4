#pragma once
// CPU side of the elementwise engine: a functor of ops/elementwise_math.h applied over the
// row views of an ElementwiseArgs, in tiles of columns spread across cores (so one long row
// is split too). Values are loaded as float (integers as themselves), and each result is
// rounded once to the output type.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/common.h"
#include "ops/elementwise_args.h"
#include "ops/elementwise_math.h"

namespace mlxn::cpu {

template <class T>
inline auto load_value(T v) {
  if constexpr (std::is_integral_v<T>)
    return v;
  else
    return float(v);
}

template <class T, class V>
inline T store_value(V v) {
  if constexpr (std::is_integral_v<T>)
    return T(v);
  else
    return T(float(v));
}

// out = f(x), f(x, y) or f(x, row_scale[row]) over every element of the views.
template <ew::Second S, class TX, class TY, class TO, class F>
void elementwise_rows(const detail::ElementwiseArgs& a, F f) {
  constexpr int64_t kTile = 4096;
  const int64_t rows = a.out.rows, cols = a.out.cols;
  const int64_t tiles = (cols + kTile - 1) / kTile;
  parallel_for(rows * tiles, std::min(cols, kTile), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / tiles, c0 = (t % tiles) * kTile, c1 = std::min(cols, c0 + kTile);
      const TX* x = static_cast<const TX*>(a.x.data) + r * a.x.row_stride;
      TO* out = static_cast<TO*>(a.out.data) + r * a.out.row_stride;
      if constexpr (S == ew::Second::none) {
        for (int64_t c = c0; c < c1; ++c) out[c] = store_value<TO>(f(load_value(x[c])));
      } else if constexpr (S == ew::Second::tensor) {
        const TY* y = static_cast<const TY*>(a.y.data) + r * a.y.row_stride;
        for (int64_t c = c0; c < c1; ++c) out[c] = store_value<TO>(f(load_value(x[c]), load_value(y[c])));
      } else {
        const float s = a.row_scale[r];
        for (int64_t c = c0; c < c1; ++c) out[c] = store_value<TO>(f(load_value(x[c]), s));
      }
    }
  });
}

// Same-dtype float ops (x, y and out all of x's dtype).
template <ew::Second S, class F>
void elementwise_float(const detail::ElementwiseArgs& a, const char* op, F f) {
  dispatch_float(a.x.dtype, op, [&]<class T>() { elementwise_rows<S, T, T, T>(a, f); });
}

}  // namespace mlxn::cpu
