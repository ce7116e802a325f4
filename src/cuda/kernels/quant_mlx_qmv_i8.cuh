#pragma once
// MLX affine 4-bit mat-vec on the integer tensor cores (qmv_i8.cuh says why and how): the
// decode path for one row of x (and every expert-routed slot), every group size (32, 64, 128).
//
// Groups of 64 or 128: the columns are "(x group, part, nibble class)" (qmv_i8.cuh), so lane
// (g, t) finds one (x group, part) with both classes for rows g and g + 8: v = c_low +
// c_high / 16. Group size 32: four x groups per step leave no room for classes, so the high
// nibbles are shifted down (one more instruction per word) and share their chunk's columns:
// column c is chunk (c >> 1), part c & 1, and lane (g, t) finds chunk t's h and l: v =
// 256 c_h + c_l.
//
// Block: 16 rows of W (a row tile), 4 warps splitting K in 128-value steps, a 2-step
// register ring of codes, scales and biases; x's image is read through L1 (every block on an
// SM reads the same 9 KB per row of x), so there is no block barrier before the K loop.
//
// How a lane reads its rows' scales and biases (template flags):
// default: each step's, from global memory into the register ring (2-byte loads).
// kPairs (group size 64, 16-bit scales, K % 256 == 0, scales and biases 8-byte aligned): the
//   warps take steps in pairs (warp w: steps 2 w, 2 w + 1, then 2 (w + 4), ...), and a pair's
//   4 scales of a row are one 8-byte load, as are its 4 biases: 3 loads per pair where single
//   steps take 6 two-byte loads (10.97 -> 10.56 us at [14336, 4096], bench/NOTES.md run 64;
//   the pair order alone changes nothing at group 64 and costs 1.3 us at group 32).
// kStaged (plain calls at groups 64 and 128 whose tile's scales and biases fit 16 KB in rows
//   of whole 8-byte pieces): the block first copies its 16 rows of scales and biases to
//   shared memory (cp.async, before the PDL wait, like the weight's first loads), and lanes
//   read them there (the pair's 8-byte vectors, or each step's values): each row's scales
//   leave DRAM as one contiguous run instead of 32-byte pieces over the whole K loop (group
//   64: 10.69 -> 9.82 us, group 128: 10.2 -> 9.54 us, runs 68-69; routed calls, a few blocks
//   per expert, and group 32 measured slower).
#include "cuda/kernels/mma.cuh"
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels::qmlx {

// Shared memory of kStaged: [scales, biases][16 rows][groups].
template <class ST>
constexpr int64_t qmv_staged_bytes(int64_t groups) {
  return 2 * 16 * groups * int64_t(sizeof(ST));
}

// CT: x's dtype (only the output is stored in it); ST: the scales' dtype; GS: 32, 64 or 128;
// kPairs, kStaged: see the top of this file (kStaged: dynamic shared memory of
// qmv_staged_bytes). p.x is x's image (QmvI8Image), p.x_stride its row stride in 16-byte
// units. Grid: (units, row tiles of 16). Requires K % 128 == 0 and the packed matrix 16-byte
// aligned.
template <class CT, class ST, int GS, bool kPairs, bool kStaged>
__global__ void __launch_bounds__(QmvI8Config::kThreads, QmvI8Config::kMinBlocks) qmv_i8_kernel(QmmParams p) {
  using C = QmvI8Config;
  constexpr int NW = C::kWarps, S = 2;  // steps in the register ring (3: no faster, more registers)
  static_assert(GS == 32 || GS == 64 || GS == 128, "MLX group sizes");
  static_assert(!kPairs || (GS == 64 && sizeof(ST) == 2), "pairs of steps: 16-bit scales at group size 64");
  // Steps from the one just loaded (ring slot j) to the next this warp takes.
  auto next_step = [](int j) { return kPairs ? (j == 0 ? 1 : 2 * NW - 1) : NW; };
  constexpr bool kPerChunk = GS == 32;  // columns (chunk, part); see the top of this file
  __shared__ float red[NW][32][2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, N = int(p.n), K = int(p.k), groups = K / GS, steps = K / 128;
  CT* out = static_cast<CT*>(p.out);

  if (p.ids) pdl_wait();  // routed: the ids may come from the kernel before the x kernel
  Unit un;
  int64_t ra;
  int rb;
  if (!tile_rows<CT>(p, 1, n0, g, un, ra, rb)) return;
  // This warp's steps: warp, warp + NW, ... (kPairs: 2 warp, 2 warp + 1, 2 (warp + NW), ...);
  // lane t's chunk of a step is k = 128 s + 32 t.
  const int first = kPairs ? 2 * warp : warp;
  const uint4* wp = reinterpret_cast<const uint4*>(p.packed) + ra * (K / 32) + first * 4 + t;
  const int w_b = rb * (K / 32);
  // Scales of rows a and b at lane t's weight group. Biases: each (row, x group) pair once.
  // Groups of 32: lane t takes both rows of its chunk; else row a for even t, row b for odd t,
  // x group t / 2.
  const int g_lane = 32 * t / GS + first * (128 / GS);
  const ST* sp = static_cast<const ST*>(p.scales) + ra * groups + g_lane;
  const ST* bp = static_cast<const ST*>(p.biases) + ra * groups + g_lane + (!kPerChunk && (t & 1) ? rb * groups : 0);
  const int s_b = rb * groups;
  const int pairs = steps / 2;  // kPairs: K % 256 == 0
  const int count = kPairs ? (pairs > warp ? (pairs - warp + NW - 1) / NW * 2 : 0)
                           : (steps > warp ? (steps - warp + NW - 1) / NW : 0);

  extern __shared__ __align__(16) uint8_t staged[];  // kStaged: [scales, biases][16 rows][groups]
  if constexpr (kStaged) {
    const int row_bytes = groups * int(sizeof(ST));
    stage_tile_scales<8, C::kThreads>(staged, row_bytes, p.scales, p.biases, un.expert * N, n0, N, row_bytes);
  }
  uint4 ca[S], cb[S];
  ST sa[S], sb[S], bi[S], bi_b[S];  // bi_b: row b's bias (groups of 32 only)
  uint2 pair_s, pair_sb, pair_bi;   // kPairs: the pair's 4 scales of rows a and b, 4 biases
  auto load_step = [&](int j) {
    ca[j] = load_weight(wp);  // W is read once (math.cuh, load_weight)
    cb[j] = load_weight(wp + w_b);
    if constexpr (kStaged) {
      // read from shared memory when consumed
    } else if constexpr (kPairs) {
      if (j == 0) {  // groups 4 P .. 4 P + 3 of pair P: group-aligned 8-byte vectors
        pair_s = __ldg(reinterpret_cast<const uint2*>(sp - (t >> 1)));
        pair_sb = __ldg(reinterpret_cast<const uint2*>(sp - (t >> 1) + s_b));
        pair_bi = __ldg(reinterpret_cast<const uint2*>(bp - (t >> 1)));
      }
    } else {
      sa[j] = __ldg(sp);
      sb[j] = __ldg(sp + s_b);
      bi[j] = __ldg(bp);
      if constexpr (kPerChunk) bi_b[j] = __ldg(bp + s_b);
    }
    wp += next_step(j) * 4;
    sp += next_step(j) * (128 / GS);
    bp += next_step(j) * (128 / GS);
  };
#pragma unroll
  for (int j = 0; j < S; ++j)
    if (j < count) load_step(j);
  // The weight loads above go out before the wait: the grid may start while the kernel before
  // the x kernel still runs (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();
  // kStaged: this lane's pair vectors, row a's scales at [0][g][4 P], row b's and the bias
  // row's at fixed offsets from it (in 8-byte units).
  const uint2* staged_p = reinterpret_cast<const uint2*>(staged) + g * groups / 4 + warp;
  const int staged_b = rb * groups / 4, staged_bias = (16 * groups + ((t & 1) ? rb * groups : 0)) / 4;
  // kStaged, single steps: row a's scale of the lane's group in the current step, the rest at
  // fixed offsets (in elements).
  const ST* staged_s = reinterpret_cast<const ST*>(staged) + g * groups + g_lane;
  const int staged_bi = 16 * groups + (!kPerChunk && (t & 1) ? rb * groups : 0), staged_bi_b = 16 * groups + s_b;
  if constexpr (kStaged) {
    cp_async_wait<0>();
    __syncthreads();
  }

  // B operands: lane (g, t) serves column g (qmv_i8.cuh). Groups of 32: column g is chunk
  // g / 2, part g % 2, both classes, so the lane has data for chunk g / 2 == t.
  using I = QmvI8Image;
  const uint4* img = reinterpret_cast<const uint4*>(p.x) + un.x_row * p.x_stride;
  int lo_unit, hi_unit;
  if constexpr (kPerChunk)
    vector_part_units(g, t, lo_unit, hi_unit);
  else
    group_part_class_units(g, t, lo_unit, hi_unit);
  const uint4* xl_p = img + first * I::kStepUnits + lo_unit;
  const uint4* xh_p = img + first * I::kStepUnits + hi_unit;
  const float2* table = reinterpret_cast<const float2*>(img + I::table_unit(K)) + 4 * first + t;

  float acc_a = 0.f, acc_b = 0.f, acc_bias = 0.f;
  for (int i0 = 0; i0 < count; i0 += S) {
#pragma unroll
    for (int j = 0; j < S; ++j) {
      if (i0 + j < count) {
        const uint4 xl = __ldg(xl_p), xh = __ldg(xh_p);
        const float2 fx = __ldg(table);
        xl_p += next_step(j) * I::kStepUnits;
        xh_p += next_step(j) * I::kStepUnits;
        table += 4 * next_step(j);
        if constexpr (kStaged && !kPairs) {
          sa[j] = staged_s[0];
          sb[j] = staged_s[s_b];
          bi[j] = staged_s[staged_bi];
          if constexpr (kPerChunk) bi_b[j] = staged_s[staged_bi_b];
          staged_s += next_step(j) * (128 / GS);
        }
        if constexpr (kPairs) {
          // Lane t's groups in the pair: t / 2 (step 0) and 2 + t / 2 (step 1), so halves
          // t / 2 of the vectors' words x and y. Both steps' values are taken now: the ring's
          // next load into slot 0 (below) brings the next pair's vectors.
          const int sh = 16 * (t >> 1);
          auto half = [sh](uint32_t w) {
            const uint16_t b = uint16_t(w >> sh);
            ST v;
            memcpy(&v, &b, sizeof(v));
            return v;
          };
          if (j == 0) {
            if constexpr (kStaged) {
              pair_s = staged_p[0];
              pair_sb = staged_p[staged_b];
              pair_bi = staged_p[staged_bias];
              staged_p += NW;
            }
            sa[0] = half(pair_s.x), sb[0] = half(pair_sb.x), bi[0] = half(pair_bi.x);
            sa[1] = half(pair_s.y), sb[1] = half(pair_sb.y), bi[1] = half(pair_bi.y);
          }
        }
        int c[4] = {0, 0, 0, 0};
        step_products<kPerChunk>(c, ca[j], cb[j], xl, xh);
        // Classes: the high one is 16 q x exactly, a multiple of 16, so the shift is exact.
        // Chunks: |256 c_h + c_l| < 2^24, exact as a float.
        const int va = kPerChunk ? 256 * c[0] + c[1] : c[0] + (c[1] >> 4);
        const int vb = kPerChunk ? 256 * c[2] + c[3] : c[2] + (c[3] >> 4);
        acc_a = fmaf(to_f32(sa[j]) * fx.x, float(va), acc_a);
        acc_b = fmaf(to_f32(sb[j]) * fx.x, float(vb), acc_b);
        acc_bias = fmaf(to_f32(bi[j]), fx.y, acc_bias);
        if constexpr (kPerChunk) acc_b = fmaf(to_f32(bi_b[j]), fx.y, acc_b);
        if (i0 + j + S < count) load_step(j);
      }
    }
  }
  if (!kPerChunk && (t & 1)) {
    acc_b += acc_bias;
  } else {
    acc_a += acc_bias;
  }
  store_tile<CT>(acc_a, acc_b, red, out + un.out_row * p.out_stride, n0, N);
}

}  // namespace mlxn::kernels::qmlx
