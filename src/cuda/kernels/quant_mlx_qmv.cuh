#pragma once
// MLX affine quantized mat-vec (decode: up to 8 rows of x per unit, and every expert-routed
// slot) on the tensor cores, and a plain f32 kernel for what the tensor-core path does not
// take (x in f32, a packed matrix that is not 16-byte aligned).
//
// Tensor-core mat-vec: out^T = W x^T as mma.m16n8k16 with the 16 rows of a W tile as the
// A operand and the 8 tokens of a unit as the B operand. A lane (g, t) (g = lane / 4,
// t = lane % 4) owns rows g and g + 8 of the tile and, in each 128-value step, the chunk at
// k = 128 s + 32 t: one 16-byte load per row at 4 bits, so a warp instruction reads 64
// contiguous bytes of each of 8 rows. The chunk is dequantized in registers straight into
// A fragments (the pair order of quant_mlx.cuh); x is read in that same order from an image
// of its rows that a small kernel writes first (qmv_prepare_x), so W needs no shuffles.
//
// The kernel is built for memory-level parallelism: W is the only DRAM stream and is read
// into a register ring kStages steps deep (the loads of the next steps are issued before the
// current one is consumed), registers are capped at 64 so that 8 blocks of 4 warps fit an SM,
// x's image is read through L1 (every block of an SM reads the same rows; no block barrier
// and no shared-memory copy, whatever the number of rows), and the 4 warps of a block split K
// and meet in shared memory only once, after the K loop.
#include "cuda/kernels/math.cuh"
#include "cuda/kernels/mma.cuh"
#include "cuda/kernels/quant_mlx.cuh"

