#pragma once
// CPU helpers of the gdn family: sequence spans, head-vector access, and the small dense
// products the chunked form is made of (register-blocked so the compiler keeps the
// accumulators in vector registers).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __SSE2__
#include <immintrin.h>
#endif

#include "cpu/common.h"
#include "ops/gdn_args.h"

namespace mlxn::cpu::gdn {

using detail::HeadView;
using detail::kChunk;
using detail::RowView;
using detail::SeqLayout;

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

// x *= 1 / sqrt(sum(x^2) + eps) (a head vector: short enough for a float sum).
inline void l2_normalize(float* x, int64_t n, float eps) {
  float ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss + eps);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// Scalar at (token, head) of a [tokens, H] row view as float.
inline float row_value(const RowView& r, int64_t token, int64_t head) {
  const int64_t i = token * r.row_stride + head;
  switch (r.dtype) {
    case DType::f32:
      return static_cast<const float*>(r.data)[i];
    case DType::f16:
      return float(static_cast<const Half*>(r.data)[i]);
    default:
      return float(static_cast<const BFloat16*>(r.data)[i]);
  }
}

// e^x for x <= 88 to about 2e-7 relative, in a form the compiler vectorises (std::exp is
// a library call per element). Arguments below -87 give 0.
inline float fast_exp(float x) {
  const bool under = x < -87.f;
  x = std::clamp(x, -87.f, 88.f);
  const float y = x * 1.44269504f;
  const float n = std::floor(y + 0.5f);
  const float f = (y - n) * 0.69314718f;  // e^f, |f| <= ln2 / 2
  const float p = 1.f + f * (1.f + f * (0.5f + f * (1.f / 6 + f * (1.f / 24 + f * (1.f / 120 + f * (1.f / 720))))));
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return under ? 0.f : p * scale;
}

// Flushes denormal results and operands to zero while in scope (restoring the caller's
// mode after). Strong decays drive states and decay factors far below 1e-38, where x86
// arithmetic on denormals runs at a small fraction of its speed.
class FlushDenormals {
 public:
#ifdef __SSE2__
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// C[M, N] (+)= A[M, K] * B[K, N], row-major with leading dims lda, ldb, ldc. With a_lower,
// A is lower triangular (row i has no terms past column i) and those products are skipped;
// with c_lower only C's lower triangle is wanted and blocks wholly above it are left
// unwritten. Blocks of 6 rows x 16 columns: twelve accumulators, two vectors of B and a broadcast of A
// fill the sixteen AVX2 registers (written with intrinsics: left to itself the compiler
// spilled accumulators to the stack inside the loop).
inline void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, bool accumulate, bool a_lower = false, bool c_lower = false) {
  constexpr int64_t MR = 6, NR = 16;
  int64_t j0 = 0;
#ifdef __AVX2__
  for (; j0 + NR <= N; j0 += NR) {
    int64_t i0 = 0;
    for (; i0 + MR <= M; i0 += MR) {
      if (c_lower && j0 > i0 + MR - 1) continue;
      const int64_t kend = a_lower ? std::min(K, i0 + MR) : K;
      __m256 c[MR][2];
      for (int r = 0; r < MR; ++r) {
        float* cr = C + (i0 + r) * ldc + j0;
        c[r][0] = accumulate ? _mm256_loadu_ps(cr) : _mm256_setzero_ps();
        c[r][1] = accumulate ? _mm256_loadu_ps(cr + 8) : _mm256_setzero_ps();
      }
      const float* a = A + i0 * lda;
      for (int64_t p = 0; p < kend; ++p) {
        const __m256 b0 = _mm256_loadu_ps(B + p * ldb + j0), b1 = _mm256_loadu_ps(B + p * ldb + j0 + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
          const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
          c[r][0] = _mm256_fmadd_ps(av, b0, c[r][0]);
          c[r][1] = _mm256_fmadd_ps(av, b1, c[r][1]);
        }
      }
      for (int r = 0; r < MR; ++r) {
        float* cr = C + (i0 + r) * ldc + j0;
        _mm256_storeu_ps(cr, c[r][0]);
        _mm256_storeu_ps(cr + 8, c[r][1]);
      }
    }
    for (; i0 < M; ++i0) {  // leftover rows of the strip
      if (c_lower && j0 > i0) continue;
      const int64_t kend = a_lower ? std::min(K, i0 + 1) : K;
      float* cr = C + i0 * ldc + j0;
      __m256 c0 = accumulate ? _mm256_loadu_ps(cr) : _mm256_setzero_ps();
      __m256 c1 = accumulate ? _mm256_loadu_ps(cr + 8) : _mm256_setzero_ps();
      for (int64_t p = 0; p < kend; ++p) {
        const __m256 av = _mm256_broadcast_ss(A + i0 * lda + p);
        c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(B + p * ldb + j0), c0);
        c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(B + p * ldb + j0 + 8), c1);
      }
      _mm256_storeu_ps(cr, c0);
      _mm256_storeu_ps(cr + 8, c1);
    }
  }
#endif
  for (int64_t i = 0; i < M && j0 < N; ++i) {  // columns past the last full strip
    const int64_t kend = a_lower ? std::min(K, i + 1) : K;
    for (int64_t j = j0; j < N; ++j) {
      float acc = accumulate ? C[i * ldc + j] : 0.f;
      for (int64_t p = 0; p < kend; ++p) acc += A[i * lda + p] * B[p * ldb + j];
      C[i * ldc + j] = acc;
    }
  }
}

inline void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                    int64_t ldc, bool accumulate) {
  gemm(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// dst[cols, rows] = src[rows, cols]^T
inline void transpose(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace mlxn::cpu::gdn
