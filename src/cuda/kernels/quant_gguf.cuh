#pragma once
// GGUF block-quantized kernels: dequantize, embedding, the routed mat-vec on tensor cores,
// and the grouping of routed rows by expert. Blocks are decoded through the quant-traits
// table (ops/quant_gguf_blocks.h), shared with the CPU backend.
#include <type_traits>

#include "cuda/kernels/math.cuh"
#include "cuda/kernels/mma.cuh"
#include "ops/quant_gguf_blocks.h"

namespace mlxn::kernels {

// ---- dequantize and embedding: one thread per 32-value unit --------------------------------

template <class T, bool kVec>
__device__ __forceinline__ void store32(T* dst, const float (&v)[32]) {
  if constexpr (kVec) {
    constexpr int kN = Vec<T>::N;
#pragma unroll
    for (int q = 0; q < 32 / kN; ++q) {
      Vec<T> o;
#pragma unroll
      for (int j = 0; j < kN; ++j) o.v[j] = from_f32<T>(v[q * kN + j]);
      store_vec(dst + q * kN, o);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 32; ++i) dst[i] = from_f32<T>(v[i]);
  }
}

// out row r = decode(w row r). rows * units_per_row threads in all (grid-stride).
// kPacked (half outputs only, 16-byte aligned rows): the packed half decoder, whose scales
// are rounded to the half type first; otherwise exact f32 values rounded once. Packed dense
// outputs (rows back to back) are stored a warp's span at a time (warp_store_span) wherever
// the whole warp lies inside the matrix.
template <class B, class T, bool kVec, bool kPacked = false>
__global__ void __launch_bounds__(256)
    gguf_dequant_kernel(const uint8_t* __restrict__ w, int64_t w_row_bytes, T* __restrict__ out, int64_t out_row_stride,
                        int64_t rows, int64_t units_per_row) {
  __shared__ uint4 stage[kPacked ? 256 / 32 : 1][kPacked ? 32 * 4 : 1];
  const int64_t total = rows * units_per_row;
  const bool dense = out_row_stride == 32 * units_per_row;
  const int lane = threadIdx.x & 31;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / units_per_row, u = i - r * units_per_row;
    T* dst = out + r * out_row_stride + 32 * u;
    if constexpr (kPacked) {
      static_assert(kVec && sizeof(T) == 2, "packed output needs aligned half rows");
      constexpr int kUnits = B::kElems / 32;
      uint32_t pr[16];
      gguf::decode_pairs<B, std::is_same_v<T, __half>>(w + r * w_row_bytes + (u / kUnits) * B::kBytes, int(u % kUnits),
                                                       pr);
      uint4 piece[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) piece[q] = make_uint4(pr[4 * q], pr[4 * q + 1], pr[4 * q + 2], pr[4 * q + 3]);
      // Warp-uniform: the warp's 32 units are consecutive (grid-stride by whole blocks).
      if (dense && i - lane + 31 < total) {
        warp_store_span(out + (i - lane) * 32, stage[threadIdx.x / 32], piece);
      } else {
#pragma unroll
        for (int q = 0; q < 4; ++q) reinterpret_cast<uint4*>(dst)[q] = piece[q];
      }
    } else {
      float v[32];
      gguf::decode_unit<B>(w + r * w_row_bytes, u, v);
      store32<T, kVec>(dst, v);
    }
  }
}

template <class I>
__device__ __forceinline__ int64_t load_id(const I* ids, int64_t i) {
  return int64_t(ids[i]);
}

// out row i = decode(table row ids[i]) * scale; rows whose id is outside [0, vocab) are zero.
template <class B, class T, class I, bool kVec>
__global__ void __launch_bounds__(256)
    gguf_embedding_kernel(const uint8_t* __restrict__ table, int64_t row_bytes, int64_t vocab,
                          const I* __restrict__ ids, T* __restrict__ out, int64_t out_row_stride, int64_t count,
                          int64_t units_per_row, float scale) {
  const int64_t total = count * units_per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / units_per_row, u = i - r * units_per_row;
    const int64_t id = load_id(ids, r);
    float v[32];
    if (id >= 0 && id < vocab) {
      gguf::decode_unit<B>(table + id * row_bytes, u, v);
#pragma unroll
      for (int j = 0; j < 32; ++j) v[j] *= scale;
    } else {
#pragma unroll
      for (int j = 0; j < 32; ++j) v[j] = 0.f;
    }
    store32<T, kVec>(out + r * out_row_stride + 32 * u, v);
  }
}

