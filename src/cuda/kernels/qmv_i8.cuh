#pragma once
// The integer tensor-core mat-vec, the parts that do not depend on the weight format: x's
// fixed-point image and the kernel that writes it, the u8 x s8 product of one 128-value step,
// and the block's final sum. Its users: the MLX affine 4-bit kernel (quant_mlx_qmv_i8.cuh),
// the GGUF Q4_K / Q5_K kernel (quant_gguf_qmv_i8.cuh) and the GGUF Q4_0 kernel
// (quant_gguf_q4_0_i8.cuh).
//
// Why integers: a bf16 mat-vec spends ~2 instructions per weight and lane on unpacking codes
// into bf16 pairs and applying scales per pair, and is bound by that issue, not by DRAM. Here
// a 4-bit code is a u8 A operand of mma.m16n8k32 after one AND (low nibbles: q; high nibbles
// kept in place: 16 q; a 5-bit code's byte is built from its nibble and fifth bit), four codes
// per register, and each group's scale and offset are applied once per group to the exact
// integer product:
//   sum_k x_k (s q_k + b) = s * sum_k x_k q_k + b * sum_k x_k.
// x takes the B side as 15-bit fixed point per x group of 64 values (or 32): x ~ s_x (256 h
// + l) with h, l int8, written once per call by qmv_i8_prepare_x. Relative to the largest |x|
// of its group each x is off by at most 2^-16: below what the bf16/f16 result can show.
//
// A lane (g, t) (g = lane / 4, t = lane % 4) owns W rows g and g + 8 of a 16-row tile and, per
// 128-value step, 16 bytes of codes of each: "its vector" t. An mma's k runs over bytes of all
// four vectors of a quad, so the 8 columns of B separate what must not be summed together: a
// column takes x's values for one (x group, part, nibble class) and zeros elsewhere. The B lane
// (g, t) serves column g for vector t's bytes: its x data when vector t belongs to column g,
// else the step's zero unit (every lane then steps by the same stride, with no branch).
#include "cuda/kernels/math.cuh"
#include "cuda/kernels/mma.cuh"

