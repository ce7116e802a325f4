#pragma once
// Hopper warpgroup tensor-core products (wgmma, sm_90a): a warpgroup of four warps multiplies a
// 64-row A by a B, both read by the tensor cores straight from shared memory, into f32
// accumulators in registers, asynchronously. Against per-warp mma.sync each operand tile
// leaves shared memory once per warpgroup instead of once per warp, and no operand passes
// through registers.
//
// Operands live in shared memory in one of two layouts: "blocked" (blocked_offset, no swizzle:
// 8 x 8 core matrices of 128 contiguous bytes, for tiles that threads write pair by pair) and
// "swizzled" (swizzled_offset, 128-byte swizzle, for tiles copied in whole rows). One stored
// tile serves as either operand orientation: with its columns as the product's K it is K-major
// (A [M][K] or B [N][K]); with its rows as K it is MN-major (A^T, or B [K][N]).
//
// Accumulator layout of m64nNk16 (warp w of the warpgroup, g = lane / 4, t = lane % 4):
// d[4 j + e] is row 16 w + g + 8 (e >> 1), column 8 j + 2 t + (e & 1): per warp the
// mma.m16n8 C layout of mma.cuh, over N / 8 column tiles.
//
// The instructions exist only in sm_90a code; other targets compile a trap, and callers run
// these kernels only on compute capability 9.0 (the launcher checks).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/kernels/mma.cuh"

namespace mlxn::kernels {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MLXN_WGMMA 1
#else
#define MLXN_WGMMA 0
#endif

// A shared-memory matrix descriptor: start address, leading and stride byte offsets (the core
// matrices' steps along K and along M/N for a K-major operand, the reverse for an MN-major
// one, as PTX defines them) and the layout (0: no swizzle, 1: 128-byte swizzle).
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo, uint32_t layout) {
  return uint64_t((smem_addr(p) >> 4) & 0x3fff) | uint64_t((lbo >> 4) & 0x3fff) << 16 |
         uint64_t((sbo >> 4) & 0x3fff) << 32 | uint64_t(layout) << 62;
}

// Element offset of (row, col) in a blocked [rows][cols] tile (cols % 8 == 0).
__host__ __device__ constexpr int blocked_offset(int row, int col, int cols) {
  return (row >> 3) * cols * 8 + (col >> 3) * 64 + (row & 7) * 8 + (col & 7);
}

// The shared-memory matrix descriptor of a blocked tile of 16-bit elements with `cols`
// columns, starting at `p` (16-byte aligned; row and column blocks 8 apart in p's tile). Its
// columns as K (K-major): core matrices 128 bytes apart along K, 16 * cols along M/N. Its rows
// as K (MN-major): the reverse.
__device__ __forceinline__ uint64_t blocked_desc(const void* p, int cols, bool rows_are_k) {
  const uint32_t along_cols = 128, along_rows = uint32_t(16 * cols);
  return rows_are_k ? smem_desc(p, along_rows, along_cols, 0) : smem_desc(p, along_cols, along_rows, 0);
}

// Element offset of (row, col) in a 128-byte-swizzled [64][cols] tile (cols % 64 == 0), the
// layout of TMA's 128-byte swizzle: 64-column strips of 64 rows x 128 bytes one after another,
// and within a strip the 16-byte chunk c of row r at chunk c ^ (r % 8). A warp copying two
// whole rows writes all 32 banks; the blocked layout would put a row's 16 pieces in 4 banks.
// The strips must sit at 1024-byte aligned addresses (the hardware swizzles address bits).
__host__ __device__ constexpr int swizzled_offset(int row, int col) {
  return (col >> 6) * 64 * 64 + row * 64 + ((((col >> 3) & 7) ^ (row & 7)) << 3) + (col & 7);
}

// The descriptor of a 64 x 64 strip of a swizzled tile at `p` (a k = 16 step within it: p
// advanced by 16 columns, K-major; or by 16 rows, MN-major). K-major: its columns as K, rows
// as M/N (8-row groups 1024 bytes apart). MN-major: its rows as K (1024 bytes a group of 8),
// its 64 columns as M/N (the next strip, were M wider, 64 x 128 bytes on).
__device__ __forceinline__ uint64_t swizzled_desc(const void* p, bool rows_are_k) {
  return smem_desc(p, rows_are_k ? 64 * 128 : 16, 1024, 1);
}

// Element offset of k = 16 step s along the columns of a swizzled tile (K-major): 4 steps a
// 64-column strip.
__host__ __device__ constexpr int swizzled_k_step(int s) { return (s / 4) * 64 * 64 + (s % 4) * 16; }