// Plain element conversion (float weights of another dtype before a GEMM).
template <class S, class D>
__global__ void __launch_bounds__(256) convert_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<D>(to_f32(src[i]));
}

// The same into rows `dst_row_stride` apart: src [rows, k] contiguous.
template <class S, class D>
__global__ void __launch_bounds__(256) convert_rows_kernel(const S* __restrict__ src, D* __restrict__ dst,
                                                           int64_t dst_row_stride, int64_t rows, int64_t k) {
  const int64_t n = rows * k;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k;
    dst[r * dst_row_stride + (i - r * k)] = from_f32<D>(to_f32(src[i]));
  }
}

// ---- grouping routed rows by expert ------------------------------------------------------
// One block. For P = T * top_k routed rows with expert ids: offsets[e] .. offsets[e + 1] is
// the range of `order` holding the rows routed to expert e (bucket `experts` collects rows
// whose id is out of range), and active[0 .. n_active) lists the non-empty buckets.
// Shared memory: 2 * (experts + 1) ints.
template <class I>
__global__ void __launch_bounds__(1024)
    gguf_group_by_expert_kernel(const I* __restrict__ ids, int pairs, int experts, int* __restrict__ offsets,
                                int* __restrict__ order, int* __restrict__ active, int* __restrict__ n_active) {
  extern __shared__ int sh[];
  const int buckets = experts + 1;
  int* cnt = sh;
  int* cur = sh + buckets;
  __shared__ int warp_tot[32];
  __shared__ int n_act;
  for (int e = threadIdx.x; e < buckets; e += blockDim.x) cnt[e] = 0;
  if (threadIdx.x == 0) n_act = 0;
  __syncthreads();
  auto bucket_of = [&](int p) {
    const int64_t id = load_id(ids, p);
    return id >= 0 && id < experts ? int(id) : experts;
  };
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) atomicAdd(&cnt[bucket_of(p)], 1);
  __syncthreads();
  // Exclusive scan of cnt: each thread scans a contiguous segment, then the segment totals.
  const int per = (buckets + blockDim.x - 1) / blockDim.x;
  const int b0 = threadIdx.x * per, b1 = min(b0 + per, buckets);
  int seg = 0;
  for (int e = b0; e < b1; ++e) seg += cnt[e];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = seg;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) warp_tot[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) >> 5;
    int t = lane < nw ? warp_tot[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += v;
    }
    warp_tot[lane] = t;  // inclusive totals per warp
  }
  __syncthreads();
  int run = incl - seg + (warp > 0 ? warp_tot[warp - 1] : 0);
  for (int e = b0; e < b1; ++e) {
    const int c = cnt[e];
    offsets[e] = run;
    cur[e] = run;
    if (c > 0) active[atomicAdd(&n_act, 1)] = e;
    run += c;
  }
  if (threadIdx.x == blockDim.x - 1) offsets[buckets] = run;
  __syncthreads();
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) order[atomicAdd(&cur[bucket_of(p)], 1)] = p;
  if (threadIdx.x == 0) *n_active = n_act;
}

// ---- routed mat-vec on tensor cores -------------------------------------------------------
// A block owns 16 weight rows (the M side of mma.m16n8k16) and streams them over K in
// stages copied to shared memory with 16-byte cp.async (double-buffered). Each warp decodes
// 32-value units of its 16 rows from shared memory straight into the A fragment layout, and
// multiplies them with up to 8 * NT input rows (the N side), so decode costs the same for 1
// or 8 input rows: the batch costs tensor-core issue slots only.
//
// Fragment k mapping: lane (g = lane / 4, q = lane % 4) decodes unit q of the four units of a
// macro step for weight rows g and g + 8; in mma step s (0..7) its k-slots {2q, 2q + 1}
// hold unit values {4s, 4s + 1} and slots {2q + 8, 2q + 9} values {4s + 2, 4s + 3}. The
// input fragment uses the same mapping, so each product sums every k exactly once.