namespace mlxn::kernels::qmlx {

// One quantized matmul launch. Rows of out are grouped in "units" that share one expert:
// plain matmul: unit u = rows [u * 8, ...) of x and out, expert 0;
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

// Block start of the tensor-core mat-vecs: the block's unit and lane row g's two W rows in the
// 16-row tile at n0. An out-of-range expert gets its outputs zeroed and false. Rows past N
// read a valid row instead: A's row r only feeds output row r, which is not stored. Row b is
// row a + rb: rb = 8, or 0 (row a again) in a partial last tile.
template <class CT>
__device__ __forceinline__ bool tile_rows(const QmmParams& p, int per_unit, int n0, int g, Unit& un, int64_t& ra,
                                          int& rb) {
  const int N = int(p.n);
  un = unit_of(p, blockIdx.x, per_unit);
  if (un.rows == 0) {
    if (threadIdx.x < 16 && n0 + int(threadIdx.x) < N)
      static_cast<CT*>(p.out)[un.out_row * p.out_stride + n0 + threadIdx.x] = from_f32<CT>(0.f);
    return false;
  }
  ra = un.expert * N + min(n0 + g, N - 1);
  rb = n0 + g + 8 < N ? 8 : 0;
  return true;
}

struct QmvConfig {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int kTokens = 8;  // rows of x per unit: the mma's n
  // 64 registers per thread: 8 blocks of 128 threads per SM.
  static constexpr int kMinBlocks = 8;
  // Steps of 128 values held in the register ring per lane: the deepest ring that fits 64
  // registers without spills (checked with ptxas -v for every instantiation), 2 rows x
  // 4 * BITS bytes per step. While one step is computed the other S - 1 are in flight, and
  // the load of step i + S is issued right after it. At 6 and 8 bits one step is already
  // 48-64 bytes per lane (six or four loads); 16-bit scales of the other 16-bit type (a rare
  // pairing) convert through f32 and leave room for one step only.
  template <class CT, class ST, int BITS>
  static constexpr int stages() {
    if constexpr (sizeof(ST) == 2 && !std::is_same_v<CT, ST>) return 1;
    return BITS >= 6 ? 1 : BITS <= 3 ? 3 : 2;
  }
  // x's image: rows of K rounded up to a whole step, zeros past K.
  static constexpr int64_t image_values(int64_t k) { return (k + 127) / 128 * 128; }
};

// x's image is in ChunkLayout<BITS>::slot order: a lane reads its chunk's 16 words with 4
// vector loads, and words 2m and 2m + 1 are mma m's B operand as they are. Pairs 8h..8h + 7
// of a chunk take their values from values 16h..16h + 15 (kVpw <= 16), so the reordering
// works on half chunks: 2 vectors in, 2 out.
template <class CT, int BITS>
__device__ __forceinline__ void stage_half_chunk(uint4 in0, uint4 in1, int half, CT* chunk) {
  using L = ChunkLayout<BITS>;
  static_assert(L::kVpw <= 16, "a pair's values must lie in one half chunk");
  const uint32_t src[8] = {in0.x, in0.y, in0.z, in0.w, in1.x, in1.y, in1.z, in1.w};
  uint32_t out[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    // pair 8 half + i of the chunk: values lo and hi, both in this half (the layout does not
    // depend on the half: pair_lo(8 + i) = 16 + pair_lo(i))
    const int lo = L::pair_lo(i), hi = L::pair_hi(i);
    out[i] = __byte_perm(src[lo / 2], src[hi / 2], (lo % 2 ? 0x0032u : 0x0010u) | (hi % 2 ? 0x7600u : 0x5400u));
  }
  uint4* dst = reinterpret_cast<uint4*>(chunk) + 2 * half;
  dst[0] = make_uint4(out[0], out[1], out[2], out[3]);
  dst[1] = make_uint4(out[4], out[5], out[6], out[7]);
}

// x's rows into their image (QmvConfig::image_values(k) values per row, slot order, zeros past
// K): one thread per half chunk of 16 values. Grid: (half chunks / 128, min(rows, 65535)).
// Launched with launch_pdl; it releases the mat-vec only after its own wait, so everything
// before it is complete when the mat-vec starts. (Releasing it first, as the integer mat-vec's
// x kernel does, measured 1-1.5 us slower here: blocks that start while the previous kernel
// drains fill the first free SMs up to 8 blocks each, unevenly for a grid of 6.8 per SM.)
template <class CT, int BITS>
__global__ void __launch_bounds__(128)
    qmv_prepare_x(const CT* x, int64_t x_stride, int64_t rows, int k, bool x_vec, CT* img) {
  using L = ChunkLayout<BITS>;
  pdl_wait();
  pdl_launch_dependents();
  const int pitch = int(QmvConfig::image_values(k)), c = int(blockIdx.x) * 128 + int(threadIdx.x);
  if (c >= pitch / 16) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const CT* src = x + r * x_stride;
    CT* chunk = img + r * pitch + 32 * (c / 2);
    if (x_vec) {
      const bool in = c < k / 16;  // K is a multiple of 32 (a group)
      const uint4* s4 = reinterpret_cast<const uint4*>(src) + 2 * c;
      const uint4 zero = make_uint4(0, 0, 0, 0);
      stage_half_chunk<CT, BITS>(in ? __ldg(s4) : zero, in ? __ldg(s4 + 1) : zero, c % 2, chunk);
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int v = 16 * c + i;
        chunk[L::slot(v & 31)] = v < k ? src[v] : from_f32<CT>(0.f);
      }
    }
  }
}

