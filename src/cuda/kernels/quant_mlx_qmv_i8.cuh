#pragma once
// MLX affine 4-bit mat-vec on the integer tensor cores: the decode path for one row of x (and
// every expert-routed slot), every group size (32, 64, 128).
//
// Why integers: the bf16 mat-vec (quant_mlx_qmv.cuh) spends ~2 instructions per weight and
// lane on unpacking codes into bf16 pairs and applying the group's scale per pair, and the
// kernel is bound by that issue, not by DRAM. Here a code is a u8 A operand after one AND
// (low nibbles: q; high nibbles kept in place: 16 q), four codes per register, and the group's
// scale and bias are applied once per group to the exact integer product:
//   sum_k x_k (s q_k + b) = s * sum_k x_k q_k + b * sum_k x_k.
// x takes the B side as 15-bit fixed point per x group of 64 values (32 at group size 32, so
// that an x group lies in one weight group): x ~ s_x (256 h + l) with h, l int8, from a small
// kernel run first (qmv_i8_prepare_x). Relative to the largest |x| of its group each x is off
// by at most 2^-16: below what the bf16/f16 result can show.
//
// The m16n8k32 product spends its 8 columns on what one 128-value step needs. Groups of 64
// or 128: column c is x group (c >> 2) of the step, part (c >> 1) & 1 (h or l) and nibble
// class c & 1 (low or high), so lane (g, t) finds in its accumulators columns 2t and 2t + 1,
// one (x group, part) with both classes, for rows g and g + 8: v = c_low + c_high / 16.
// Group size 32: four x groups per step leave no room for classes, so the high nibbles are
// shifted down (one more instruction per word) and share their chunk's columns: column c is
// chunk (c >> 1), part c & 1, and lane (g, t) finds chunk t's h and l: v = 256 c_h + c_l. A
// B lane whose column does not take the current mma's data reads a zero unit instead.
//
// Block: 16 rows of W (a row tile), 4 warps splitting K in 128-value steps, a 2-step
// register ring of codes, scales and biases; x's image is read through L1 (every block on an
// SM reads the same 9 KB per row of x), so there is no block barrier before the K loop.
#include "cuda/kernels/math.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels::qmlx {

// x's image per row, in 16-byte units: per 128-value step s, 17 units: unit (t * 2 + part) *
// 2 + cls holds the part bytes (h, l) of x at k = 128 s + 32 t + 2 i + cls, i = 0..15, in the
// order an mma's B operand takes them, and unit 16 is zeros (what a lane reads when its column
// does not take an mma's data: every lane then steps by the same stride). After the steps,
// per x group G of 64 and part a float2 (s_x * (part ? 1 : 256), sum of x over G); for x
// groups of 32, per group a float2 (s_x, sum of x over G). Both tables are K / 4 bytes.
struct QmvI8Image {
  static constexpr int kFixedMax = 127 * 256;  // |256 h + l| <= this, so h fits int8
  static constexpr int kStepUnits = 17;
  static constexpr int64_t table_unit(int64_t k) { return k / 128 * kStepUnits; }
  static constexpr int64_t units(int64_t k) { return table_unit(k) + k / 64; }
};

struct QmvI8Config {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int kStages = 2;  // steps in the register ring (3: no faster, more registers)
  // 72 registers: 7 blocks per SM, and N = 14336 (896 row tiles) fits one wave on 132 SMs.
  static constexpr int kMinBlocks = 7;
  // The x kernel in blocks of one warp of at most 32 registers: one fits in the 1024
  // registers that 7 mat-vec blocks leave of an SM, so it can be resident, waiting, while the
  // kernel before it (often the previous mat-vec) finishes.
  static constexpr int kPrepareThreads = 32, kPrepareRegisters = 32;
};

// One row of x into its image: thread i (all K / 8 of them present, whole warps) takes values
// 8 i .. 8 i + 7; a group is XG / 8 adjacent lanes.
template <class CT, int XG>
__device__ __forceinline__ void prepare_x_row(const CT* xr, int k, int i, uint4* out) {
  const bool in = i < k / 8;
  const uint4 raw = in ? __ldg(reinterpret_cast<const uint4*>(xr) + i) : make_uint4(0, 0, 0, 0);
  float v[8];
  unpack_f32<CT>(raw, v);
  float amax = 0.f, sum = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    amax = fmaxf(amax, fabsf(v[j]));
    sum += v[j];
  }