template <class B>
struct MatvecStage {
  // Blocks per stage: a multiple of 8, so a stage of any even-sized block is 16-byte whole.
  static constexpr int kBlocks = B::kElems == 256 ? 8 : (B::kBytes > 64 ? 8 : 32);
  static constexpr int kUnitsPerBlock = B::kElems / 32;
  static constexpr int kUnits = kBlocks * kUnitsPerBlock;
  static constexpr int kBytes = kBlocks * B::kBytes;
  static constexpr int kPitch = (kBytes + 15) / 16 * 16 + 16;  // +16: rows start in other banks
  static constexpr int kRows = 16;
  static constexpr int kSmem = 2 * kRows * kPitch;
};

struct MatvecParams {
  const uint8_t* w;  // expert 0, row 0
  int64_t w_row_bytes;
  int64_t w_expert_bytes;
  const void* x;
  int64_t x_row_stride;  // elements
  void* out;
  int64_t out_row_stride;  // elements
  int n, k;
  int pairs;  // plain matmul: rows of x and out
  int top_k;
  bool x_per_slot;
  int experts;
  const int* offsets;  // null for a plain matmul
  const int* order;
  const int* active;
  const int* n_active;
  bool copy16;  // weight rows are 16-byte aligned: 16-byte cp.async
  bool x_vec;   // input rows are 16-byte aligned: vector loads
};

// Copies `rows` rows of `bytes` (even) bytes, source rows row_bytes apart, to shared rows
// `pitch` apart: whole G-byte chunks as asynchronous copies (G = 16 or 4: the caller checked
// that the source rows and stages are G-aligned), the remainder 2 bytes at a time (all of it
// when G = 2).
template <int G>
__device__ __forceinline__ void stage_copy(uint8_t* smem, int pitch, const uint8_t* src, int64_t row_bytes, int rows,
                                           int bytes) {
  int done = 0;
  if constexpr (G > 2) {
    const int chunks = bytes / G;
    for (int i = threadIdx.x; i < rows * chunks; i += blockDim.x) {
      const int r = i / chunks, c = i - r * chunks;
      cp_async<G>(smem + r * pitch + c * G, src + r * row_bytes + c * G);
    }
    done = chunks * G;
  }
  const int halves = (bytes - done) / 2;
  for (int i = threadIdx.x; i < rows * halves; i += blockDim.x) {
    const int r = i / halves, c = i - r * halves;
    *reinterpret_cast<uint16_t*>(smem + r * pitch + done + 2 * c) =
        *reinterpret_cast<const uint16_t*>(src + r * row_bytes + done + 2 * c);
  }
}

template <bool kF16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t r;
  if constexpr (kF16) {
    const __half2 h = __floats2half2_rn(lo, hi);
    r = *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    r = *reinterpret_cast<const uint32_t*>(&h);
  }
  return r;
}

// 8 consecutive inputs at p as 4 operand pairs in fragment order: b[2s] = (x[4s], x[4s+1]),
// b[2s + 1] = (x[4s + 2], x[4s + 3]). When the input type is the operand type the pairs are
// the raw 32-bit words.
template <class T, bool kF16, bool kVec>
__device__ __forceinline__ void load_x8(const T* p, uint32_t (&b)[4]) {
  if constexpr (kVec && !std::is_same_v<T, float>) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    b[0] = v.x, b[1] = v.y, b[2] = v.z, b[3] = v.w;
  } else if constexpr (kVec) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(p) + i);
      b[2 * i] = pack2<kF16>(v.x, v.y);
      b[2 * i + 1] = pack2<kF16>(v.z, v.w);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) b[i] = pack2<kF16>(to_f32(p[2 * i]), to_f32(p[2 * i + 1]));
  }
}

