#pragma once
// MLX affine quantization on the device: the bit-stream layout, MLX's quantize and
// dequantize arithmetic (bit-exact), and the dequantization of 32-value chunks into packed
// 16-bit pairs that the tensor-core kernels consume. Framework-free (raw pointers only).
//
// A "chunk" is 32 consecutive values of a row: exactly BITS words, and always inside one
// group (groups are 32, 64 or 128 values). Within a chunk, values are paired for 2 x 16-bit
// registers in the order the cheap bit tricks produce: pair p holds values
// (pair_lo(p), pair_lo(p) + kHalf). The matmul kernels lay x out in the same order, so no
// shuffling of weights is needed; the order is private to these kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/kernels/math.cuh"

namespace mlxn::kernels::qmlx {

// ---- layout --------------------------------------------------------------------------------

template <int BITS>
struct ChunkLayout {
  static constexpr int kVpw = (BITS == 2 || BITS == 4 || BITS == 8) ? 32 / BITS : 8;  // values per pairing block
  static constexpr int kHalf = kVpw / 2;
  __host__ __device__ static constexpr int pair_lo(int p) { return kVpw * (p / kHalf) + p % kHalf; }
  __host__ __device__ static constexpr int pair_hi(int p) { return pair_lo(p) + kHalf; }
  // Where value v of a chunk sits when the chunk is stored pair by pair (pair p in 16-bit
  // slots 2p and 2p + 1): the layout the mat-vec stages x in, so that the two words of pairs
  // 2m and 2m + 1 are mma m's B operand as they are read.
  __host__ __device__ static constexpr int slot(int v) {
    const int j = v % kVpw;
    return 2 * (kHalf * (v / kVpw) + j % kHalf) + (j >= kHalf ? 1 : 0);
  }
  static constexpr uint32_t kMask = (1u << BITS) - 1u;
};

// Value v (0..31) of a chunk held in BITS words (v is a constant after unrolling).
template <int BITS>
__device__ __forceinline__ uint32_t chunk_value(const uint32_t (&w)[BITS], int v) {
  const int bit = v * BITS, wi = bit >> 5, sh = bit & 31;
  if (sh + BITS <= 32) return (w[wi] >> sh) & ChunkLayout<BITS>::kMask;
  return __funnelshift_r(w[wi], w[wi + 1], sh) & ChunkLayout<BITS>::kMask;
}

// Loads a chunk: `p` points at its first word, aligned to min(16, 4 * BITS) bytes when the
// packed matrix is 16-byte aligned (a chunk starts at a multiple of 4 * BITS bytes).
template <int BITS>
__device__ __forceinline__ void load_chunk(const uint32_t* __restrict__ p, uint32_t (&w)[BITS]) {
  if constexpr (BITS == 4) {
    const uint4 a = __ldcs(reinterpret_cast<const uint4*>(p));
    w[0] = a.x;
    w[1] = a.y;
    w[2] = a.z;
    w[3] = a.w;
  } else if constexpr (BITS == 8) {
    const uint4 a = __ldcs(reinterpret_cast<const uint4*>(p));
    const uint4 b = __ldcs(reinterpret_cast<const uint4*>(p) + 1);
    w[0] = a.x;
    w[1] = a.y;
    w[2] = a.z;
    w[3] = a.w;
    w[4] = b.x;
    w[5] = b.y;
    w[6] = b.z;
    w[7] = b.w;
  } else if constexpr (BITS == 2 || BITS == 6) {
#pragma unroll
    for (int i = 0; i < BITS / 2; ++i) {
      const uint2 a = __ldcs(reinterpret_cast<const uint2*>(p) + i);
      w[2 * i] = a.x;
      w[2 * i + 1] = a.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) w[i] = __ldcs(p + i);
  }
}

// Scalar loads, any 4-byte alignment.
template <int BITS>
__device__ __forceinline__ void load_chunk_scalar(const uint32_t* __restrict__ p, uint32_t (&w)[BITS]) {
#pragma unroll
  for (int i = 0; i < BITS; ++i) w[i] = __ldg(p + i);
}

// q as an exact f32 (the magic-number trick: 2^23 + q has q in its low mantissa bits).
template <int BITS>
__device__ __forceinline__ float value_f32(const uint32_t (&w)[BITS], int v) {
  if constexpr (BITS == 8) {
    // bytes [q, 0, 0, 0x4b]
    const uint32_t sel = uint32_t(v & 3) | 0x7540u;
    return __uint_as_float(__byte_perm(w[v >> 2], 0x4b000000u, sel)) - 8388608.f;
  } else {
    return __uint_as_float(chunk_value<BITS>(w, v) | 0x4b000000u) - 8388608.f;
  }
}

// ---- MLX's dequantized value ------------------------------------------------------------

template <class S>
__device__ __forceinline__ float round_to(float v) {
  if constexpr (std::is_same_v<S, float>)
    return v;
  else
    return to_f32(from_f32<S>(v));
}

// round_S(round_S(q * s) + b): MLX multiplies, then adds, each rounded to the scales' dtype.
// The _rn intrinsics keep the compiler from fusing them into one multiply-add.
template <class S>
__device__ __forceinline__ float mlx_value(float q, float s, float b) {
  const float p = round_to<S>(__fmul_rn(q, s));
  return round_to<S>(__fadd_rn(p, b));
}

// ---- 16-bit pairs for the tensor cores ---------------------------------------------------

template <class CT>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static constexpr uint32_t kMagic = 0x43004300u;  // 128.0 in each half: q < 128 lands in the mantissa
  static constexpr int kMagicBits = 7;
};
template <>
struct Pair<__half> {
  using T2 = __half2;
  static constexpr uint32_t kMagic = 0x64006400u;  // 1024.0 in each half
  static constexpr int kMagicBits = 10;
};