namespace mlxn::kernels {

// Which x value a code byte's nibbles stand for, within one 128-value step:
// kPairs (MLX): vector t is values 32 t .. 32 t + 31, byte i holds values 2 i (low nibble) and
//   2 i + 1 (high nibble);
// kHalves (GGUF K-quants): per 64 values 32 bytes whose low nibbles are values 0..31 and high
//   nibbles 32..63; vector t is bytes 16 (t % 2) .. of the 64-value chunk t / 2, so byte i holds
//   values 64 (t / 2) + 16 (t % 2) + i and the same + 32;
// kBlocks (GGUF Q4_0): vector t is the 16 code bytes of the step's block t, byte i holding
//   values 32 t + i (low nibble) and 32 t + 16 + i (high nibble).
// The x groups of 64 of kHalves and kBlocks carry each half's sum of x (a K-quant sub-block, a
// Q4_0 block).
enum class NibbleOrder { kPairs, kHalves, kBlocks };

// x's image per row, in 16-byte units: per 128-value step s, 17 units: unit (t * 2 + part) *
// 2 + cls holds the part bytes (h, l) of the x values of vector t's bytes i = 0..15, nibble
// class cls, in the order an mma's B operand takes them, and unit 16 is zeros. After the
// steps, the table: x groups of 64: per group G and part a float2 (s_x * (part ? 1 : 256),
// sum of x over G (kPairs) or over G's half `part` (kHalves, kBlocks)); x groups of 32: per group a
// float2 (s_x, sum of x over G). Both tables are K / 4 bytes.
struct QmvI8Image {
  static constexpr int kFixedMax = 127 * 256;  // |256 h + l| <= this, so h fits int8
  static constexpr int kStepUnits = 17;
  static constexpr int64_t table_unit(int64_t k) { return k / 128 * kStepUnits; }
  static constexpr int64_t units(int64_t k) { return table_unit(k) + k / 64; }
};

struct QmvI8Config {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  // 72 registers: 7 blocks per SM, and N = 14336 (896 row tiles) fits one wave on 132 SMs.
  static constexpr int kMinBlocks = 7;
  // The x kernel in blocks of one warp of at most 32 registers: one fits in the 1024
  // registers that 7 mat-vec blocks leave of an SM, so it can be resident, waiting, while the
  // kernel before it (often the previous mat-vec) finishes.
  static constexpr int kPrepareThreads = 32, kPrepareRegisters = 32;
};

// Four values of x as fixed point: round(v / s_x) by adding 1.5 * 2^23 (the float's low bits
// are then the integer in two's complement); l is its low byte, h the byte above after adding
// 128. Byte j of the words is value j.
__device__ __forceinline__ void fixed_point_words(const float (&v)[4], float inv, uint32_t& h, uint32_t& l) {
  uint32_t f[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = __float_as_uint(fmaf(v[j], inv, 12582912.f));
  l = __byte_perm(__byte_perm(f[0], f[1], 0x0040), __byte_perm(f[2], f[3], 0x0040), 0x5410);
  h = __byte_perm(__byte_perm(f[0] + 128, f[1] + 128, 0x0051), __byte_perm(f[2] + 128, f[3] + 128, 0x0051), 0x5410);
}

// The largest |v| of 8 values per lane over AmaxLanes adjacent lanes (a power of two, aligned),
// and their sum over the first SumLanes of them (SumLanes <= AmaxLanes): an x group's scale and
// the sum its bias multiplies.
template <int AmaxLanes, int SumLanes>
__device__ __forceinline__ void lanes_amax_sum(const float (&v)[8], float& amax, float& sum) {
  amax = 0.f, sum = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    amax = fmaxf(amax, fabsf(v[j]));
    sum += v[j];
  }
#pragma unroll
  for (int o = 1; o < AmaxLanes; o *= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (o < SumLanes) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  }
}

// A row tile's scales and biases into shared memory, [scales, biases][16 rows] at `pitch`
// bytes a row, each row's row_bytes copied in PIECE-byte cp.async pieces by the block's
// THREADS threads (one commit group). Rows are rows first_row + min(n0 + r, n - 1) of the
// arrays (rows past n copy the last; their outputs are never stored).
template <int PIECE, int THREADS>
__device__ __forceinline__ void stage_tile_scales(uint8_t* dst, int pitch, const void* scales, const void* biases,
                                                  int64_t first_row, int n0, int n, int row_bytes) {
  const int per_row = row_bytes / PIECE, pieces = 2 * 16 * per_row;
  for (int i = threadIdx.x; i < pieces; i += THREADS) {
    const int arr = i / (16 * per_row), r = i / per_row % 16, c = i % per_row;
    const int64_t row = first_row + min(n0 + r, n - 1);
    cp_async<PIECE>(dst + (arr * 16 + r) * pitch + PIECE * c,
                    static_cast<const uint8_t*>(arr ? biases : scales) + row * row_bytes + PIECE * c);
  }
  cp_async_commit();
}

// One row of x into its image: thread i (all K / 8 of them present, whole warps) takes values
// 8 i .. 8 i + 7; an x group is XG / 8 adjacent lanes.
template <class CT, NibbleOrder O, int XG>
__device__ __forceinline__ void prepare_x_row(const CT* xr, int k, int i, uint4* out) {
  static_assert(O == NibbleOrder::kPairs || XG == 64, "GGUF x groups are 64 values, summed by halves");
  constexpr int kSumLanes = O != NibbleOrder::kPairs ? 4 : XG / 8;  // a half, or the group
  const bool in = i < k / 8;
  const uint4 raw = in ? __ldg(reinterpret_cast<const uint4*>(xr) + i) : make_uint4(0, 0, 0, 0);
  float v[8], amax, sum;
  unpack_f32<CT>(raw, v);
  lanes_amax_sum<XG / 8, kSumLanes>(v, amax, sum);  // the lanes of one group (K % 128 == 0: whole groups)
  if (!in) return;
  const float inv = amax > 0.f ? float(QmvI8Image::kFixedMax) / amax : 0.f;
  const int k0 = 8 * i, s = k0 / 128, r = k0 % 128;
  uint32_t* words = reinterpret_cast<uint32_t*>(out + s * QmvI8Image::kStepUnits);
  auto put = [&](int t, int cls, int q, uint32_t h, uint32_t l) {
    words[((t * 2 + 0) * 2 + cls) * 4 + q] = h;
    words[((t * 2 + 1) * 2 + cls) * 4 + q] = l;
  };
  if constexpr (O == NibbleOrder::kPairs) {
    const int t = r / 32, q = (r % 32) / 8;
#pragma unroll
    for (int cls = 0; cls < 2; ++cls) {
      uint32_t h, l;
      fixed_point_words({v[cls], v[2 + cls], v[4 + cls], v[6 + cls]}, inv, h, l);
      put(t, cls, q, h, l);
    }
  } else {
    // 8 values of one class: words q and q + 1 (q even) of the h unit, and of the l unit 2
    // units on.
    const bool halves = O == NibbleOrder::kHalves;
    const int cls = halves ? (r % 64) / 32 : (r % 32) / 16;
    const int t = halves ? 2 * (r / 64) + (r % 32) / 16 : r / 32, q = (r % 16) / 4;
    uint2 h, l;
    fixed_point_words({v[0], v[1], v[2], v[3]}, inv, h.x, l.x);
    fixed_point_words({v[4], v[5], v[6], v[7]}, inv, h.y, l.y);
    uint2* hw = reinterpret_cast<uint2*>(words + ((t * 2 + 0) * 2 + cls) * 4 + q);
    hw[0] = h;
    hw[4] = l;
  }
  if (i % 16 == 0) out[s * QmvI8Image::kStepUnits + 16] = make_uint4(0, 0, 0, 0);
  if (i % kSumLanes == 0) {
    float2* table = reinterpret_cast<float2*>(out + QmvI8Image::table_unit(k));
    const float sx = amax / float(QmvI8Image::kFixedMax);
    const int grp = k0 / XG;
    if constexpr (XG == 32) {
      table[grp] = make_float2(sx, sum);
    } else if constexpr (O != NibbleOrder::kPairs) {
      const int half = (k0 % 64) / 32;
      table[2 * grp + half] = make_float2(half ? sx : sx * 256.f, sum);
    } else {
      table[2 * grp] = make_float2(sx * 256.f, sum);
      table[2 * grp + 1] = make_float2(sx, sum);
    }
  }
}

// XG: the x group, 64 or 32. One thread per 8 values of x. Grid: (ceil(K / 8 /
// kPrepareThreads), min(rows, 65535)), rows strided over y. Launched with launch_pdl, and it
// releases the mat-vec first thing, before its own wait: the mat-vec's blocks then start as
// the previous kernel's blocks retire and issue their first weight loads while it finishes
// (-0.45 us at N = 14336, K = 4096). That is the one read the mat-vec makes before it waits on
// this kernel (which waits on the previous one): the weight and its scales, which the kernel
// just before a matmul must not be writing (include/mlxn/ops/quant_mlx.h, quant_gguf.h).
// Routed calls wait before reading their ids, which the previous kernel (the router) may be
// writing.
template <class CT, NibbleOrder O, int XG>
__global__ void __maxnreg__(QmvI8Config::kPrepareRegisters)
    qmv_i8_prepare_x(const CT* x, int64_t x_stride, int64_t rows, int k, uint4* img, int64_t img_stride) {
  pdl_launch_dependents();
  pdl_wait();
  const int i = int(blockIdx.x) * QmvI8Config::kPrepareThreads + int(threadIdx.x);
#pragma unroll 1
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    prepare_x_row<CT, O, XG>(x + r * x_stride, k, i, img + r * img_stride);
}

__device__ __forceinline__ void mma_u8s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The same with signed codes (GGUF Q6_K: q - 32).
__device__ __forceinline__ void mma_s8s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The same over 16 values of k (GGUF Q6_K batches: one mma per 16-value scale): a0, a1 rows g
// and g + 8, k 4t .. 4t + 3; b0 the same k of column g.
__device__ __forceinline__ void mma_s8s8_k16(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t b0) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
               : "r"(a0), "r"(a1), "r"(b0));
}

