#pragma once
// MLX affine quantized mat-vec (decode: 1..16 rows of x) on the tensor cores, and a plain f32
// kernel for everything else the tensor-core paths do not take (x in f32, unaligned data).
//
// Tensor-core mat-vec: out^T = W x^T as mma.m16n8k16 with the 16 rows of a W tile as the
// A operand and up to 8 tokens of x as the B operand (unused token columns are zeros). A
// lane (g, t) (g = lane / 4, t = lane % 4) loads W rows g and g + 8 of its tile, 32 values
// (one chunk) each, at k = 128 s + 32 t for step s: 16-byte loads, every byte of a 128-value
// stretch of 16 rows read by one warp instruction. The chunk is dequantized in registers
// straight into A fragments (the pair order of quant_mlx.cuh); x is read in that same order.
// The 4 warps of a block split K; each issues the loads of several steps before computing
// them; partial sums meet in shared memory. Every row of x is multiplied in the same pass over W, so 8 rows cost
// little more than 1.
#include "cuda/kernels/quant_mlx.cuh"

namespace mlxn::kernels::qmlx {

// One quantized matmul launch. Rows of out are grouped in "units" that share one expert:
// plain matmul: unit u = rows [u * per_unit, ...) of x and out, expert 0;
// routed (ids set): unit u = slot u = (t, j) of ids [T, top_k]: expert ids[u], x row
// x_per_slot ? u : u / top_k, out row u.
struct QmmParams {
  const uint32_t* packed;
  const void* scales;
  const void* biases;
  int64_t experts, n, k;
  int gs, gs_shift;  // group size and its log2 (hot loops shift, never divide)
  const void* x;
  int64_t x_stride;
  void* out;
  int64_t out_stride;
  int64_t m;  // plain: rows of x and out
  const void* ids;
  bool ids_u32;
  int64_t top_k;
  bool x_per_slot;
  int64_t slots;
  bool x_vec;   // x rows 16-byte aligned (row stride and base)
  bool x_smem;  // mat-vec: stage the unit's x rows in shared memory (single-row units)
};

struct Unit {
  int64_t expert, x_row, out_row;
  int rows;  // 0: an out-of-range expert id (the unit's output rows are zeroed)
};

__device__ __forceinline__ int64_t num_units(const QmmParams& p, int per_unit) {
  return p.ids ? p.slots : (p.m + per_unit - 1) / per_unit;
}

__device__ __forceinline__ Unit unit_of(const QmmParams& p, int64_t u, int per_unit) {
  if (!p.ids) {
    const int64_t r0 = u * per_unit;
    return {0, r0, r0, int(min(int64_t(per_unit), p.m - r0))};
  }
  const int64_t e = load_id(p.ids, p.ids_u32, u, p.experts);
  return {e < 0 ? 0 : e, p.x_per_slot ? u : u / p.top_k, u, e < 0 ? 0 : 1};
}

template <class CT>
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<CT, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// The 16 pairs of x values (token row `xr`, chunk at k) in the chunk pair order of BITS.
template <class CT, int BITS>
__device__ __forceinline__ void load_x_pairs(const CT* __restrict__ xr, bool vec, uint32_t (&out)[16]) {
  using L = ChunkLayout<BITS>;
  uint32_t xw[16];
  if (vec) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr) + i);
      xw[4 * i] = v.x; xw[4 * i + 1] = v.y; xw[4 * i + 2] = v.z; xw[4 * i + 3] = v.w;
    }
  } else {
    const auto* h = reinterpret_cast<const uint16_t*>(xr);
#pragma unroll
    for (int i = 0; i < 16; ++i) xw[i] = uint32_t(h[2 * i]) | (uint32_t(h[2 * i + 1]) << 16);
  }
#pragma unroll
  for (int p = 0; p < 16; ++p) {
    const int lo = L::pair_lo(p), hi = L::pair_hi(p);
    const uint32_t sel = (lo & 1 ? 0x32u : 0x10u) | ((hi & 1 ? 0x76u : 0x54u) << 8);
    out[p] = __byte_perm(xw[lo / 2], xw[hi / 2], sel);
  }
}

// 16 x pairs for a lane from shared memory (32 consecutive values, 16-byte aligned).
template <class CT, int BITS>
__device__ __forceinline__ void smem_x_pairs(const CT* xr, uint32_t (&out)[16]) {
  using L = ChunkLayout<BITS>;
  uint32_t xw[16];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint4 v = reinterpret_cast<const uint4*>(xr)[i];
    xw[4 * i] = v.x; xw[4 * i + 1] = v.y; xw[4 * i + 2] = v.z; xw[4 * i + 3] = v.w;
  }