template <class T2>
__device__ __forceinline__ uint32_t as_u32(T2 v) {
  return *reinterpret_cast<uint32_t*>(&v);
}
template <class T2>
__device__ __forceinline__ T2 from_u32(uint32_t u) {
  return *reinterpret_cast<T2*>(&u);
}

__device__ __forceinline__ uint32_t pack_f32(float lo, float hi, __nv_bfloat16*) {
  return as_u32(__floats2bfloat162_rn(lo, hi));
}
__device__ __forceinline__ uint32_t pack_f32(float lo, float hi, __half*) { return as_u32(__floats2half2_rn(lo, hi)); }

// (a & b) | c as one LOP3: the compiler emits an AND and an OR for the expression, and this
// is the innermost operation of the 2- and 4-bit dequantization.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// The affine map of one group for dequant_pair: kFast holds s and b as packed CT pairs
// (s, s) and (b, b); otherwise their f32 bit patterns.
struct Affine {
  uint32_t s, b;
};

template <class CT, class ST, bool kFast>
__device__ __forceinline__ Affine make_affine(ST s, ST b) {
  if constexpr (kFast) {
    static_assert(std::is_same_v<CT, ST>, "the packed route needs the scales in x's type");
    const uint32_t su = *reinterpret_cast<const uint16_t*>(&s), bu = *reinterpret_cast<const uint16_t*>(&b);
    return {su | (su << 16), bu | (bu << 16)};
  } else {
    return {__float_as_uint(to_f32(s)), __float_as_uint(to_f32(b))};
  }
}

