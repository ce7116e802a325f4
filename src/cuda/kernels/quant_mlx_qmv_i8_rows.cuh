#pragma once
// MLX affine 4-bit mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small
// batch): the same fixed-point x image and u8 x s8 products as the single-row kernel
// (qmv_i8.cuh), with the mma's 8 columns spent on x rows instead of on groups and parts.
//
// Why a second integer kernel: the single-row kernel fills its 8 columns with one x row's
// (x group, part, nibble class), so R rows would cost R units, each reading W again (run 55).
// Here a column is (x row, x group of the step) and both parts get their own accumulators,
// so the codes are unpacked once per step for every row of x, and R rows cost R / 4 (x groups
// of 64) or R / 2 (of 32) passes of 8 mma each over the same registers.
//
// Columns: with GPS = 128 / XG x groups per 128-value step, column c is x row
// pass * (8 / GPS) + c / GPS, x group c % GPS of the step. An mma's k runs over the bytes of
// all four lanes of a quad, which hold different x groups (lane t's 32 values lie in x group
// t / (4 / GPS)), so a B lane passes its x row's data only where the lane's x group is the
// column's, and the step's zero unit elsewhere. Both nibble classes of a byte are the same
// x group, so the high nibbles are shifted down and share the low ones' columns.
//
// Lane (g, t) then holds columns 2t and 2t + 1 of rows g and g + 8: one x row,
// pass * (8 / GPS) + 2t / GPS, at two x groups of the step, whose scales it applies:
//   row value += s_w * s_x * (256 c_h + c_l) + b_w * sum of x   (per weight row, x group).
// At x groups of 32 lanes t and t ^ 1 hold the same x row's other two groups (summed at the
// end).
//
// Block: 16 rows of W, 4 warps splitting K in 128-value steps (warp w: w, w + 4, ...), a
// 2-step register ring of codes and of the rows' scales and biases, x's image through L1.
#include "cuda/kernels/mma.cuh"
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels::qmlx {

struct QmvI8RowsConfig {
  static constexpr int kMaxRows = 8;  // rows of x per call
  // Every pass keeps its x units and products in registers (~110 per lane), so a row tile
  // takes 2 warps splitting K instead of the single-row kernel's 4: 7 blocks of 64 threads
  // per SM hold the 896 row tiles of N = 14336 in one wave on 132 SMs, and a 3-step ring
  // keeps as many bytes in flight per SM as 4 warps with 2 steps.
  static constexpr int kWarps = 2, kThreads = 32 * kWarps, kSteps = 3, kMinBlocks = 7;
};

// Two adjacent group values of a scale or bias row (the group even, so the pair is
// 2-element aligned), or one group's value twice where a weight group spans both x groups
// (GS = 128), kept raw in the register ring (one register for 16-bit types) until used.
template <class ST>
using GroupPair = std::conditional_t<sizeof(ST) == 4, uint2, uint32_t>;

template <class ST, int GS>
__device__ __forceinline__ GroupPair<ST> load_group_pair(const ST* p) {
  if constexpr (sizeof(ST) == 4) {
    if constexpr (GS == 128) {
      const uint32_t v = __ldg(reinterpret_cast<const uint32_t*>(p));
      return make_uint2(v, v);
    } else {
      return __ldg(reinterpret_cast<const uint2*>(p));
    }
  } else if constexpr (GS == 128) {
    const uint32_t v = __ldg(reinterpret_cast<const uint16_t*>(p));
    return v | v << 16;
  } else {
    return __ldg(reinterpret_cast<const uint32_t*>(p));
  }
}

template <class ST>
__device__ __forceinline__ float2 group_pair_f32(GroupPair<ST> v) {
  if constexpr (sizeof(ST) == 4) {
    return make_float2(__uint_as_float(v.x), __uint_as_float(v.y));
  } else {
    ST lo, hi;
    const uint16_t l = uint16_t(v), h = uint16_t(v >> 16);
    memcpy(&lo, &l, 2);
    memcpy(&hi, &h, 2);
    return make_float2(to_f32(lo), to_f32(hi));
  }
}

// CT: x's dtype; ST: the scales'; GS: 32, 64 or 128 (x groups: 32 at GS = 32, else 64).
// p.x: x's image (QmvI8Image, NibbleOrder::kPairs), p.x_stride its row stride in 16-byte
// units; p.m in 1..8 rows, no routing. Grid: (1, row tiles of 16). Requires K % 128 == 0, the
// packed matrix 16-byte aligned and scales and biases aligned to two elements.
template <class CT, class ST, int GS>
__global__ void __launch_bounds__(QmvI8RowsConfig::kThreads, QmvI8RowsConfig::kMinBlocks)
    qmv_i8_rows_kernel(QmmParams p) {
  constexpr int NW = QmvI8RowsConfig::kWarps, S = QmvI8RowsConfig::kSteps;
  constexpr int XG = GS == 32 ? 32 : 64, GPS = 128 / XG, RPP = 8 / GPS;  // x groups per step, rows per pass
  constexpr int kPasses = QmvI8RowsConfig::kMaxRows / RPP;
  static_assert(GS == 32 || GS == 64 || GS == 128, "MLX group sizes");
  using I = QmvI8Image;
  __shared__ float red[NW][32][2 * kPasses];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, N = int(p.n), K = int(p.k), groups = K / GS, steps = K / 128;

  Unit un;
  int64_t ra;
  int rb;
  if (!tile_rows<CT>(p, QmvI8RowsConfig::kMaxRows, n0, g, un, ra, rb)) return;
  const int M = un.rows, passes = (M + RPP - 1) / RPP;
  const uint4* wp = reinterpret_cast<const uint4*>(p.packed) + ra * (K / 32) + warp * 4 + t;
  const int w_b = rb * (K / 32);
  // The weight groups of this lane's two columns in step s: x groups 2t % GPS and the next,
  // i.e. weight group (128 s + XG * (2t % GPS)) / GS and the one after it (the same one at
  // GS = 128).
  const int col_group = (2 * t) % GPS;
  const ST* sp = static_cast<const ST*>(p.scales) + ra * groups + (warp * 128 + XG * col_group) / GS;
  const ST* bp = static_cast<const ST*>(p.biases) + ra * groups + (warp * 128 + XG * col_group) / GS;
  const int s_b = rb * groups;
  constexpr int kGroupStep = NW * 128 / GS;  // weight groups from one of this warp's steps to the next
  const int count = steps > warp ? (steps - warp + NW - 1) / NW : 0;

  uint4 ca[S], cb[S];
  GroupPair<ST> sa[S], sb[S], ba[S], bb[S];  // rows a and b: the two columns' scales and biases
  auto load_step = [&](int j) {
    ca[j] = __ldcs(wp);  // evict-first: W is read once (math.cuh, load_once)
    cb[j] = __ldcs(wp + w_b);
    sa[j] = load_group_pair<ST, GS>(sp);
    sb[j] = load_group_pair<ST, GS>(sp + s_b);
    ba[j] = load_group_pair<ST, GS>(bp);
    bb[j] = load_group_pair<ST, GS>(bp + s_b);
    wp += NW * 4;
    sp += kGroupStep;
    bp += kGroupStep;
  };
#pragma unroll
  for (int j = 0; j < S; ++j)
    if (j < count) load_step(j);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  // B lane (g, t) serves column g: x row pass * RPP + g / GPS (rows past M read row 0: their
  // columns are never stored), x group g % GPS, which has data in lane t's bytes only if it
  // is lane t's x group.
  const bool mine = g % GPS == t / (4 / GPS);
  const int unit_h = mine ? t * 4 : 16, unit_l = mine ? t * 4 + 2 : 16;  // + class (unit_h + 1: 16 stays 16)
  const int cls_step = mine ? 1 : 0;
  const uint4* img = static_cast<const uint4*>(p.x);
  const uint4* xb[kPasses];
  const float2* tab[kPasses];
  const int out_slot = 2 * t / GPS;  // this lane's x row within a pass
#pragma unroll
  for (int ps = 0; ps < kPasses; ++ps) {
    const int xr = ps * RPP + g / GPS, cr = ps * RPP + out_slot;
    xb[ps] = img + (xr < M ? xr : 0) * p.x_stride + warp * I::kStepUnits;
    // Table entries of the lane's two columns (x row cr, x groups col_group and the next):
    // (s_x, sum of x). x groups of 64 hold two entries each, (256 s_x, sum) first.
    const float2* table = reinterpret_cast<const float2*>(img + (cr < M ? cr : 0) * p.x_stride + I::table_unit(K));
    tab[ps] = table + (XG == 64 ? 2 * (warp * GPS + col_group) + 1 : warp * GPS + col_group);
  }
  constexpr int kTabNext = XG == 64 ? 2 : 1;     // entry of the next x group
  constexpr int kTabStep = NW * GPS * kTabNext;  // entries from one step of this warp to the next

  float acc_a[kPasses] = {}, acc_b[kPasses] = {};
  for (int i0 = 0; i0 < count; i0 += S) {
#pragma unroll
    for (int j = 0; j < S; ++j) {
      if (i0 + j < count) {
        // The codes of both rows as u8 operands, once for every pass: low nibbles, and high
        // nibbles shifted down.
        constexpr uint32_t kLow = 0x0f0f0f0fu;
        auto lo = [](const uint4& v) { return make_uint4(v.x & kLow, v.y & kLow, v.z & kLow, v.w & kLow); };
        auto hi = [](const uint4& v) {
          return make_uint4((v.x >> 4) & kLow, (v.y >> 4) & kLow, (v.z >> 4) & kLow, (v.w >> 4) & kLow);
        };
        const uint4 a_lo = lo(ca[j]), b_lo = lo(cb[j]), a_hi = hi(ca[j]), b_hi = hi(cb[j]);
        const float2 s_a = group_pair_f32<ST>(sa[j]), s_bb = group_pair_f32<ST>(sb[j]);
        const float2 o_a = group_pair_f32<ST>(ba[j]), o_b = group_pair_f32<ST>(bb[j]);
        if (i0 + j + S < count) load_step(j);
        const int step_units = (i0 + j) * NW * I::kStepUnits;
#pragma unroll
        for (int ps = 0; ps < kPasses; ++ps) {
          if (ps < passes) {
            const uint4* x = xb[ps] + step_units;
            int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
            step_products(ch, a_lo, b_lo, a_hi, b_hi, __ldg(x + unit_h), __ldg(x + unit_h + cls_step));
            step_products(cl, a_lo, b_lo, a_hi, b_hi, __ldg(x + unit_l), __ldg(x + unit_l + cls_step));
            const float2* e = tab[ps] + (i0 + j) * kTabStep;
            const float2 e0 = __ldg(e), e1 = __ldg(e + kTabNext);
            // |256 c_h + c_l| < 2^31 (64 values x 15 x 2^15); as a float it is off by 2^-24.
            auto v = [&](int c) { return float(256 * ch[c] + cl[c]); };
            acc_a[ps] += s_a.x * e0.x * v(0) + o_a.x * e0.y + s_a.y * e1.x * v(1) + o_a.y * e1.y;
            acc_b[ps] += s_bb.x * e0.x * v(2) + o_b.x * e0.y + s_bb.y * e1.x * v(3) + o_b.y * e1.y;
          }
        }
      }
    }
  }
  // Lanes t and t ^ 1 hold the same x row at x groups of 32; then the 4 warps' parts of K.
#pragma unroll
  for (int ps = 0; ps < kPasses; ++ps) {
    if constexpr (GPS == 4) {
      acc_a[ps] += __shfl_xor_sync(0xffffffffu, acc_a[ps], 1);
      acc_b[ps] += __shfl_xor_sync(0xffffffffu, acc_b[ps], 1);
    }
    red[warp][lane][2 * ps] = acc_a[ps];
    red[warp][lane][2 * ps + 1] = acc_b[ps];
  }
  __syncthreads();
  if (warp == 0 && (GPS == 2 || t % 2 == 0)) {
    CT* out = static_cast<CT*>(p.out);
#pragma unroll
    for (int ps = 0; ps < kPasses; ++ps) {
      const int xr = ps * RPP + out_slot;
      if (xr < M) {
        float va = 0.f, vb = 0.f;
#pragma unroll
        for (int w = 0; w < NW; ++w) va += red[w][lane][2 * ps], vb += red[w][lane][2 * ps + 1];
        CT* row = out + (un.out_row + xr) * p.out_stride;
        if (n0 + g < N) row[n0 + g] = from_f32<CT>(va);
        if (n0 + g + 8 < N) row[n0 + g + 8] = from_f32<CT>(vb);
      }
    }
  }
}

}  // namespace mlxn::kernels::qmlx