#pragma unroll
  for (int p = 0; p < 16; ++p) {
    const int lo = L::pair_lo(p), hi = L::pair_hi(p);
    const uint32_t sel = (lo & 1 ? 0x32u : 0x10u) | ((hi & 1 ? 0x76u : 0x54u) << 8);
    out[p] = __byte_perm(xw[lo / 2], xw[hi / 2], sel);
  }
}

// Copies rows [0, rows) of x (row stride x_stride, `cols` values) into shared memory rows
// `pitch` apart, 8 independent loads per thread in flight at a time.
template <class CT>
__device__ __forceinline__ void stage_x(CT* xs, int64_t pitch, const CT* x, int64_t x_stride, int rows, int cols,
                                        bool vec) {
  if (vec) {
    const int per_row = cols / 8, total = rows * per_row;
    for (int base = 0; base < total; base += 8 * int(blockDim.x)) {
      uint4 v[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int i = base + q * int(blockDim.x) + int(threadIdx.x);
        if (i < total) v[q] = __ldg(reinterpret_cast<const uint4*>(x + (i / per_row) * x_stride) + i % per_row);
      }
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int i = base + q * int(blockDim.x) + int(threadIdx.x);
        if (i < total) *reinterpret_cast<uint4*>(xs + (i / per_row) * pitch + (i % per_row) * 8) = v[q];
      }
    }
  } else {
    const int total = rows * cols;
    for (int base = 0; base < total; base += 8 * int(blockDim.x)) {
      CT v[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int i = base + q * int(blockDim.x) + int(threadIdx.x);
        if (i < total) v[q] = x[(i / cols) * x_stride + i % cols];
      }
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int i = base + q * int(blockDim.x) + int(threadIdx.x);
        if (i < total) xs[(i / cols) * pitch + i % cols] = v[q];
      }
    }
  }
}

template <int BITS>
struct QmvConfig {
  static constexpr int kWarps = 4;
  // Steps (128 values of K) whose loads a warp issues before computing: about 64 bytes of W
  // per lane in flight.
  static constexpr int kUnroll = BITS == 2 ? 8 : BITS == 3 ? 5 : BITS == 4 ? 4 : BITS == 5 ? 3 : 2;
};

