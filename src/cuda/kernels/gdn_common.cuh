#pragma once
// Sequence layout helpers shared by the gdn kernels: B rows of T tokens, or N sequences
// back to back given by cumulative offsets cu[N + 1]. Offsets are clamped into [0, total]
// and made non-decreasing, so malformed ones give wrong numbers but never a bad address.
#include <cstdint>
#include <utility>

#include "cuda/kernels/math.cuh"
#include "cuda/kernels/mma.cuh"

namespace mlxn::kernels::gdn {

inline constexpr int kChunk = 64;

struct SeqLayout {
  const int32_t* cu;  // [N + 1] or null
  int64_t T;          // tokens per batch row
  int64_t N;          // sequences
  int64_t slots;      // chunk slots per batch row
};

__device__ __forceinline__ int64_t clamp_tok(int64_t x, int64_t lo, int64_t hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

// First token (flattened over the batch), length and first chunk slot of sequence n.
__device__ __forceinline__ void seq_span(const SeqLayout& s, int64_t n, int64_t& begin, int64_t& len, int64_t& slot) {
  if (!s.cu) {
    begin = n * s.T;
    len = s.T;
    slot = n * s.slots;
    return;
  }
  const int64_t b = clamp_tok(s.cu[n], 0, s.T);
  const int64_t e = clamp_tok(s.cu[n + 1], b, s.T);
  begin = b;
  len = e - b;
  slot = n + b / kChunk;
}

// The sequence holding flattened token `tok`, and that sequence's first token.
__device__ __forceinline__ int64_t seq_of(const SeqLayout& s, int64_t tok, int64_t& begin) {
  if (!s.cu) {
    const int64_t n = tok / s.T;
    begin = n * s.T;
    return n;
  }
  int64_t lo = 0, hi = s.N - 1;  // last n with cu[n] <= tok
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) >> 1;
    if (s.cu[mid] <= tok)
      lo = mid;
    else
      hi = mid - 1;
  }
  begin = clamp_tok(s.cu[lo], 0, tok);
  return lo;
}

// Chunk `slot` (flattened over batch rows): its sequence n, first token and length.
// False for a slot that no chunk maps to (varlen gaps, past the end).
__device__ __forceinline__ bool chunk_of_slot(const SeqLayout& s, int64_t slot, int64_t& n, int64_t& tok0, int& len) {
  int64_t begin, slen, base;
  if (!s.cu) {
    n = slot / s.slots;
    const int64_t c = slot - n * s.slots;
    if (n >= s.N) return false;
    tok0 = n * s.T + c * kChunk;
    const int64_t rest = s.T - c * kChunk;
    len = int(rest < kChunk ? rest : kChunk);
    return rest > 0;
  }
  int64_t lo = 0, hi = s.N - 1;  // last sequence whose first slot is <= slot
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) >> 1;
    if (mid + clamp_tok(s.cu[mid], 0, s.T) / kChunk <= slot)
      lo = mid;
    else
      hi = mid - 1;
  }
  n = lo;
  seq_span(s, n, begin, slen, base);
  const int64_t c = slot - base;
  if (c < 0 || c * kChunk >= slen) return false;
  tok0 = begin + c * kChunk;
  const int64_t rest = slen - c * kChunk;
  len = int(rest < kChunk ? rest : kChunk);
  return true;
}

// N elements (16 bytes of T, or N scalars when not vectorisable) as floats.
template <class T, int N>
__device__ __forceinline__ void load_f32(const T* p, bool vec, float (&dst)[N]) {
  if (vec) {
    static_assert(N * sizeof(T) % 16 == 0, "whole vectors");
#pragma unroll
    for (int i = 0; i < N; i += Vec<T>::N) {
      const Vec<T> v = load_vec(p + i);
#pragma unroll
      for (int j = 0; j < Vec<T>::N; ++j) dst[i + j] = to_f32(v.v[j]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = to_f32(p[i]);
  }
}

template <class T, int N>
__device__ __forceinline__ void store_f32(T* p, bool vec, const float (&src)[N]) {
  if (vec) {
#pragma unroll
    for (int i = 0; i < N; i += Vec<T>::N) {
      Vec<T> v;
#pragma unroll
      for (int j = 0; j < Vec<T>::N; ++j) v.v[j] = from_f32<T>(src[i + j]);
      store_vec(p + i, v);
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = from_f32<T>(src[i]);
  }
}

}  // namespace mlxn::kernels::gdn
