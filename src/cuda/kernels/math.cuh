#pragma once
// Device-side building blocks shared by every kernel: float conversion, 16-byte vector
// access, warp and block reductions. Framework-free (raw pointers and sizes only).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace mlxn::kernels {

// Element i of an f32, f16 or bf16 array whose dtype is known only at run time (kind 0, 1, 2:
// cuda::float_kind), as a float: for per-row or per-group scalars, where one branch per load
// costs less than another instantiation of the kernel.
__device__ __forceinline__ float scalar_f32(const void* p, int kind, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  if (kind == 1) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}
// The same split in two: element i as raw bits (a 16-bit value zero-extended), and bits as a
// float, so that a kernel can issue the load early and take the value late (a conversion right
// after the load makes the warp wait for it there).
__device__ __forceinline__ uint32_t scalar_bits(const void* p, int kind, int64_t i) {
  if (kind == 0) return __float_as_uint(static_cast<const float*>(p)[i]);
  return static_cast<const uint16_t*>(p)[i];
}
__device__ __forceinline__ float scalar_from_bits(uint32_t bits, int kind) {
  if (kind == 0) return __uint_as_float(bits);
  if (kind == 1) return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  return __uint_as_float(bits << 16);  // bf16: the top half of an f32
}

template <class T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// The raw register type of an aligned access of BYTES (16 or 8).
template <int BYTES>
using RawOf = std::conditional_t<BYTES == 16, uint4, uint2>;

// N elements of T moved as one aligned access of BYTES (16, or 8).
template <class T, int BYTES = 16>
struct Vec {
  static_assert(BYTES == 16 || BYTES == 8, "vector accesses are 16 or 8 bytes");
  static constexpr int N = BYTES / int(sizeof(T));
  alignas(BYTES) T v[N];
};