// CT: x's dtype (bf16/f16); ST: the scales' dtype; NT: token tiles of 8 (1 or 2).
// x_smem (single-row units: M = 1, expert-routed slots): the row is staged in dynamic shared
// memory ((K + 8) values) once per unit, every warp reading it from there; otherwise each lane
// reads its 64 bytes of x per step straight from L2 (staging 8 rows per block costs more).
template <class CT, class ST, int BITS, int NT>
__global__ void __launch_bounds__(128) qmv_mma_kernel(QmmParams p) {
  using C = QmvConfig<BITS>;
  constexpr int NW = C::kWarps, U = C::kUnroll;
  constexpr bool kFast = std::is_same_v<ST, CT> && BITS <= Pair<CT>::kMagicBits;
  __shared__ float red[NW][NT][32][4];
  extern __shared__ __align__(16) unsigned char smem_raw[];
  CT* xs = reinterpret_cast<CT*>(smem_raw);  // [unit rows][K + 8]
  const int64_t xpitch = p.k + 8;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  const int64_t K = p.k, N = p.n, row_words = K * BITS / 32, groups = K / p.gs;
  const int64_t nsteps = (K + 127) / 128;
  const int64_t ra = n0 + g, rb = n0 + g + 8;
  const auto* scales = static_cast<const ST*>(p.scales);
  const auto* biases = static_cast<const ST*>(p.biases);
  const int64_t units = num_units(p, 8 * NT);
  for (int64_t u = blockIdx.y; u < units; u += gridDim.y) {
    const Unit un = unit_of(p, u, 8 * NT);
    CT* out = static_cast<CT*>(p.out);
    if (un.rows == 0) {  // out-of-range expert: zeros
      if (threadIdx.x < 16 && n0 + threadIdx.x < N) out[un.out_row * p.out_stride + n0 + threadIdx.x] = from_f32<CT>(0.f);
      continue;
    }
    const int64_t wrow0 = un.expert * N;
    const CT* x = static_cast<const CT*>(p.x);
    if (p.x_smem) {
      __syncthreads();  // the previous unit's readers of xs are done
      stage_x(xs, xpitch, x + un.x_row * p.x_stride, p.x_stride, un.rows, int(K), p.x_vec);
      __syncthreads();
    }
    const uint32_t* wa_base = p.packed + (wrow0 + ra) * row_words;
    const uint32_t* wb_base = p.packed + (wrow0 + rb) * row_words;
    const bool va = ra < N, vb = rb < N;
    float acc[NT][4] = {};
    for (int64_t s0 = int64_t(warp) * U; s0 < nsteps; s0 += NW * U) {
      uint32_t wa[U][BITS], wb[U][BITS];
      float sa[U], ba[U], sb[U], bb[U];
#pragma unroll
      for (int i = 0; i < U; ++i) {
        const int64_t k = (s0 + i) * 128 + 32 * t;
        const bool kin = k < K;
        if (kin && va) {
          load_chunk<BITS>(wa_base + k * BITS / 32, wa[i]);
          const int64_t gi = (wrow0 + ra) * groups + (k >> p.gs_shift);
          sa[i] = to_f32(scales[gi]);
          ba[i] = to_f32(biases[gi]);
        } else {
#pragma unroll
          for (int j = 0; j < BITS; ++j) wa[i][j] = 0;
          sa[i] = ba[i] = 0.f;
        }
        if (kin && vb) {
          load_chunk<BITS>(wb_base + k * BITS / 32, wb[i]);
          const int64_t gi = (wrow0 + rb) * groups + (k >> p.gs_shift);
          sb[i] = to_f32(scales[gi]);
          bb[i] = to_f32(biases[gi]);
        } else {
#pragma unroll
          for (int j = 0; j < BITS; ++j) wb[i][j] = 0;
          sb[i] = bb[i] = 0.f;
        }
      }
#pragma unroll
      for (int i = 0; i < U; ++i) {
        const int64_t kbase = (s0 + i) * 128;
        if (kbase >= K) break;  // the same for the whole warp
        const int64_t k = kbase + 32 * t;
        uint32_t xb[NT][16];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const int tok = nt * 8 + g;
          if (tok < un.rows && k < K) {
            if (p.x_smem) smem_x_pairs<CT, BITS>(xs + tok * xpitch + k, xb[nt]);
            else load_x_pairs<CT, BITS>(x + (un.x_row + tok) * p.x_stride + k, p.x_vec, xb[nt]);
          } else {
#pragma unroll
            for (int j = 0; j < 16; ++j) xb[nt][j] = 0;
          }
        }
        uint32_t al[16], ah[16];
        dequant_pairs<CT, BITS, kFast>(wa[i], sa[i], ba[i], al);
        dequant_pairs<CT, BITS, kFast>(wb[i], sb[i], bb[i], ah);
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
            mma16816<CT>(acc[nt], al[2 * j], ah[2 * j], al[2 * j + 1], ah[2 * j + 1], xb[nt][2 * j], xb[nt][2 * j + 1]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) red[warp][nt][lane][c] = acc[nt][c];
    __syncthreads();
    if (warp == 0) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          float v = 0.f;
#pragma unroll
          for (int w = 0; w < NW; ++w) v += red[w][nt][lane][c];
          // c0, c1: W row g, tokens 2t, 2t + 1; c2, c3: W row g + 8
          const int64_t n = n0 + g + (c >= 2 ? 8 : 0);
          const int tok = nt * 8 + 2 * t + (c & 1);
          if (n < N && tok < un.rows) out[(un.out_row + tok) * p.out_stride + n] = from_f32<CT>(v);
        }
    }
    __syncthreads();
  }
}

// Plain f32 kernel: one warp per W row, lanes over 32-value chunks of K, up to MT rows of x
// per unit. Any dtype, any alignment; the fallback of the tensor-core paths.
template <class XT, class ST, int BITS, int MT>
__global__ void __launch_bounds__(128) qmm_simt_kernel(QmmParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * 4 + warp;
  if (n >= p.n) return;
  const int64_t K = p.k, row_words = K * BITS / 32, groups = K / p.gs;
  const auto* scales = static_cast<const ST*>(p.scales);
  const auto* biases = static_cast<const ST*>(p.biases);
  const XT* x = static_cast<const XT*>(p.x);
  XT* out = static_cast<XT*>(p.out);
  const int64_t units = num_units(p, MT);
  for (int64_t u = blockIdx.y; u < units; u += gridDim.y) {
    const Unit un = unit_of(p, u, MT);
    if (un.rows == 0) {
      if (lane == 0) out[un.out_row * p.out_stride + n] = from_f32<XT>(0.f);
      continue;
    }
    const int64_t wrow = un.expert * p.n + n;
    float acc[MT] = {};
    for (int64_t c = lane; c < K / 32; c += 32) {
      uint32_t w[BITS];
      load_chunk_scalar<BITS>(p.packed + wrow * row_words + c * BITS, w);
      const int64_t gi = wrow * groups + ((c * 32) >> p.gs_shift);
      const float s = to_f32(scales[gi]), b = to_f32(biases[gi]);
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const float wv = fmaf(value_f32<BITS>(w, i), s, b);
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          const int mr = m < un.rows ? m : un.rows - 1;
          acc[m] = fmaf(to_f32(x[(un.x_row + mr) * p.x_stride + c * 32 + i]), wv, acc[m]);
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      const float v = warp_sum(acc[m]);
      if (lane == 0 && m < un.rows) out[(un.out_row + m) * p.out_stride + n] = from_f32<XT>(v);
    }
  }
}

}  // namespace mlxn::kernels::qmlx
