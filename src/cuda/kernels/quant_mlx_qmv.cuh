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
// The 4 warps of a block split K; partial sums meet in shared memory. Every row of x is
// multiplied in the same pass over W, so 8 rows cost little more than 1.
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
  bool x_vec;  // x rows 16-byte aligned (row stride and base)
  // mat-vec: rows of x staged in shared memory per unit, and the K segment they hold
  int64_t xs_rows, kseg;
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
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
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

// 16 x pairs for a lane from shared memory (32 consecutive values, 16-byte aligned).
template <class CT, int BITS>
__device__ __forceinline__ void smem_x_pairs(const CT* xr, uint32_t (&out)[16]) {
  using L = ChunkLayout<BITS>;
  uint32_t xw[16];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint4 v = reinterpret_cast<const uint4*>(xr)[i];
    xw[4 * i] = v.x;
    xw[4 * i + 1] = v.y;
    xw[4 * i + 2] = v.z;
    xw[4 * i + 3] = v.w;
  }
#pragma unroll
  for (int p = 0; p < 16; ++p) {
    const int lo = L::pair_lo(p), hi = L::pair_hi(p);
    const uint32_t sel = (lo & 1 ? 0x32u : 0x10u) | ((hi & 1 ? 0x76u : 0x54u) << 8);
    out[p] = __byte_perm(xw[lo / 2], xw[hi / 2], sel);
  }
}

template <int BITS>
struct QmvConfig {
  static constexpr int kWarps = 4;
  // Steps of 128 values in flight per warp (cp.async ring): 4 to 8 KB per warp.
  static constexpr int kStages = BITS <= 3 ? 8 : BITS <= 5 ? 6 : 4;
  // One stage of one warp: W [2 rows][32 lanes][BITS words], then [scale a, bias a,
  // scale b, bias b][32 lanes] as the 4-byte words that hold them.
  static constexpr int kStageWords = 2 * 32 * BITS + 4 * 32;
  static constexpr int kRingBytes = kWarps * kStages * kStageWords * 4;
  // x in shared memory: rows x (kseg + 8) values, kseg a multiple of 128 chosen so that
  // this many bytes hold it (K is walked in segments of kseg when it does not fit).
  static constexpr int kXsBudget = 36 * 1024;
};

// The word holding element gi of a 16- or 32-bit array (16-bit elements: the aligned word
// around it, and which half).
template <class ST>
__device__ __forceinline__ const uint32_t* word_of(const ST* e) {
  return reinterpret_cast<const uint32_t*>(reinterpret_cast<uintptr_t>(e) & ~uintptr_t(3));
}
template <class ST>
__device__ __forceinline__ float value_of(uint32_t word, const ST* e) {
  if constexpr (sizeof(ST) == 4) {
    return __uint_as_float(word);
  } else {
    const bool high = (reinterpret_cast<uintptr_t>(e) & 2) != 0;
    const uint16_t h = uint16_t(high ? word >> 16 : word & 0xffffu);
    return to_f32(*reinterpret_cast<const ST*>(&h));
  }
}

