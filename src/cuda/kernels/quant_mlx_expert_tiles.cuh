#pragma once
// MLX affine experts as the W operand of the grouped tensor-core GEMM (matmul.cuh
// grouped_mma_kernel): each BN x BK tile of an expert's [N, K] matrix travels as its packed
// codes, scales and biases through the GEMM's asynchronous stages and is dequantized in shared
// memory just before its products, so a routed prefill multiplies every expert once by all its
// rows, reading 4-bit weights at a quarter of the bytes of bf16 ones, and the dequantized stack
// never exists in memory. Values are s * q + b rounded once to T, by dequant_pair, as the
// mat-vec forms them: with the scales in T (kPacked) one packed fma a pair, else in f32.
#include "cuda/kernels/matmul.cuh"
#include "cuda/kernels/quant_mlx.cuh"

namespace mlxn::kernels::qmlx {

// A BK = 32 column tile is one 32-value chunk of each row (BITS words), inside one group.
// A stage holds, per tile row: the chunk's BITS words, then (after all rows' words) the 4-byte
// word holding the row's scale and the one holding its bias (a 16-bit scale is one half of
// it). Threads 0..BN-1 copy a row's words, threads BN..2BN-1 its scale and bias words. Each
// thread then decodes half of row tid % BN: warps 0-3 the first 16 values, warps 4-7 the last
// (a warp-uniform choice, so every index into the chunk stays a compile-time constant).
template <class T, int BITS, bool kPacked>
struct ExpertTiles {
  static_assert(kMmaBK == 32 && kMmaThreads == 2 * kMmaBN, "a tile row is one chunk; two threads a row");
  static constexpr int kCodeBytes = 4 * BITS;  // one row's chunk
  static constexpr int kStageBytes = kMmaBN * (kCodeBytes + 8);
  static constexpr bool kDecodes = true;
  static constexpr bool kFast = kPacked && BITS <= Pair<T>::kMagicBits;  // dequant_pair's packed route
  // The widest copy a chunk's alignment allows: chunks start at multiples of 4 * BITS bytes.
  static constexpr int kCopy = kCodeBytes % 16 == 0 ? 16 : kCodeBytes % 8 == 0 ? 8 : 4;

  const uint32_t* packed;  // [E, N, K * BITS / 32], 16-byte aligned
  const void* scales;      // [E, N, K / gs], 4-byte aligned, whole 4-byte words; f32, f16 or bf16
  const void* biases;
  int scale_kind;       // cuda::float_kind
  int gs_shift;         // log2 of the group size
  int groups_per_row;   // K / group size

  // The row of the stacked matrix a tile row reads: rows past N read row N - 1 (valid memory;
  // they only feed output columns past N, which are never stored).
  __device__ __forceinline__ int64_t source_row(int e, int n0, int r, const MatmulIdParams<T>& p) const {
    return int64_t(e) * p.n + min(n0 + r, p.n - 1);
  }
  __device__ __forceinline__ int64_t group_of(int64_t row, int k0) const {
    return row * groups_per_row + (k0 >> gs_shift);
  }
  // The 4-byte word holding element gi of a scale or bias array.
  __device__ __forceinline__ const void* word_of(const void* a, int64_t gi) const {
    return scale_kind == 0 ? static_cast<const void*>(static_cast<const uint32_t*>(a) + gi)
                           : static_cast<const void*>(static_cast<const uint32_t*>(a) + (gi >> 1));
  }

  __device__ __forceinline__ void fetch(unsigned char* stage, int e, int n0, int k0, const MatmulIdParams<T>& p,
                                        int tid) const {
    const int r = tid % kMmaBN;
    const int64_t row = source_row(e, n0, r, p);
    if (tid < kMmaBN) {
      const uint32_t* src = packed + (row * p.k + k0) / 32 * BITS;
#pragma unroll
      for (int i = 0; i < kCodeBytes / kCopy; ++i)
        cp_async<kCopy>(stage + r * kCodeBytes + i * kCopy, reinterpret_cast<const unsigned char*>(src) + i * kCopy,
                        true);
    } else {
      const int64_t gi = group_of(row, k0);
      uint32_t* words = reinterpret_cast<uint32_t*>(stage + kMmaBN * kCodeBytes);
      cp_async<4>(words + r, word_of(scales, gi), true);
      cp_async<4>(words + kMmaBN + r, word_of(biases, gi), true);
    }
  }

  __device__ __forceinline__ const T* tile(const unsigned char* stage, T* dec, int e, int n0, int k0,
                                           const MatmulIdParams<T>& p, int tid) const {
    using L = ChunkLayout<BITS>;
    static_assert(L::kHalf % 2 == 0, "two pairs give two words of consecutive values");
    const int r = tid % kMmaBN, half = tid / kMmaBN;
    uint32_t w[BITS];
    const unsigned char* codes = stage + r * kCodeBytes;
    if constexpr (kCodeBytes % 16 == 0) {
#pragma unroll
      for (int i = 0; i < BITS / 4; ++i) {
        const uint4 v = reinterpret_cast<const uint4*>(codes)[i];
        w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < BITS; ++i) w[i] = reinterpret_cast<const uint32_t*>(codes)[i];
    }
    const uint32_t* words = reinterpret_cast<const uint32_t*>(stage + kMmaBN * kCodeBytes);
    // A 16-bit scale sits in the low or high half of its word by the parity of its index.
    const bool wide = scale_kind == 0;
    const int shift = wide ? 0 : 16 * int(group_of(source_row(e, n0, r, p), k0) & 1);
    const uint32_t mask = wide ? ~0u : 0xffffu;
    const uint32_t sb = (words[r] >> shift) & mask, bb = (words[kMmaBN + r] >> shift) & mask;
    const Affine f = kFast ? Affine{sb | (sb << 16), bb | (bb << 16)}
                           : Affine{__float_as_uint(scalar_from_bits(sb, scale_kind)),
                                    __float_as_uint(scalar_from_bits(bb, scale_kind))};
    // Pairs 8 h .. 8 h + 7 are values 16 h .. 16 h + 15 (half h of the row); pairs p and p + 1
    // (p even) hold values (v, v + kHalf) and (v + 1, v + 1 + kHalf), so two byte permutes give
    // the words of (v, v + 1) and (v + kHalf, v + 1 + kHalf) in the tile's natural order.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (h != half) continue;  // warp-uniform: every index below stays a compile-time constant
      uint32_t nat[8];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int pa = 8 * h + 2 * j, v = L::pair_lo(pa) - 16 * h;
        const uint32_t a = dequant_pair<T, BITS, kFast>(w, pa, f), b = dequant_pair<T, BITS, kFast>(w, pa + 1, f);
        nat[v / 2] = __byte_perm(a, b, 0x5410);
        nat[(v + L::kHalf) / 2] = __byte_perm(a, b, 0x7632);
      }
      *reinterpret_cast<uint4*>(dec + swizzle(r, 2 * h)) = make_uint4(nat[0], nat[1], nat[2], nat[3]);
      *reinterpret_cast<uint4*>(dec + swizzle(r, 2 * h + 1)) = make_uint4(nat[4], nat[5], nat[6], nat[7]);
    }
    return dec;
  }
};

}  // namespace mlxn::kernels::qmlx
