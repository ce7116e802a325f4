#pragma once
// Host side of the integer mat-vecs' x image (kernels/qmv_i8.cuh), shared by the MLX and the
// GGUF launchers: x's rows converted into pooled scratch by qmv_i8_prepare_x, launched with
// PDL (it releases the mat-vec launched next before its own wait).
#include <algorithm>

#include "cuda/common/launch.h"
#include "cuda/kernels/qmv_i8.cuh"
#include "mlxn/session.h"
#include "ops/validate.h"

namespace mlxn::cuda {

// x [rows, k] (16-byte rows) into its image: QmvI8Image::units(k) 16-byte units per row.
template <class CT, kernels::NibbleOrder O, int XG>
ScratchBuffer prepare_x_image(Session& s, const char* op, const detail::RowView& x, int64_t k) {
  using C = kernels::QmvI8Config;
  const int64_t units = kernels::QmvI8Image::units(k);
  ScratchBuffer image = s.pool().acquire(size_t(x.rows * units) * 16);
  launch_pdl(
      s, op, kernels::qmv_i8_prepare_x<CT, O, XG>,
      dim3(unsigned((k / 8 + C::kPrepareThreads - 1) / C::kPrepareThreads), unsigned(std::min(x.rows, kMaxGridY))),
      dim3(C::kPrepareThreads), 0, static_cast<const CT*>(x.data), x.row_stride, x.rows, int(k),
      static_cast<uint4*>(image.data()), units);
  return image;
}

}  // namespace mlxn::cuda