// CT: x's dtype (bf16/f16); ST: the scales' dtype; NT: token tiles of 8 (1 or 2).
// Dynamic shared memory: QmvConfig<BITS>::kRingBytes + p.xs_rows * (p.kseg + 8) * 2.
template <class CT, class ST, int BITS, int NT>
__global__ void __launch_bounds__(128) qmv_mma_kernel(QmmParams p) {
  using C = QmvConfig<BITS>;
  constexpr int NW = C::kWarps, S = C::kStages, SW = C::kStageWords;
  constexpr bool kFast = std::is_same_v<ST, CT> && BITS <= Pair<CT>::kMagicBits;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float red[NW][NT][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  uint32_t* ring = reinterpret_cast<uint32_t*>(smem_raw) + warp * S * SW;
  CT* xs = reinterpret_cast<CT*>(smem_raw + C::kRingBytes);
  const int64_t xpitch = p.kseg + 8;
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  const int64_t K = p.k, N = p.n, row_words = K * BITS / 32, groups = K / p.gs;
  const int64_t ra = n0 + g, rb = n0 + g + 8;
  const bool va = ra < N, vb = rb < N;
  const auto* scales = static_cast<const ST*>(p.scales);
  const auto* biases = static_cast<const ST*>(p.biases);
  const CT* x = static_cast<const CT*>(p.x);
  CT* out = static_cast<CT*>(p.out);
  const int64_t units = num_units(p, 8 * NT);
  for (int64_t u = blockIdx.y; u < units; u += gridDim.y) {
    const Unit un = unit_of(p, u, 8 * NT);
    if (un.rows == 0) {  // out-of-range expert: zeros
      if (threadIdx.x < 16 && n0 + threadIdx.x < N)
        out[un.out_row * p.out_stride + n0 + threadIdx.x] = from_f32<CT>(0.f);
      continue;
    }
    const int64_t wrow0 = un.expert * N;
    const uint32_t* wa_base = p.packed + (wrow0 + (va ? ra : 0)) * row_words;
    const uint32_t* wb_base = p.packed + (wrow0 + (vb ? rb : 0)) * row_words;
    const ST* sa_row = scales + (wrow0 + (va ? ra : 0)) * groups;
    const ST* ba_row = biases + (wrow0 + (va ? ra : 0)) * groups;
    const ST* sb_row = scales + (wrow0 + (vb ? rb : 0)) * groups;
    const ST* bb_row = biases + (wrow0 + (vb ? rb : 0)) * groups;
    float acc[NT][4] = {};
    for (int64_t seg0 = 0; seg0 < K; seg0 += p.kseg) {
      const int64_t seg_len = min(p.kseg, K - seg0);
      // x rows of this unit, values [seg0, seg0 + seg_len), into shared memory.
      __syncthreads();
      if (p.x_vec) {
        const int per_row = int(seg_len / 8);
        for (int r = 0; r < un.rows; ++r) {
          const uint4* src = reinterpret_cast<const uint4*>(x + (un.x_row + r) * p.x_stride + seg0);
          for (int c = threadIdx.x; c < per_row; c += blockDim.x)
            *reinterpret_cast<uint4*>(xs + r * xpitch + c * 8) = __ldg(src + c);
        }
      } else {
        for (int r = 0; r < un.rows; ++r) {
          const CT* src = x + (un.x_row + r) * p.x_stride + seg0;
          for (int c = threadIdx.x; c < int(seg_len); c += blockDim.x) xs[r * xpitch + c] = src[c];
        }
      }
      __syncthreads();

      // This warp's steps: js = warp, warp + NW, ... of the segment's 128-value steps.
      const int64_t nsteps = (seg_len + 127) / 128;
      const int count = nsteps > warp ? int((nsteps - warp + NW - 1) / NW) : 0;
      // k of this lane's chunk in step i of the warp (int: K < 2^30).
      auto k_of = [&](int i) { return int(seg0) + (warp + i * NW) * 128 + 32 * t; };
      auto issue = [&](int i) {
        uint32_t* st = ring + (i % S) * SW;
        if (i < count) {
          const int k = k_of(i);
          const bool kin = k < K, oka = kin && va, okb = kin && vb;
          const int grp = kin ? k >> p.gs_shift : 0;
          const int64_t word = (int64_t(k) * BITS) >> 5;
          cp_async_chunk<BITS>(st + lane * BITS, oka ? wa_base + word : p.packed, oka);
          cp_async_chunk<BITS>(st + (32 + lane) * BITS, okb ? wb_base + word : p.packed, okb);
          uint32_t* ss = st + 2 * 32 * BITS;
          cp_async<4>(ss + lane, word_of(sa_row + grp), oka);
          cp_async<4>(ss + 32 + lane, word_of(ba_row + grp), oka);
          cp_async<4>(ss + 64 + lane, word_of(sb_row + grp), okb);
          cp_async<4>(ss + 96 + lane, word_of(bb_row + grp), okb);
        }
        cp_async_commit();  // possibly empty: keeps the group count uniform
      };
#pragma unroll
      for (int i = 0; i < S; ++i) issue(i);
      for (int i = 0; i < count; ++i) {
        cp_async_wait<S - 1>();  // step i has landed (this lane's own copies)
        const uint32_t* st = ring + (i % S) * SW;
        const int k = k_of(i), kl = k - int(seg0);  // kl: within the segment
        const bool kin = k < K;
        uint32_t wa[BITS], wb[BITS];
#pragma unroll
        for (int j = 0; j < BITS; ++j) {
          wa[j] = st[lane * BITS + j];
          wb[j] = st[(32 + lane) * BITS + j];
        }
        const uint32_t* ss = st + 2 * 32 * BITS;
        const int grp = kin ? k >> p.gs_shift : 0;
        const float sa = value_of(ss[lane], sa_row + grp), ba = value_of(ss[32 + lane], ba_row + grp);
        const float sb = value_of(ss[64 + lane], sb_row + grp), bb = value_of(ss[96 + lane], bb_row + grp);
        uint32_t xb[NT][16];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const int tok = nt * 8 + g;
          if (tok < un.rows && kin) {
            smem_x_pairs<CT, BITS>(xs + tok * xpitch + kl, xb[nt]);
          } else {
#pragma unroll
            for (int j = 0; j < 16; ++j) xb[nt][j] = 0;
          }
        }
        uint32_t al[16], ah[16];
        dequant_pairs<CT, BITS, kFast>(wa, sa, ba, al);
        dequant_pairs<CT, BITS, kFast>(wb, sb, bb, ah);
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
            mma16816<CT>(acc[nt], al[2 * j], ah[2 * j], al[2 * j + 1], ah[2 * j + 1], xb[nt][2 * j], xb[nt][2 * j + 1]);
        issue(i + S);
      }
      cp_async_wait<0>();
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
