#pragma once
// CPU helpers of the gdn family: sequence spans, head-vector access, and the small dense
// products the chunked form is made of (register-blocked so the compiler keeps the
// accumulators in vector registers).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/common.h"
#include "ops/gdn_args.h"

namespace mlxn::cpu::gdn {

using detail::HeadView;
using detail::RowView;
using detail::SeqLayout;
using detail::kChunk;

// Sequence n: its first token in the flattened [B * T] token axis, its length, and the
// flattened index of its first chunk slot (slots per batch row = `slots`).
struct SeqSpan {
  int64_t begin = 0, len = 0, slot = 0;
};
inline SeqSpan seq_span(const SeqLayout& l, int64_t slots, int64_t n) {
  if (!l.cu) return {n * l.T, l.T, n * slots};
  const int64_t b = std::clamp<int64_t>(l.cu[n], 0, l.T);
  const int64_t e = std::clamp<int64_t>(l.cu[n + 1], b, l.T);
  return {b, e - b, n + b / kChunk};
}

template <class T>
inline const T* head_ptr(const HeadView& v, int64_t token, int64_t head) {
  return static_cast<const T*>(v.data) + token * v.token_stride + head * v.head_stride;
}
template <class T>
inline T* head_ptr_mut(const HeadView& v, int64_t token, int64_t head) {
  return static_cast<T*>(v.data) + token * v.token_stride + head * v.head_stride;
}

template <class T>
inline void load_row(const T* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}
template <class T>
inline void store_row(const float* src, int64_t n, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = from_float<T>(src[i]);
}

// x *= 1 / sqrt(sum(x^2) + eps), the sum in double as the norm family does.
inline void l2_normalize(float* x, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(ss + double(eps)));
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// Scalar at (token, head) of a [tokens, H] row view as float.
inline float row_value(const RowView& r, int64_t token, int64_t head) {
  const int64_t i = token * r.row_stride + head;
  switch (r.dtype) {
    case DType::f32: return static_cast<const float*>(r.data)[i];
    case DType::f16: return float(static_cast<const Half*>(r.data)[i]);
    default: return float(static_cast<const BFloat16*>(r.data)[i]);
  }
}

// C[M, N] (+)= A[M, K] * B[K, N], all row-major with leading dims lda, ldb, ldc.
// Rows of C are done four at a time in 32-column strips: 4 x 32 accumulators stay in
// registers and each loaded strip of B feeds four rows.
inline void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
  constexpr int64_t MR = 4, NR = 32;
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int64_t nj = std::min(NR, N - j0);
    int64_t i0 = 0;
    if (nj == NR) {
      for (; i0 + MR <= M; i0 += MR) {
        float acc[MR][NR];
        for (int64_t r = 0; r < MR; ++r)
          for (int64_t j = 0; j < NR; ++j) acc[r][j] = accumulate ? C[(i0 + r) * ldc + j0 + j] : 0.f;
        for (int64_t p = 0; p < K; ++p) {
          const float* b = B + p * ldb + j0;
          for (int64_t r = 0; r < MR; ++r) {
            const float a = A[(i0 + r) * lda + p];
            for (int64_t j = 0; j < NR; ++j) acc[r][j] += a * b[j];
          }
        }
        for (int64_t r = 0; r < MR; ++r)
          for (int64_t j = 0; j < NR; ++j) C[(i0 + r) * ldc + j0 + j] = acc[r][j];
      }
    }
    for (; i0 < M; ++i0) {  // leftover rows and narrow strips
      float acc[NR];
      for (int64_t j = 0; j < nj; ++j) acc[j] = accumulate ? C[i0 * ldc + j0 + j] : 0.f;
      for (int64_t p = 0; p < K; ++p) {
        const float a = A[i0 * lda + p];
        const float* b = B + p * ldb + j0;
        for (int64_t j = 0; j < nj; ++j) acc[j] += a * b[j];
      }
      for (int64_t j = 0; j < nj; ++j) C[i0 * ldc + j0 + j] = acc[j];
    }
  }
}

// dst[cols, rows] = src[rows, cols]^T
inline void transpose(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace mlxn::cpu::gdn