// CT: x's dtype (bf16/f16); ST: the scales' dtype. Grid: (units, row tiles of 16). p.x is
// x's image (qmv_prepare_x), p.x_stride its row pitch, QmvConfig::image_values(K).
template <class CT, class ST, int BITS>
__global__ void __launch_bounds__(QmvConfig::kThreads, QmvConfig::kMinBlocks) qmv_mma_kernel(QmmParams p) {
  using C = QmvConfig;
  constexpr int NW = C::kWarps, S = C::stages<CT, ST, BITS>();
  constexpr bool kFast = std::is_same_v<ST, CT> && BITS <= Pair<CT>::kMagicBits;
  __shared__ float red[NW][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  // 32-bit sizes (the launcher checks N, K < 2^31); 64-bit only for global offsets.
  const int n0 = int(blockIdx.y) * 16, N = int(p.n), K = int(p.k);
  const int row_words = K / 32 * BITS, groups = K >> p.gs_shift;
  CT* out = static_cast<CT*>(p.out);

  Unit un;
  int64_t ra;
  int rb;
  if (!tile_rows<CT>(p, C::kTokens, n0, g, un, ra, rb)) return;
  const uint32_t* wpa = p.packed + ra * row_words;
  const int64_t sg_a = ra * groups;  // scales and biases are indexed alike
  const int w_b = rb * row_words, s_b = rb * groups;
  // Token g of the unit is column g of B; columns past the unit's rows read row 0 and their
  // outputs (column g of the product only) are never stored.
  const int rows = un.rows;
  const CT* xr = static_cast<const CT*>(p.x) + (un.x_row + (g < rows ? g : 0)) * p.x_stride + 32 * t;

  // The register ring: codes and the group's scale and bias of both rows, per step.
  uint32_t wa[S][BITS], wb[S][BITS];
  ST sc[S][4];
  float acc[4] = {};

  // This warp's steps are the 128-value steps warp, warp + NW, ... of K: step i is at
  // k = 128 (warp + NW i). steps_below(s) counts those before step index s.
  auto steps_below = [&](int s) { return s > warp ? (s - warp + NW - 1) / NW : 0; };
  const int count = steps_below((K + 127) / 128);
  // Step i of this warp into one slot of the ring. Chunks past K read the row's first
  // chunk: x is zero there, and the codes only have to be finite numbers.
  auto load_step = [&](int i, uint32_t(&ca)[BITS], uint32_t(&cb)[BITS], ST(&s4)[4]) {
    const int k = (warp + i * NW) * 128 + 32 * t;
    const int kc = k < K ? k : 0;
    const uint32_t* wp = wpa + (kc / 32) * BITS;
    const int grp = kc >> p.gs_shift;
    load_chunk<BITS>(wp, ca);
    load_chunk<BITS>(wp + w_b, cb);
    const ST* sp = static_cast<const ST*>(p.scales) + sg_a + grp;
    const ST* bp = static_cast<const ST*>(p.biases) + sg_a + grp;
    s4[0] = __ldg(sp);
    s4[1] = __ldg(bp);
    s4[2] = __ldg(sp + s_b);
    s4[3] = __ldg(bp + s_b);
  };
  // The first steps' W loads go out before the wait: only x's image comes from the kernel
  // before this one (qmv_prepare_x, which waited on everything earlier before releasing it).
#pragma unroll
  for (int j = 0; j < S; ++j)
    if (j < count) load_step(j, wa[j], wb[j], sc[j]);
  pdl_wait();
  pdl_launch_dependents();

  for (int i0 = 0; i0 < count; i0 += S) {
#pragma unroll
    for (int j = 0; j < S; ++j) {
      const int i = i0 + j;
      if (i < count) {
        const Affine fa = make_affine<CT, ST, kFast>(sc[j][0], sc[j][1]);
        const Affine fb = make_affine<CT, ST, kFast>(sc[j][2], sc[j][3]);
        const uint4* xk = reinterpret_cast<const uint4*>(xr + (warp + i * NW) * 128);
        // The chunk's x in slot order: mma m's B operand is words 2m and 2m + 1, read 4 words
        // (2 mmas) at a time.
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const uint4 xw = __ldg(xk + v);
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int m = 2 * v + h;
            const uint32_t a[4] = {dequant_pair<CT, BITS, kFast>(wa[j], 2 * m, fa),
                                   dequant_pair<CT, BITS, kFast>(wb[j], 2 * m, fb),
                                   dequant_pair<CT, BITS, kFast>(wa[j], 2 * m + 1, fa),
                                   dequant_pair<CT, BITS, kFast>(wb[j], 2 * m + 1, fb)};
            mma_16816<CT>(acc, a, h ? xw.z : xw.x, h ? xw.w : xw.y);
          }
        }
        if (i + S < count) load_step(i + S, wa[j], wb[j], sc[j]);
      }
    }
  }

  // The 4 warps' partial sums of the same 16 x 8 outputs.
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane][c] = acc[c];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < NW; ++w) v += red[w][lane][c];
      // c0, c1: W row g, tokens 2t, 2t + 1; c2, c3: W row g + 8
      const int n = n0 + g + (c >= 2 ? 8 : 0);
      const int tok = 2 * t + (c & 1);
      // The unit's first output row, recomputed rather than kept live through the K loop.
      const int64_t out_row = p.ids ? int64_t(blockIdx.x) : int64_t(blockIdx.x) * C::kTokens;
      if (n < N && tok < rows) out[(out_row + tok) * p.out_stride + n] = from_f32<CT>(v);
    }
  }
}

// Plain f32 kernel: one warp per W row, lanes over 32-value chunks of K, up to MT rows of x
// per unit. Any dtype, any alignment; the fallback of the tensor-core path.
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
