#pragma once
// Host side of the CUDA elementwise engine: ElementwiseArgs -> kernel parameters, the
// vector or scalar path, and the launch shape. Every op of the activation and elementwise
// families launches through launch_elementwise with its functor.
#include <algorithm>
#include <cstdint>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/elementwise.cuh"
#include "ops/elementwise_args.h"

namespace mlxn::cuda {

// Row starts of a view are 16-byte aligned (a single row needs no stride condition).
template <class T>
bool rows_aligned16(const T* data, int64_t row_stride, int64_t rows) {
  return aligned16(data) && (rows <= 1 || (row_stride * int64_t(sizeof(T))) % 16 == 0);
}

// S: how the second operand is read. TA, TB, TO: device element types of x, y (TA when
// there is no second tensor) and out.
template <ew::Second S, class TA, class TB, class TO, class F>
void launch_elementwise(Session& s, const char* op, const detail::ElementwiseArgs& a, F f) {
  namespace k = kernels;
  constexpr bool kTwo = S == ew::Second::tensor;
  k::EwParams<TA, TB, TO> p{};
  p.a = static_cast<const TA*>(a.x.data);
  p.b = kTwo ? static_cast<const TB*>(a.y.data) : nullptr;
  p.row_scale = a.row_scale;
  p.out = static_cast<TO*>(a.out.data);
  p.a_stride = a.x.row_stride;
  p.b_stride = kTwo ? a.y.row_stride : 0;
  p.out_stride = a.out.row_stride;
  p.rows = a.out.rows;
  p.cols = a.out.cols;
  // Rows laid end to end are one long row: narrow rows then fill whole warps, and widths
  // that are not a multiple of the pack still take the vector path.
  if (p.rows > 1 && S != ew::Second::row_scalar && p.a_stride == p.cols && p.out_stride == p.cols &&
      (!kTwo || p.b_stride == p.cols)) {
    p.cols *= p.rows;
    p.rows = 1;
  }

  constexpr size_t kMinSize = std::min({sizeof(TA), kTwo ? sizeof(TB) : sizeof(TA), sizeof(TO)});
  constexpr int N = int(16 / kMinSize);
  const bool vec = rows_aligned16(p.a, p.a_stride, p.rows) && rows_aligned16(p.out, p.out_stride, p.rows) &&
                   (!kTwo || rows_aligned16(p.b, p.b_stride, p.rows));

  auto launch = [&]<int NN, int VPT>() {
    // Threads one row needs (its packs, VPT each); small calls (decode) take 64-thread
    // blocks so that their few packs spread over more SMs.
    const int64_t units = std::max<int64_t>((p.cols / NN + VPT - 1) / VPT, 1);
    const int threads = units * p.rows < 32768 ? 64 : 256;
    int bx = 32;
    while (bx < threads && bx < units) bx *= 2;
    const int by = threads / bx;
    const int64_t gx = std::min<int64_t>((units + bx - 1) / bx, int64_t(1) << 24);
    const int64_t gy = std::min<int64_t>((p.rows + by - 1) / by, 65535);
    const dim3 grid{unsigned(gx), unsigned(gy)}, block{unsigned(bx), unsigned(by)};
    k::elementwise_kernel<S, NN, VPT><<<grid, block, 0, stream_of(s)>>>(f, p);
    check_launch(s, op);
  };
  if (vec)
    launch.template operator()<N, 2>();
  else
    launch.template operator()<1, 4>();
}

// Same-dtype float ops: x, y and out all of x's dtype.
template <ew::Second S, class F>
void elementwise_float(Session& s, const char* op, const detail::ElementwiseArgs& a, F f) {
  dispatch_float(a.x.dtype, op, [&]<class T>() { launch_elementwise<S, T, T, T>(s, op, a, f); });
}

}  // namespace mlxn::cuda
