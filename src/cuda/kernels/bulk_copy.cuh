#pragma once
// Hopper bulk copies (global -> shared through the copy engine) and the mbarriers that count
// their bytes: what a producer warp needs to keep a shared-memory ring full while compute
// warps consume it. A stage's "full" barrier completes when its expected bytes have landed;
// its "empty" barrier when every consumer has released it. Phases alternate, so a waiter
// passes the parity of the phase it waits for: (use count of the slot) & 1.
#include <cstdint>

#include "cuda/kernels/mma.cuh"  // smem_addr

namespace mlxn::kernels {

// Once per barrier, by one thread, before a __syncthreads(): `count` arrivals complete a phase.
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// One arrival that also announces `bytes` of bulk copies to land in this phase.
__device__ __forceinline__ void mbar_arrive_expect(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
#endif
}

// Until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global src to shared dst,
// counted on `bar` when they land.
__device__ __forceinline__ void bulk_copy_g2s(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
#endif
}

// The box of a 2D tensor map (cuda/common/tensor_map.h; `map` the address of a __grid_constant__
// kernel parameter) whose first element is (x, y) into shared dst (128-byte aligned), counted on
// `bar` when it lands (the whole box, zeros included for any part outside the tensor).
__device__ __forceinline__ void tile_copy_g2s(void* dst, const void* map, int x, int y, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];\n" ::"r"(smem_addr(dst)),
      "l"(map), "r"(x), "r"(y), "r"(smem_addr(bar))
      : "memory");
#endif
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from shared src to global dst, in
// the issuing thread's current bulk group (bulk_commit closes it).
__device__ __forceinline__ void bulk_copy_s2g(void* dst, const void* src, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(smem_addr(src)),
               "r"(bytes)
               : "memory");
#endif
}

__device__ __forceinline__ void bulk_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}

// Until at most N of this thread's bulk groups are pending: kRead, until they have read their
// shared source (which may then be overwritten); else until their writes are done.
template <int N, bool kRead>
__device__ __forceinline__ void bulk_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (kRead)
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
  else
    asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// A warp's ring of kDepth shared-memory stages, each one box of a 2D tensor map, copied by the
// copy engine: lane 0 issues use i of the ring into stage i % kDepth, and the stage's barrier
// completes phase (i / kDepth) & 1 when the box has landed. The warp must be done reading a
// stage (a __syncwarp after its last read) before the use that refills it is issued.
template <int kStageBytes, int kDepth>
class WarpBoxRing {
 public:
  static_assert(kStageBytes % 128 == 0, "boxes land 128-byte aligned");
  // stages: kDepth * kStageBytes bytes, 128-byte aligned; full: kDepth barriers of this warp.
  __device__ WarpBoxRing(uint8_t* stages, uint64_t* full) : stages_(stages), full_(full) {
    if (threadIdx.x % 32 == 0)
      for (int j = 0; j < kDepth; ++j) mbar_init(full_ + j, 1);
    __syncwarp();
  }
  // The box at (x, y) of `map` (the address of a __grid_constant__ parameter) into use i's stage.
  __device__ void issue(int i, const void* map, int x, int y) const {
    if (threadIdx.x % 32 == 0) {
      uint64_t* bar = full_ + i % kDepth;
      mbar_arrive_expect(bar, kStageBytes);
      tile_copy_g2s(stages_ + (i % kDepth) * kStageBytes, map, x, y, bar);
    }
  }
  // Use i's stage, once its box has landed.
  __device__ const uint8_t* wait(int i) const {
    mbar_wait(full_ + i % kDepth, uint32_t(i / kDepth) & 1u);
    return stages_ + (i % kDepth) * kStageBytes;
  }

 private:
  uint8_t* stages_;
  uint64_t* full_;
};

}  // namespace mlxn::kernels
