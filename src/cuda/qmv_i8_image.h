#pragma once
// Host side of the integer mat-vecs' x images (kernels/qmv_i8.cuh, qmv_i8_batch.cuh), shared
// by the MLX and the GGUF launchers: x's rows converted into pooled scratch by a small kernel
// launched with PDL (it releases the mat-vec launched next before its own wait).
#include <algorithm>

#include "cuda/common/launch.h"
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/qmv_i8_batch.cuh"
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

// The batch mat-vec's image of x's 1..8 rows (kernels/qmv_i8_batch.cuh), codes in order O:
// QmvI8Batch<O>::units(k) 16-byte units.
template <class CT, kernels::NibbleOrder O>
ScratchBuffer prepare_batch_image(Session& s, const char* op, const detail::RowView& x, int64_t k) {
  using I = kernels::QmvI8Batch<O>;
  ScratchBuffer image = s.pool().acquire(size_t(I::units(k)) * 16);
  launch_pdl(s, op, kernels::qmv_i8_batch_prepare_x<CT, O>,
             dim3(unsigned((k / 8 + I::kPrepareThreads - 1) / I::kPrepareThreads), unsigned(I::kRows)),
             dim3(I::kPrepareThreads), 0, static_cast<const CT*>(x.data), x.row_stride, x.rows, int(k),
             static_cast<uint4*>(image.data()));
  return image;
}

}  // namespace mlxn::cuda