#pragma unroll
  for (int o = 1; o < XG / 8; o *= 2) {  // the lanes of one group (K % 128 == 0: whole groups)
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
  }
  if (!in) return;
  const float inv = amax > 0.f ? float(QmvI8Image::kFixedMax) / amax : 0.f;
  const int k0 = 8 * i, s = k0 / 128, t = (k0 % 128) / 32, q = (k0 % 32) / 8;
  uint32_t* words = reinterpret_cast<uint32_t*>(out + s * QmvI8Image::kStepUnits);
#pragma unroll
  for (int cls = 0; cls < 2; ++cls) {
    // round(x / s_x) by adding 1.5 * 2^23: the float's low bits are then the integer in
    // two's complement; l is its low byte, h the byte above after adding 128.
    uint32_t f[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) f[j] = __float_as_uint(fmaf(v[2 * j + cls], inv, 12582912.f));
    const uint32_t l = __byte_perm(__byte_perm(f[0], f[1], 0x0040), __byte_perm(f[2], f[3], 0x0040), 0x5410);
    const uint32_t h =
        __byte_perm(__byte_perm(f[0] + 128, f[1] + 128, 0x0051), __byte_perm(f[2] + 128, f[3] + 128, 0x0051), 0x5410);
    words[((t * 2 + 0) * 2 + cls) * 4 + q] = h;
    words[((t * 2 + 1) * 2 + cls) * 4 + q] = l;
  }
  if (i % 16 == 0) out[s * QmvI8Image::kStepUnits + 16] = make_uint4(0, 0, 0, 0);
  if (i % (XG / 8) == 0) {
    float2* table = reinterpret_cast<float2*>(out + QmvI8Image::table_unit(k));
    const float sx = amax / float(QmvI8Image::kFixedMax);
    if constexpr (XG == 64) {
      table[2 * (i / 8)] = make_float2(sx * 256.f, sum);
      table[2 * (i / 8) + 1] = make_float2(sx, sum);
    } else {
      table[i / 4] = make_float2(sx, sum);
    }
  }
}

// XG: the x group, 64 or 32. One thread per 8 values of x. Grid: (ceil(K / 8 /
// kPrepareThreads), min(rows, 65535)), rows strided over y. Launched with launch_pdl, and it
// releases the mat-vec first thing, before its own wait: the mat-vec's blocks then start as
// the previous kernel's blocks retire and issue their first weight loads while it finishes
// (-0.45 us at N = 14336, K = 4096). That is the one read the mat-vec makes before it waits on
// this kernel (which waits on the previous one): the weight, scales and biases, which the
// kernel just before a matmul must not be writing (include/mlxn/ops/quant_mlx.h). Routed
// calls wait before reading their ids, which the previous kernel (the router) may be writing.
template <class CT, int XG>
__global__ void __maxnreg__(QmvI8Config::kPrepareRegisters)
    qmv_i8_prepare_x(const CT* x, int64_t x_stride, int64_t rows, int k, uint4* img, int64_t img_stride) {
  pdl_launch_dependents();
  pdl_wait();
  const int i = int(blockIdx.x) * QmvI8Config::kPrepareThreads + int(threadIdx.x);
#pragma unroll 1
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    prepare_x_row<CT, XG>(x + r * x_stride, k, i, img + r * img_stride);
}

