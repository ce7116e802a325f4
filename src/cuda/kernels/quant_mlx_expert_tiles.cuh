#pragma once
// MLX affine experts as the W operand of the grouped tensor-core GEMM (matmul.cuh
// grouped_mma_kernel): each BN x 64 tile of an expert's [N, K] matrix travels as its packed
// codes, scales and biases through the GEMM's asynchronous stages and is dequantized in shared
// memory just before its products, so a routed prefill multiplies every expert once by all its
// rows, reading 4-bit weights at a quarter of the bytes of bf16 ones, and the dequantized stack
// never exists in memory. Values are s * q + b rounded once to T, by dequant_pair, as the
// mat-vec forms them: with the scales in T (kPacked) one packed fma a pair, else in f32.
#include "cuda/kernels/matmul.cuh"
#include "cuda/kernels/quant_mlx.cuh"

namespace mlxn::kernels::qmlx {

// A k-step's tile is 64 columns: two 32-value chunks of each row (BITS words each), copied
// into the stage row after row, the pieces of a row by neighbouring threads, so that one warp's
// copies touch a few whole sectors rather than one per row. Thread tid decodes chunk tid / BN of
// row tid % BN (a warp-uniform choice, so every index into the chunk stays a compile-time
// constant).
//
// Scales and biases come in windows: for each of the tile's rows, the 32 bytes of each array
// that cover the next window_k columns (16 bf16/f16 or 8 f32 groups), copied once per window
// into one of two window buffers. Copied per k-step instead, they were one 4-byte copy per row
// and array, each its own sector: twice the code copies' requests for an eighth of their bytes
// (bench/NOTES.md, runs 229 and 259). A window spans at least four k-steps, so the buffer a
// window's copies overwrite (two windows back) is free once they are issued, kMmaStages - 1
// k-steps ahead of its first products.
template <class T, int BITS, bool kPacked>
struct ExpertTiles {
  static_assert(kMmaThreads == 2 * kMmaBN, "two threads a row, one chunk each");
  static constexpr int kBK = 64;
  static constexpr int kChunkBytes = 4 * BITS;
  static constexpr int kCodeBytes = 2 * kChunkBytes;  // a row's codes in a stage
  static constexpr int kStageBytes = kMmaBN * kCodeBytes;
  static constexpr int kWindowRowBytes = 32;                         // per row and array
  static constexpr int kWindowBytes = 2 * kMmaBN * kWindowRowBytes;  // scales, then biases
  static constexpr int kExtraBytes = 2 * kWindowBytes;               // two windows
  static constexpr bool kDecodes = true;
  // Two blocks per SM (128 registers): the shared memory of a 64-row tile (80 KB) allows no more.
  static constexpr int kMinBlocks = 2;
  static constexpr bool kFast = kPacked && BITS <= Pair<T>::kMagicBits;  // dequant_pair's packed route
  // The widest copy a chunk's alignment allows: chunks start at multiples of 4 * BITS bytes.
  static constexpr int kCopy = kChunkBytes % 16 == 0 ? 16 : kChunkBytes % 8 == 0 ? 8 : 4;
  static constexpr int kPieces = kCodeBytes / kCopy;  // copies per row and k-step

  const uint32_t* packed;  // [E, N, K * BITS / 32], 16-byte aligned
  const void* scales;      // [E, N, K / gs]; f32, f16 or bf16; rows window_copy-aligned
  const void* biases;
  int scale_kind;      // cuda::float_kind
  int gs_shift;        // log2 of the group size
  int groups_per_row;  // K / group size
  int window_copy;     // 4, 8 or 16: the widest copy dividing a row of scales and both bases' alignment

  __device__ __forceinline__ int scale_bytes() const { return scale_kind == 0 ? 4 : 2; }
  __device__ __forceinline__ int window_groups() const { return kWindowRowBytes / scale_bytes(); }
  __device__ __forceinline__ int window_k() const { return window_groups() << gs_shift; }

  // Window w's scale and bias bytes of every tile row into buffer w % 2, in pieces of C bytes.
  template <int C>
  __device__ __forceinline__ void fetch_window(unsigned char* buf, int e, int n0, int w, const MatmulIdParams<T>& p,
                                               int tid) const {
    const int es = scale_bytes(), g0 = w * window_groups();
    const int bytes = min(window_groups(), groups_per_row - g0) * es;  // a multiple of C
    constexpr int kPerRow = kWindowRowBytes / C;
#pragma unroll 1  // once per window: not worth the registers of unrolled addresses
    for (int c = tid; c < 2 * kMmaBN * kPerRow; c += kMmaThreads) {
      const int arr = c / (kMmaBN * kPerRow), r = c / kPerRow % kMmaBN, j = c % kPerRow;
      if (j * C >= bytes) continue;
      const auto* src = static_cast<const unsigned char*>(arr ? biases : scales) +
                        (expert_tile_row(e, p.n, n0, r) * groups_per_row + g0) * es + j * C;
      cp_async<C>(buf + (arr * kMmaBN + r) * kWindowRowBytes + j * C, src);
    }
  }

