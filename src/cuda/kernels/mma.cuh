#pragma once
// Tensor-core and asynchronous-copy building blocks shared by every kernel that stages tiles
// in shared memory (sm_80+ instructions, run on Hopper): cp.async copies, ldmatrix fragment
// loads and the m16n8k16 mma with f32 accumulation in bf16 or f16.
//
// Fragment layout of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16 x 16, row-major): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B (16 x 8):             b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C (16 x 8, f32):        c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace mlxn::kernels {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// BYTES (4, 8 or 16) global -> shared, asynchronously; 16-byte copies bypass L1 (.cg).
template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async moves 4, 8 or 16 bytes");
  if constexpr (BYTES == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(smem_addr(dst)), "l"(src), "n"(BYTES));
}
// 16 bytes of which only the first `bytes` (0..16) are read from src, the rest zero-filled: a
// copy of whole units over data that ends mid-unit.
__device__ __forceinline__ void cp_async16_part(void* dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
}
// cp_async with valid == false zeroing the destination (nothing is read from src, which must
// still be a mapped address).
template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src, bool valid) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async moves 4, 8 or 16 bytes");
  const int n = valid ? BYTES : 0;
  if constexpr (BYTES == 16)
    cp_async16_part(dst, src, n);
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_addr(dst)), "l"(src), "n"(BYTES), "r"(n));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) { cp_async<16>(dst, src, valid); }
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's groups are pending. The memory clobber keeps the
// compiler from moving shared-memory reads above it: a thread that reads back only what it
// copied itself needs no barrier after this.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// cp_async_wait<n>() for a count known only after unrolling (0 <= n < MAX; folds to one wait).
template <int MAX>
__device__ __forceinline__ void cp_async_wait_n(int n) {
  [&]<int... I>(std::integer_sequence<int, I...>) { ((n == I ? cp_async_wait<I>() : void()), ...); }
  (std::make_integer_sequence<int, MAX>{});
}

// Four 8x8 b16 matrices from shared memory into A/B fragments.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// Orders this thread's ordinary shared-memory writes (st.shared, cp.async) before later reads
// of them by the async proxy: bulk copies to global memory and wgmma operands (a barrier then
// orders them for the other threads).
__device__ __forceinline__ void fence_shared_for_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// The 16-bit operand type: __half when kF16, else __nv_bfloat16.
template <bool kF16>
using mma_operand_t = std::conditional_t<kF16, __half, __nv_bfloat16>;

// c += a . b on one m16n8k16 tile, CT (__nv_bfloat16 or __half) operands, f32 accumulators.
template <class CT>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  static_assert(std::is_same_v<CT, __nv_bfloat16> || std::is_same_v<CT, __half>, "bf16 or f16 operands");
  if constexpr (std::is_same_v<CT, __nv_bfloat16>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// x truncated to tf32 (its sign, exponent and top 10 mantissa bits): the part of a register
// an m16n8k8 tf32 mma reads.
__device__ __forceinline__ uint32_t tf32_head(float x) { return __float_as_uint(x) & 0xffffe000u; }

// c += a . b on one m16n8k8 tile, tf32 operands, f32 accumulators.
__device__ __forceinline__ void mma_1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace mlxn::kernels