// The products of one 128-value step from built code vectors: lo, hi the lane's u8 A operands
// for the mmas of the low and the high nibble class (rows g and g + 8 as a and b); xl, xh its
// B units for them.
__device__ __forceinline__ void step_products(int (&c)[4], const uint4& a_lo, const uint4& b_lo, const uint4& a_hi,
                                              const uint4& b_hi, const uint4& xl, const uint4& xh) {
  mma_u8s8(c, a_lo.x, b_lo.x, a_lo.y, b_lo.y, xl.x, xl.y);
  mma_u8s8(c, a_lo.z, b_lo.z, a_lo.w, b_lo.w, xl.z, xl.w);
  mma_u8s8(c, a_hi.x, b_hi.x, a_hi.y, b_hi.y, xh.x, xh.y);
  mma_u8s8(c, a_hi.z, b_hi.z, a_hi.w, b_hi.w, xh.z, xh.w);
}

// The same for 4-bit codes: a, b the lane's packed vectors of rows g and g + 8. The high
// nibbles stay in place (16 q) unless kShiftHigh, where they are shifted down to share the low
// nibbles' columns.
template <bool kShiftHigh>
__device__ __forceinline__ void step_products(int (&c)[4], const uint4& a, const uint4& b, const uint4& xl,
                                              const uint4& xh) {
  constexpr uint32_t kLow = 0x0f0f0f0fu, kHigh = 0xf0f0f0f0u;
  auto lo = [](const uint4& v) { return make_uint4(v.x & kLow, v.y & kLow, v.z & kLow, v.w & kLow); };
  auto hi1 = [](uint32_t w) { return kShiftHigh ? (w >> 4) & kLow : w & kHigh; };
  auto hi = [&](const uint4& v) { return make_uint4(hi1(v.x), hi1(v.y), hi1(v.z), hi1(v.w)); };
  step_products(c, lo(a), lo(b), hi(a), hi(b), xl, xh);
}