// 32 consecutive inputs at p as 16 operand pairs, in the same order: four load_x8 pieces.
template <class T, bool kF16, bool kVec>
__device__ __forceinline__ void load_x32(const T* p, uint32_t (&b)[16]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) load_x8<T, kF16, kVec>(p + 8 * q, *reinterpret_cast<uint32_t(*)[4]>(b + 4 * q));
}

// Shared memory of the mat-vec: two stage buffers, then the cross-warp reduction area.
template <class B, int NT>
constexpr int matvec_smem() {
  return MatvecStage<B>::kSmem + 4 * 16 * 8 * NT * int(sizeof(float));
}

// Persistent blocks: block b takes work items b, b + gridDim.x, ... (item = 16-row tile x
// pass of up to 8 * NT input rows) and streams their stages through one double-buffered
// pipeline, so the next tile's first stage is in flight while the last one is computed.
template <class B, class T, int NT>
__global__ void __launch_bounds__(128) gguf_matvec_kernel(MatvecParams p) {
  using S = MatvecStage<B>;
  constexpr bool kF16 = std::is_same_v<T, __half>;
  constexpr int kCols = 8 * NT;  // input rows per pass
  extern __shared__ __align__(16) uint8_t smem[];
  float* red = reinterpret_cast<float*>(smem + S::kSmem);  // [4 warps][16][kCols]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int tiles = (p.n + 15) / 16;

  // Which routed rows this block serves: a bucket of the expert grouping, or all of them.
  int bucket = 0, begin = 0, count = p.pairs;
  if (p.offsets) {
    if (int(blockIdx.y) >= *p.n_active) return;
    bucket = p.active[blockIdx.y];
    begin = p.offsets[bucket];
    count = p.offsets[bucket + 1] - begin;
  }
  auto pair_at = [&](int i) { return p.offsets ? p.order[begin + i] : i; };
  T* out = static_cast<T*>(p.out);
  if (bucket == p.experts) {  // rows routed to an out-of-range expert id: zeros
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const int n0 = tile * 16, rows = min(16, p.n - n0);
      for (int i = threadIdx.x; i < count * 16; i += blockDim.x) {
        const int c = i / 16, r = i % 16;
        if (r < rows) out[int64_t(pair_at(c)) * p.out_row_stride + n0 + r] = from_f32<T>(0.f);
      }
    }
    return;
  }
  const int groups = (count + kCols - 1) / kCols;
  const int items = tiles * groups;
  if (int(blockIdx.x) >= items) return;
  const uint8_t* wexp = p.w + int64_t(bucket) * p.w_expert_bytes;
  const int kblocks = p.k / B::kElems;
  const int stages = (kblocks + S::kBlocks - 1) / S::kBlocks;
  const T* x = static_cast<const T*>(p.x);
  // Item of the j-th stage this block runs (>= items: past the end).
  auto item_of = [&](int j) { return int(blockIdx.x) + (j / stages) * int(gridDim.x); };

  auto issue = [&](int j) {
    const int it = item_of(j);
    if (it < items) {
      const int st = j % stages, n0 = (it % tiles) * 16;
      const int nb = min(S::kBlocks, kblocks - st * S::kBlocks);
      uint8_t* dst = smem + (j & 1) * S::kRows * S::kPitch;
      const uint8_t* src = wexp + int64_t(n0) * p.w_row_bytes + int64_t(st) * S::kBytes;
      const int rows = min(16, p.n - n0);
      if (p.copy16)
        stage_copy<16>(dst, S::kPitch, src, p.w_row_bytes, rows, nb * B::kBytes);
      else
        stage_copy<2>(dst, S::kPitch, src, p.w_row_bytes, rows, nb * B::kBytes);
    }
    cp_async_commit();  // possibly empty: keeps one group per stage
  };

  const T* xrow[NT];
  float acc[NT][4];
  issue(0);
  for (int j = 0;; ++j) {
    const int it = item_of(j);
    if (it >= items) break;
    const int tile = it % tiles, c0 = (it / tiles) * kCols, st = j % stages;
    const int n0 = tile * 16;
    if (st == 0) {
      // Input rows of this pass for n8-tile jj: column 8 jj + g.
#pragma unroll
      for (int jj = 0; jj < NT; ++jj) {
        const int c = c0 + 8 * jj + g;
        xrow[jj] = nullptr;
        if (c < count) {
          const int pr = pair_at(c);
          const int xr = p.x_per_slot || !p.offsets ? pr : pr / p.top_k;
          xrow[jj] = x + int64_t(xr) * p.x_row_stride;
        }
        acc[jj][0] = acc[jj][1] = acc[jj][2] = acc[jj][3] = 0.f;
      }
    }
    issue(j + 1);
    cp_async_wait<1>();
    __syncthreads();
    const uint8_t* buf = smem + (j & 1) * S::kRows * S::kPitch;
    const int units = min(S::kBlocks, kblocks - st * S::kBlocks) * S::kUnitsPerBlock;
    const int kst = st * S::kBlocks * B::kElems;
    for (int ms = warp; ms * 4 < units; ms += 4) {
      const int u = ms * 4 + q;
      const bool valid = u < units;
      uint32_t pa[16], pb[16];  // unit u of weight rows g and g + 8, packed pairs
      if (valid) {
        const int blk = u / S::kUnitsPerBlock, sub = u % S::kUnitsPerBlock;
        gguf::decode_pairs<B, kF16>(buf + g * S::kPitch + blk * B::kBytes, sub, pa);
        gguf::decode_pairs<B, kF16>(buf + (g + 8) * S::kPitch + blk * B::kBytes, sub, pb);
      } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) pa[i] = pb[i] = 0u;
      }
      const int kx = kst + u * 32;
