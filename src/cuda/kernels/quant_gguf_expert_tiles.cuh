#pragma once
// GGUF K-quant experts (Q4_K, Q5_K: superblocks of 256 values in whole 16-byte units) as the W
// operand of the grouped tensor-core GEMM (matmul.cuh grouped_mma_kernel), so that a routed
// prefill by a GGUF checkpoint multiplies every expert once by all its rows, as the MLX one does
// (quant_mlx_expert_tiles.cuh). A k-step is 64 columns, a quarter of a superblock: each tile
// row's superblock (its scales and all its codes) is copied whole into one of two window
// buffers once every four k-steps, kMmaStages - 1 k-steps before its first products, and each
// k-step's tile is decoded from there by the block type's packed decoder (PairDecoder,
// ops/quant_gguf_blocks.h), the one the routed mat-vec decodes with. There is no per-k-step
// stage of W: the superblock's codes are all in the window.
#include <type_traits>

#include "cuda/kernels/matmul.cuh"
#include "cuda/kernels/quant_gguf.cuh"

namespace mlxn::kernels {

template <class T, class Block>
struct GgufExpertTiles {
  static_assert(Block::kElems == 256 && Block::kBytes % 16 == 0, "superblocks of 256 values in 16-byte units");
  static_assert(kMmaThreads == 2 * kMmaBN, "two threads a row, one 32-value unit each");
  static constexpr bool kF16 = std::is_same_v<T, __half>;
  static constexpr int kBK = 64;
  static constexpr int kStageBytes = 0;
  static constexpr int kWindowBytes = kMmaBN * Block::kBytes;  // one superblock per tile row
  static constexpr int kExtraBytes = 2 * kWindowBytes;
  static constexpr bool kDecodes = true;
  static constexpr int kMinBlocks = 2;

  const uint8_t* w;   // [E, N, K / 256 superblocks], 16-byte aligned rows
  int64_t row_bytes;  // K / 256 * Block::kBytes

  __device__ __forceinline__ void fetch(unsigned char*, unsigned char* extra, int e, int n0, int k0,
                                        const MatmulIdParams<T>& p, int tid) const {
    if (k0 % Block::kElems != 0) return;
    const int sb = k0 / Block::kElems;
    unsigned char* buf = extra + (sb & 1) * kWindowBytes;
    constexpr int kUnits = Block::kBytes / 16;
#pragma unroll 1  // once per superblock: not worth the registers of unrolled addresses
    for (int c = tid; c < kMmaBN * kUnits; c += kMmaThreads) {
      const int r = c / kUnits, j = c % kUnits;
      const int64_t row = expert_tile_row(e, p.n, n0, r);
      cp_async<16>(buf + r * Block::kBytes + j * 16, w + row * row_bytes + sb * Block::kBytes + j * 16);
    }
  }

  __device__ __forceinline__ const T* tile(const unsigned char*, const unsigned char* extra, T* dec, int, int, int k0,
                                           const MatmulIdParams<T>&, int tid) const {
    using D = gguf::PairDecoder<Block, kF16>;
    const int r = tid % kMmaBN, h = tid / kMmaBN;
    const int sb = k0 / Block::kElems, u = (k0 % Block::kElems) / 32 + h;  // this thread's unit
    const auto* b = reinterpret_cast<const uint8_t*>(extra + (sb & 1) * kWindowBytes + r * Block::kBytes);
    const auto sc = D::setup(b, u);
    uint32_t nat[16];
#pragma unroll
    for (int j = 0; j < 8; ++j) D::quad(sc, b, u, j, nat[2 * j], nat[2 * j + 1]);
    store_decoded_half(dec, r, h, nat);
    return dec;
  }
};

}  // namespace mlxn::kernels