// Swizzled tiles sit at 1024-byte aligned addresses: a kernel asks for kSwizzleSlack bytes of
// dynamic shared memory more than its layout and starts the layout swizzle_pad(base) bytes in.
inline constexpr int kSwizzleSlack = 1024;
__device__ __forceinline__ uint32_t swizzle_pad(const void* base) { return (1024 - (smem_addr(base) & 1023)) & 1023; }

// Before the first wgmma of a sequence whose accumulators other instructions wrote.
__device__ __forceinline__ void wgmma_fence() {
#if MLXN_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

// Closes the warpgroup's issued wgmma into a group.
__device__ __forceinline__ void wgmma_commit() {
#if MLXN_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most N of the warpgroup's groups are pending (the older ones complete: their
// accumulators may be read).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if MLXN_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// Closes the warpgroup's issued wgmma into a group, and waits for all groups to complete.
__device__ __forceinline__ void wgmma_commit_and_wait() {
  wgmma_commit();
  wgmma_wait<0>();
}

// d (64 x N, f32, N = 32 or 64) = (accumulate ? d : 0) + A . B for one k16 step; A from
// descriptor a (K-major unless kTransA), B from b (K-major unless kTransB); CT bf16 or f16.
template <class CT, int N, bool kTransA, bool kTransB>
__device__ __forceinline__ void wgmma_64xN(float (&d)[N / 2], uint64_t a, uint64_t b, bool accumulate) {
  static_assert(std::is_same_v<CT, __nv_bfloat16> || std::is_same_v<CT, __half>, "bf16 or f16 operands");
  static_assert(N == 32 || N == 64, "n = 32 or 64");
#if MLXN_WGMMA
  constexpr bool kBf16 = std::is_same_v<CT, __nv_bfloat16>;
#define MLXN_WGMMA_HEAD(SHAPE, TYPE, ARGS) \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" #ARGS ", 0;\nwgmma.mma_async.sync.aligned." SHAPE ".f32." TYPE "." TYPE " "
#define MLXN_D16(o)                                                                                               \
  "+f"(d[o + 0]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), "+f"(d[o + 6]), \
      "+f"(d[o + 7]), "+f"(d[o + 8]), "+f"(d[o + 9]), "+f"(d[o + 10]), "+f"(d[o + 11]), "+f"(d[o + 12]),          \
      "+f"(d[o + 13]), "+f"(d[o + 14]), "+f"(d[o + 15])
#define MLXN_REGS16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define MLXN_REGS32 MLXN_REGS16 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
  if constexpr (N == 32) {
    if constexpr (kBf16)
      asm volatile(MLXN_WGMMA_HEAD("m64n32k16", "bf16", 18) "{" MLXN_REGS16 "}, %16, %17, p, 1, 1, %19, %20;\n}\n"
                   : MLXN_D16(0)
                   : "l"(a), "l"(b), "r"(int(accumulate)), "n"(int(kTransA)), "n"(int(kTransB)));
    else
      asm volatile(MLXN_WGMMA_HEAD("m64n32k16", "f16", 18) "{" MLXN_REGS16 "}, %16, %17, p, 1, 1, %19, %20;\n}\n"
                   : MLXN_D16(0)
                   : "l"(a), "l"(b), "r"(int(accumulate)), "n"(int(kTransA)), "n"(int(kTransB)));
  } else {
    if constexpr (kBf16)
      asm volatile(MLXN_WGMMA_HEAD("m64n64k16", "bf16", 34) "{" MLXN_REGS32 "}, %32, %33, p, 1, 1, %35, %36;\n}\n"
                   : MLXN_D16(0), MLXN_D16(16)
                   : "l"(a), "l"(b), "r"(int(accumulate)), "n"(int(kTransA)), "n"(int(kTransB)));
    else
      asm volatile(MLXN_WGMMA_HEAD("m64n64k16", "f16", 34) "{" MLXN_REGS32 "}, %32, %33, p, 1, 1, %35, %36;\n}\n"
                   : MLXN_D16(0), MLXN_D16(16)
                   : "l"(a), "l"(b), "r"(int(accumulate)), "n"(int(kTransA)), "n"(int(kTransB)));
  }
#undef MLXN_REGS32
#undef MLXN_REGS16
#undef MLXN_D16
#undef MLXN_WGMMA_HEAD
#else
  (void)d, (void)a, (void)b, (void)accumulate;
  __trap();
#endif
}

}  // namespace mlxn::kernels