// Pair p of a chunk as two CT values s * q + b, each rounded once to CT.
// kFast: s and b are exactly representable in CT (the scales' dtype is CT) and q fits the
// magic number's mantissa: q is formed exactly in CT and one packed fma gives s * q + b
// (about 2 instructions per pair for 2 and 4 bits). Otherwise: s * q + b in f32, rounded to CT.
template <class CT, int BITS, bool kFast>
__device__ __forceinline__ uint32_t dequant_pair(const uint32_t (&w)[BITS], int p, Affine f) {
  using L = ChunkLayout<BITS>;
  using P = Pair<CT>;
  using T2 = typename P::T2;
  if constexpr (kFast) {
    static_assert(BITS <= P::kMagicBits, "q must fit the magic number's mantissa");
    uint32_t r;
    if constexpr (BITS == 2 || BITS == 4) {
      // values lo and lo + kHalf sit 16 bits apart in one word
      constexpr uint32_t m = L::kMask | (L::kMask << 16);
      const int word = p / L::kHalf, sh = (p % L::kHalf) * BITS;
      r = and_or(w[word] >> sh, m, P::kMagic);
    } else if constexpr (BITS == 8) {
      // f16 only (8 bits fit its 10-bit mantissa): bytes [q_lo, 0x64, q_hi, 0x64]
      const int word = p / 2, i = p % 2;
      r = __byte_perm(w[word], 0x64646464u, uint32_t(i) | (4u << 4) | (uint32_t(i + 2) << 8) | (4u << 12));
    } else {
      r = chunk_value<BITS>(w, L::pair_lo(p)) | (chunk_value<BITS>(w, L::pair_hi(p)) << 16) | P::kMagic;
    }
    const T2 q2 = __hsub2(from_u32<T2>(r), from_u32<T2>(P::kMagic));  // exact
    return as_u32(__hfma2(q2, from_u32<T2>(f.s), from_u32<T2>(f.b)));
  } else {
    const float s = __uint_as_float(f.s), b = __uint_as_float(f.b);
    const float lo = fmaf(value_f32<BITS>(w, L::pair_lo(p)), s, b);
    const float hi = fmaf(value_f32<BITS>(w, L::pair_hi(p)), s, b);
    return pack_f32(lo, hi, static_cast<CT*>(nullptr));
  }
}

// ---- ids -------------------------------------------------------------------------------------

// The id at slot u, or -1 when it is outside [0, limit).
__device__ __forceinline__ int64_t load_id(const void* ids, bool u32, int64_t u, int64_t limit) {
  const int64_t v = u32 ? int64_t(static_cast<const uint32_t*>(ids)[u]) : int64_t(static_cast<const int32_t*>(ids)[u]);
  return v >= 0 && v < limit ? v : -1;
}

// ---- quantize, dequantize, embedding ---------------------------------------------------------

// One thread per group, MLX's arithmetic in f32 with explicit rounding intrinsics. The group's
// words belong to this thread alone (group_size * bits is a multiple of 32).
template <class T, class S, int BITS>
__global__ void quantize_kernel(const T* __restrict__ w, int64_t w_stride, uint32_t* __restrict__ packed,
                                S* __restrict__ scales, S* __restrict__ biases, int64_t rows, int64_t cols, int gs) {
  const int64_t groups_per_row = cols / gs;
  const int64_t gi = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gi >= rows * groups_per_row) return;
  const int64_t row = gi / groups_per_row, g = gi % groups_per_row;
  const T* v = w + row * w_stride + g * gs;
  const float n_bins = float((1 << BITS) - 1);
  float w_min = INFINITY, w_max = -INFINITY;
  for (int j = 0; j < gs; ++j) {
    const float x = to_f32(v[j]);
    w_max = fmaxf(w_max, x);
    w_min = fminf(w_min, x);
  }
  const bool mask = fabsf(w_min) > fabsf(w_max);
  float scale = fmaxf(__fdiv_rn(__fsub_rn(w_max, w_min), n_bins), 1e-7f);
  scale = mask ? scale : -scale;
  const float edge = mask ? w_min : w_max;
  const float q0 = rintf(__fdiv_rn(edge, scale));
  float bias = 0.f;
  if (q0 != 0.f) {
    scale = __fdiv_rn(edge, q0);
    bias = edge;
  }
  uint32_t* out = packed + (row * cols + g * gs) * BITS / 32;
  uint64_t acc = 0;
  int filled = 0;
  for (int j = 0; j < gs; ++j) {
    float q = rintf(__fdiv_rn(__fsub_rn(to_f32(v[j]), bias), scale));
    q = fminf(fmaxf(q, 0.f), n_bins);
    acc |= uint64_t(uint32_t(q)) << filled;
    filled += BITS;
    if (filled >= 32) {
      *out++ = uint32_t(acc);
      acc >>= 32;
      filled -= 32;
    }
  }
  scales[gi] = from_f32<S>(scale);
  biases[gi] = from_f32<S>(bias);
}