  __device__ __forceinline__ void fetch(unsigned char* stage, unsigned char* extra, int e, int n0, int k0,
                                        const MatmulIdParams<T>& p, int tid) const {
#pragma unroll
    for (int i = 0; i < (kMmaBN * kPieces + kMmaThreads - 1) / kMmaThreads; ++i) {
      const int c = tid + i * kMmaThreads, r = c / kPieces, j = c % kPieces;
      const int kc = k0 + (j * kCopy / kChunkBytes) * 32;  // first column of the piece's chunk
      if (r >= kMmaBN || kc >= p.k) continue;              // a chunk past K is decoded as zeros
      const auto* src =
          reinterpret_cast<const unsigned char*>(packed + (expert_tile_row(e, p.n, n0, r) * p.k + k0) / 32 * BITS);
      cp_async<kCopy>(stage + r * kCodeBytes + j * kCopy, src + j * kCopy);
    }
    const int wk = window_k();
    if (k0 % wk != 0) return;
    const int w = k0 / wk;
    unsigned char* buf = extra + (w & 1) * kWindowBytes;
    if (window_copy == 16)
      fetch_window<16>(buf, e, n0, w, p, tid);
    else if (window_copy == 8)
      fetch_window<8>(buf, e, n0, w, p, tid);
    else
      fetch_window<4>(buf, e, n0, w, p, tid);
  }

  __device__ __forceinline__ const T* tile(const unsigned char* stage, const unsigned char* extra, T* dec, int, int,
                                           int k0, const MatmulIdParams<T>& p, int tid) const {
    using L = ChunkLayout<BITS>;
    static_assert(L::kHalf % 2 == 0, "two pairs give two words of consecutive values");
    const int r = tid % kMmaBN, h = tid / kMmaBN, kc = k0 + 32 * h;
    uint32_t nat[16];
    if (kc < p.k) {
      uint32_t w[BITS];
      const unsigned char* codes = stage + r * kCodeBytes + h * kChunkBytes;
      if constexpr (kChunkBytes % 16 == 0) {
#pragma unroll
        for (int i = 0; i < BITS / 4; ++i) {
          const uint4 v = reinterpret_cast<const uint4*>(codes)[i];
          w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
        }
      } else {
#pragma unroll
        for (int i = 0; i < BITS; ++i) w[i] = reinterpret_cast<const uint32_t*>(codes)[i];
      }
      const int wk = window_k(), win = k0 / wk, gi = (kc >> gs_shift) - win * window_groups();
      const unsigned char* buf = extra + (win & 1) * kWindowBytes + r * kWindowRowBytes;
      uint32_t sb, bb;
      if (scale_kind == 0) {
        sb = reinterpret_cast<const uint32_t*>(buf)[gi];
        bb = reinterpret_cast<const uint32_t*>(buf + kMmaBN * kWindowRowBytes)[gi];
      } else {
        sb = reinterpret_cast<const uint16_t*>(buf)[gi];
        bb = reinterpret_cast<const uint16_t*>(buf + kMmaBN * kWindowRowBytes)[gi];
      }
      const Affine f = kFast ? Affine{sb | (sb << 16), bb | (bb << 16)}
                             : Affine{__float_as_uint(scalar_from_bits(sb, scale_kind)),
                                      __float_as_uint(scalar_from_bits(bb, scale_kind))};
      // Pairs p and p + 1 (p even) hold values (v, v + kHalf) and (v + 1, v + 1 + kHalf), so two
      // byte permutes give the words of (v, v + 1) and (v + kHalf, v + 1 + kHalf) in the tile's
      // natural order.
#pragma unroll
      for (int pa = 0; pa < 16; pa += 2) {
        const int v = L::pair_lo(pa);
        const uint32_t a = dequant_pair<T, BITS, kFast>(w, pa, f), b = dequant_pair<T, BITS, kFast>(w, pa + 1, f);
        nat[v / 2] = __byte_perm(a, b, 0x5410);
        nat[(v + L::kHalf) / 2] = __byte_perm(a, b, 0x7632);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i) nat[i] = 0u;
    }
    store_decoded_half(dec, r, h, nat);
    return dec;
  }
};

}  // namespace mlxn::kernels::qmlx