template <class T>
__device__ __forceinline__ Vec<T> load_vec(const T* p) {
  Vec<T> r;
  *reinterpret_cast<uint4*>(r.v) = __ldg(reinterpret_cast<const uint4*>(p));
  return r;
}
// A 16-byte read of data read once by a kernel that also writes a stream. Deliberately a
// plain load: an evict-first read (`ld.global.cs`) beside normal-priority writes measured ~4
// points of copy bandwidth slower on an H200 than hints on neither side (bench/NOTES.md,
// run 25). Read-only kernels (the mat-vecs) keep their evict-first weight reads.
__device__ __forceinline__ uint4 load_once(const uint4* p) { return *p; }
// A 16-byte weight read of the mat-vecs: read once, so evict-first (`.cs`), with an L2 miss
// fetching a 128-byte line. Plain `ld.global.cs` measured as 256-byte lines do; 128-byte lines
// ran the Q4_0, Q4_K and Q5_K mat-vecs 1.5-2 points of copy bandwidth faster on an H200 and
// moe_experts 3% faster (bench/NOTES.md runs 141-142), as they did for the Q6_K tensor map.
__device__ __forceinline__ uint4 load_weight(const uint4* p) {
  uint4 r;
  asm("ld.global.cs.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}
template <class T, int BYTES>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, BYTES>& r) {
  *reinterpret_cast<RawOf<BYTES>*>(p) = *reinterpret_cast<const RawOf<BYTES>*>(r.v);
}

// A raw 16-byte piece of a row as its Vec<T>::N floats; bf16 by shift and mask. Kernels
// that keep rows in registers hold them as uint4 (or Vec<T>) and unpack at each use: ptxas
// gives each 16-bit element of a Vec<bf16/f16> carried across a loop a 32-bit register of
// its own, and keeps fewer unpacked copies live this way than with __bfloat162float.
template <class T, int NW>
__device__ __forceinline__ void unpack_words_f32(const uint32_t (&w)[NW], float (&f)[NW * 4 / sizeof(T)]) {
#pragma unroll
  for (int i = 0; i < NW; ++i) {
    if constexpr (sizeof(T) == 4) {
      f[i] = __uint_as_float(w[i]);
    } else if constexpr (std::is_same_v<T, __half>) {
      const float2 h = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      f[2 * i] = h.x;
      f[2 * i + 1] = h.y;
    } else {  // bf16 is the high half of an f32
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
}
template <class T>
__device__ __forceinline__ void unpack_f32(const uint4& r, float (&f)[Vec<T>::N]) {
  unpack_words_f32<T>({r.x, r.y, r.z, r.w}, f);
}
// The same for an 8-byte piece (Vec<T, 8>::N floats).
template <class T>
__device__ __forceinline__ void unpack_f32(const uint2& r, float (&f)[Vec<T, 8>::N]) {
  unpack_words_f32<T>({r.x, r.y}, f);
}

// N consecutive elements of a row from column c, as floats; columns at or past `end` read
// as 0. With kVec, c and end are multiples of N and the row allows 16-byte loads of S (the
// chunk is then whole 16-byte vectors: N * sizeof(S) a multiple of 16).
template <bool kVec, class S, int N>
__device__ __forceinline__ void load_chunk(const S* row, int c, int end, float (&dst)[N]) {
  if constexpr (kVec) {
    constexpr int VN = Vec<S>::N;
    static_assert(N % VN == 0, "vector width must divide the chunk");
    if (c < end) {
#pragma unroll
      for (int q = 0; q < N / VN; ++q) {
        const Vec<S> v = load_vec(row + c + q * VN);
#pragma unroll
        for (int j = 0; j < VN; ++j) dst[q * VN + j] = to_f32(v.v[j]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) dst[j] = 0.f;
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) dst[j] = c + j < end ? to_f32(row[c + j]) : 0.f;
  }
}

// Stores N floats as T from column c; with kVec one 16-byte vector (N = Vec<T>::N), else the
// columns before `end` one by one.
template <bool kVec, class T, int N>
__device__ __forceinline__ void store_chunk(T* row, int c, int end, const float (&src)[N]) {
  if constexpr (kVec) {
    static_assert(N == Vec<T>::N, "vector store is one 16-byte vector");
    if (c < end) {
      Vec<T> v;
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(src[j]);
      store_vec(row + c, v);
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (c + j < end) row[c + j] = from_f32<T>(src[j]);
  }
}

// Stores a warp's contiguous span in which lane l holds the V 16-byte pieces at bytes
// [16 V l, 16 V (l + 1)), through `stage` (32 V pieces of shared memory for this warp), so
// each store instruction writes 512 contiguous bytes. Stored lane by lane instead, every
// instruction writes 16-byte pieces at a 16 V-byte stride and half-fills its sectors, and L2
// becomes the limit (measured: a dequantize pass at 1.5 TB/s, 2.6x slower than this form).
// All 32 lanes must call it; span must be 16-byte aligned.
template <int V>
__device__ __forceinline__ void warp_store_span(void* span, uint4* stage, const uint4 (&piece)[V]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < V; ++j) stage[lane * V + j] = piece[j];
  __syncwarp();
#pragma unroll
  for (int j = 0; j < V; ++j) reinterpret_cast<uint4*>(span)[j * 32 + lane] = stage[j * 32 + lane];
  __syncwarp();  // the stage may be refilled by the next call
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Maximum over the warp of packed (key, index) words: argmax and top-k with ties broken by
// the packing.
__device__ __forceinline__ uint64_t warp_max_u64(uint64_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds >= 32 floats.
// Safe to call repeatedly with the same scratch (it synchronises before reuse).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + __expf(-x)); }

// Programmatic dependent launch (sm_90): a kernel launched with launch_pdl() may start while
// the previous kernel on its stream drains. pdl_wait() blocks until that kernel has finished
// and its writes are visible: call it before touching global memory. pdl_launch_dependents()
// lets the next such kernel start launching (it still waits for this one to finish).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace mlxn::kernels