// Threads per block of dequantize_kernel.
inline constexpr int kDequantThreads = 256;

// One thread per 32-value chunk of a row, converted to T. kMlx: MLX's dequantized value
// (two roundings in the scales' dtype, bit-exact with mx.dequantize), times `mul`; otherwise
// s * q + b rounded once to T (the weights the matmuls multiply, for the prefill GEMM).
// `ids` (embedding) selects the source row of output row r; an id out of range gives zeros.
// vec: the packed matrix and the output rows are 16-byte aligned (vector loads and stores).
// Dense outputs (rows back to back, no ids) are stored a warp's span at a time
// (warp_store_span) wherever the whole block lies inside the matrix.
template <class T, class S, int BITS, bool kMlx>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_kernel(const uint32_t* __restrict__ packed, const S* __restrict__ scales, const S* __restrict__ biases,
                      T* __restrict__ out, int64_t out_stride, int64_t rows, int64_t cols, int gs, const void* ids,
                      bool ids_u32, int64_t table_rows, float mul, bool vec) {
  constexpr int VN = Vec<T>::N;
  constexpr int kPieces = 32 / VN;  // 16-byte vectors per chunk
  __shared__ uint4 stage[kDequantThreads / 32][32 * kPieces];
  const int64_t chunks = cols / 32, total = rows * chunks;
  const int64_t ci = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  // Block-uniform, so whole warps take the same path.
  const bool staged = vec && !ids && out_stride == cols && (int64_t(blockIdx.x) + 1) * blockDim.x <= total;
  if (ci >= total) return;
  const int64_t r = ci / chunks, c = ci % chunks;
  T* o = out + r * out_stride + c * 32;
  int64_t src = r;
  if (ids) {
    src = load_id(ids, ids_u32, r, table_rows);
    if (src < 0) {
#pragma unroll
      for (int i = 0; i < 32; ++i) o[i] = from_f32<T>(0.f);
      return;
    }
  }
  uint32_t w[BITS];
  const uint32_t* wp = packed + (src * cols + c * 32) * BITS / 32;
  if (vec)
    load_chunk<BITS>(wp, w);
  else
    load_chunk_scalar<BITS>(wp, w);
  const int64_t gi = src * (cols / gs) + c * 32 / gs;
  const float s = to_f32(scales[gi]), b = to_f32(biases[gi]);
  uint4 piece[kPieces];
#pragma unroll
  for (int j = 0; j < 32; j += VN) {
    Vec<T> t;
#pragma unroll
    for (int i = 0; i < VN; ++i) {
      const float q = value_f32<BITS>(w, j + i);
      float v;
      if constexpr (kMlx) {
        const float m = mlx_value<S>(q, s, b);
        v = mul == 1.f ? m : __fmul_rn(m, mul);
      } else {
        v = fmaf(q, s, b);
      }
      t.v[i] = from_f32<T>(v);
    }
    if (staged)
      piece[j / VN] = *reinterpret_cast<const uint4*>(t.v);
    else if (vec)
      store_vec(o + j, t);
    else
#pragma unroll
      for (int i = 0; i < VN; ++i) o[j + i] = t.v[i];
  }
  if (staged) warp_store_span(out + (ci - (threadIdx.x & 31)) * 32, stage[threadIdx.x / 32], piece);
}

}  // namespace mlxn::kernels::qmlx