__device__ __forceinline__ void mma_u8s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// CT: x's dtype (only the output is stored in it); ST: the scales' dtype; GS: 32, 64 or 128.
// p.x is x's image (QmvI8Image), p.x_stride its row stride in 16-byte units. Grid: (units,
// row tiles of 16). Requires K % 128 == 0 and the packed matrix 16-byte aligned.
template <class CT, class ST, int GS>
__global__ void __launch_bounds__(QmvI8Config::kThreads, QmvI8Config::kMinBlocks) qmv_i8_kernel(QmmParams p) {
  using C = QmvI8Config;
  constexpr int NW = C::kWarps, S = C::kStages;
  static_assert(GS == 32 || GS == 64 || GS == 128, "MLX group sizes");
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
  // This warp's steps: warp, warp + NW, ...; lane t's chunk of a step is k = 128 s + 32 t.
  const uint4* wp = reinterpret_cast<const uint4*>(p.packed) + ra * (K / 32) + warp * 4 + t;
  const int w_b = rb * (K / 32);
  // Scales of rows a and b at lane t's weight group. Biases: each (row, x group) pair once.
  // Groups of 32: lane t takes both rows of its chunk; else row a for even t, row b for odd t,
  // x group t / 2.
  constexpr int kGroupStep = 128 / GS * NW;
  const int g_lane = 32 * t / GS + warp * (128 / GS);
  const ST* sp = static_cast<const ST*>(p.scales) + ra * groups + g_lane;
  const ST* bp = static_cast<const ST*>(p.biases) + ra * groups + g_lane + (!kPerChunk && (t & 1) ? rb * groups : 0);
  const int s_b = rb * groups;
  const int count = steps > warp ? (steps - warp + NW - 1) / NW : 0;

  uint4 ca[S], cb[S];
  ST sa[S], sb[S], bi[S], bi_b[S];  // bi_b: row b's bias (groups of 32 only)
  auto load_step = [&](int j) {
    ca[j] = __ldcs(wp);  // evict-first: W is read once (math.cuh, load_once)
    cb[j] = __ldcs(wp + w_b);
    sa[j] = __ldg(sp);
    sb[j] = __ldg(sp + s_b);
    bi[j] = __ldg(bp);
    if constexpr (kPerChunk) bi_b[j] = __ldg(bp + s_b);
    wp += NW * 4;
    sp += kGroupStep;
    bp += kGroupStep;
  };
#pragma unroll
  for (int j = 0; j < S; ++j)
    if (j < count) load_step(j);
  // The weight loads above go out before the wait: the grid may start while the kernel before
  // the x kernel still runs (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  // B operands: lane (g, t) serves column g; it has data when column g's x group is the one of
  // chunk t, for the mmas of column g's class, else it reads its step's zero unit.
  using I = QmvI8Image;
  const uint4* img = reinterpret_cast<const uint4*>(p.x) + un.x_row * p.x_stride;
  // Groups of 32: column g is chunk g / 2, part g % 2, both classes; else x group g / 4,
  // part (g / 2) % 2, class g % 2.
  const int part = kPerChunk ? g & 1 : (g >> 1) & 1, unit = (t * 2 + part) * 2;
  const bool mine = kPerChunk ? (g >> 1) == t : (g >> 2) == (t >> 1);
  const bool lo_on = mine && (kPerChunk || (g & 1) == 0), hi_on = mine && (kPerChunk || (g & 1) == 1);
  const uint4* xl_p = img + warp * I::kStepUnits + (lo_on ? unit : 16);
  const uint4* xh_p = img + warp * I::kStepUnits + (hi_on ? unit + 1 : 16);
  const float2* table = reinterpret_cast<const float2*>(img + I::table_unit(K)) +
                        (kPerChunk ? 4 * warp + t : (2 * warp + (t >> 1)) * 2 + (t & 1));

  float acc_a = 0.f, acc_b = 0.f, acc_bias = 0.f;
  for (int i0 = 0; i0 < count; i0 += S) {
#pragma unroll
    for (int j = 0; j < S; ++j) {
      if (i0 + j < count) {
        const uint4 xl = __ldg(xl_p), xh = __ldg(xh_p);
        const float2 fx = __ldg(table);
        xl_p += NW * I::kStepUnits;
        xh_p += NW * I::kStepUnits;
        table += 4 * NW;
        constexpr uint32_t kLow = 0x0f0f0f0fu, kHigh = 0xf0f0f0f0u;
        const uint4 a = ca[j], b = cb[j];
        auto hi = [](uint32_t w) { return kPerChunk ? (w >> 4) & kLow : w & kHigh; };
        int c[4] = {0, 0, 0, 0};
        mma_u8s8(c, a.x & kLow, b.x & kLow, a.y & kLow, b.y & kLow, xl.x, xl.y);
        mma_u8s8(c, a.z & kLow, b.z & kLow, a.w & kLow, b.w & kLow, xl.z, xl.w);
        mma_u8s8(c, hi(a.x), hi(b.x), hi(a.y), hi(b.y), xh.x, xh.y);
        mma_u8s8(c, hi(a.z), hi(b.z), hi(a.w), hi(b.w), xh.z, xh.w);
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
  // The quad's 4 lanes hold different (group, part) terms of the same two rows.
#pragma unroll
  for (int o = 1; o < 4; o *= 2) {
    acc_a += __shfl_xor_sync(0xffffffffu, acc_a, o);
    acc_b += __shfl_xor_sync(0xffffffffu, acc_b, o);
  }
  red[warp][lane][0] = acc_a;
  red[warp][lane][1] = acc_b;
  __syncthreads();
  if (warp == 0 && t == 0) {
    float va = 0.f, vb = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) va += red[w][lane][0], vb += red[w][lane][1];
    CT* o = out + un.out_row * p.out_stride;
    if (n0 + g < N) o[n0 + g] = from_f32<CT>(va);
    if (n0 + g + 8 < N) o[n0 + g + 8] = from_f32<CT>(vb);
  }
}

}  // namespace mlxn::kernels::qmlx