// B lane (g, t) for columns "(x group of 64, part, nibble class)": column c is the step's x
// group c >> 2, part (c >> 1) & 1, class c & 1, so lane (g, t) finds in its accumulators
// columns 2t and 2t + 1: x group t >> 1, part t & 1, both classes. The units it reads per step
// for the low and high nibbles (16: the zero unit).
__device__ __forceinline__ void group_part_class_units(int g, int t, int& lo, int& hi) {
  const int unit = (t * 2 + ((g >> 1) & 1)) * 2;
  const bool mine = (g >> 2) == (t >> 1);
  lo = mine && (g & 1) == 0 ? unit : 16;
  hi = mine && (g & 1) == 1 ? unit + 1 : 16;
}

// B lane (g, t) for columns "(vector's 32 values, part)", both nibble classes in one column
// (the high nibbles shifted down): column c is vector c >> 1's values, part c & 1, so lane
// (g, t) finds in its accumulators columns 2t and 2t + 1: its own vector, both parts. Serves
// MLX groups of 32 and Q4_0 blocks, whose scale is per vector.
__device__ __forceinline__ void vector_part_units(int g, int t, int& lo, int& hi) {
  const bool mine = (g >> 1) == t;
  lo = mine ? (t * 2 + (g & 1)) * 2 : 16;
  hi = mine ? lo + 1 : 16;
}

// The block's sums of rows g (a) and g + 8 (b) of a tile: each lane holds partial sums of
// them, the quad's 4 lanes different terms and the NW warps different parts of K. True on the
// lanes that end with the totals (warp 0, t == 0), in va and vb.
template <int NW>
__device__ __forceinline__ bool tile_sums(float a, float b, float (&red)[NW][32][2], float& va, float& vb) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int o = 1; o < 4; o *= 2) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  red[warp][lane][0] = a;
  red[warp][lane][1] = b;
  __syncthreads();
  if (warp != 0 || lane % 4 != 0) return false;
  va = 0.f, vb = 0.f;
#pragma unroll
  for (int w = 0; w < NW; ++w) va += red[w][lane][0], vb += red[w][lane][1];
  return true;
}

// The block's result (tile_sums) into rows n0 + g and n0 + g + 8 of out_row (N values).
template <class CT>
__device__ __forceinline__ void store_tile(float a, float b, float (&red)[QmvI8Config::kWarps][32][2], CT* out_row,
                                           int n0, int n) {
  const int g = threadIdx.x % 32 / 4;
  float va, vb;
  if (!tile_sums(a, b, red, va, vb)) return;
  if (n0 + g < n) out_row[n0 + g] = from_f32<CT>(va);
  if (n0 + g + 8 < n) out_row[n0 + g + 8] = from_f32<CT>(vb);
}

}  // namespace mlxn::kernels