#pragma unroll
      for (int jj = 0; jj < NT; ++jj) {
        uint32_t b[16];
        if (valid && xrow[jj]) {
          if (p.x_vec)
            load_x32<T, kF16, true>(xrow[jj] + kx, b);
          else
            load_x32<T, kF16, false>(xrow[jj] + kx, b);
        } else {
#pragma unroll
          for (int i = 0; i < 16; ++i) b[i] = 0u;
        }
#pragma unroll
        for (int s2 = 0; s2 < 8; ++s2) {
          const uint32_t a[4] = {pa[2 * s2], pb[2 * s2], pa[2 * s2 + 1], pb[2 * s2 + 1]};
          mma_16816<mma_operand_t<kF16>>(acc[jj], a, b[2 * s2], b[2 * s2 + 1]);
        }
      }
    }
    __syncthreads();  // everyone is done with this buffer before it is refilled
    if (st == stages - 1) {
      // Sum the four warps' partial products, then write out[pair][n0 + r].
      float* rw = red + warp * 16 * kCols;
#pragma unroll
      for (int jj = 0; jj < NT; ++jj) {
        rw[g * kCols + 8 * jj + 2 * q] = acc[jj][0];
        rw[g * kCols + 8 * jj + 2 * q + 1] = acc[jj][1];
        rw[(g + 8) * kCols + 8 * jj + 2 * q] = acc[jj][2];
        rw[(g + 8) * kCols + 8 * jj + 2 * q + 1] = acc[jj][3];
      }
      __syncthreads();
      const int rows = min(16, p.n - n0);
      for (int i = threadIdx.x; i < 16 * kCols; i += blockDim.x) {
        const int c = i / 16, r = i % 16;
        if (r < rows && c0 + c < count) {
          const int o = r * kCols + c;
          const float v = red[o] + red[16 * kCols + o] + red[32 * kCols + o] + red[48 * kCols + o];
          out[int64_t(pair_at(c0 + c)) * p.out_row_stride + n0 + r] = from_f32<T>(v);
        }
      }
      // The next write of `red` comes after at least one more stage and its barriers.
    }
  }
  cp_async_wait<0>();
}

}  // namespace mlxn::kernels
