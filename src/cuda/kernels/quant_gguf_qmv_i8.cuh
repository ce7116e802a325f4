#pragma once
// GGUF Q4_K and Q5_K mat-vec on the integer tensor cores (qmv_i8.cuh says why and how): one
// row of x by the weight, or each routed slot of one token by its expert; x bf16/f16.
//
// A Q4_K superblock is 144 bytes for 256 values: d and dmin (f16), 12 bytes of 6-bit scales
// and mins of its 8 sub-blocks of 32, then 128 bytes of codes, 32 per 64-value chunk (low
// nibbles: sub-block 2c, high nibbles: 2c + 1). Q5_K (176 bytes) puts 32 bytes between the
// two: byte l holds bit u of value l of every sub-block u, the codes' fifth bit. Rows are
// whole superblocks, 9 or 11 16-byte units, so every access is a 16-byte vector. A 128-value
// step is half a superblock: lane t's vector is codes unit 4 h + t (step h of the superblock),
// chunk 2 h + t / 2 of it. The columns are "(x group of 64, part, nibble class)" with the x
// group = the chunk, so a lane's two accumulators of a row are its chunk's two sub-blocks, one
// part:
//   row value += d * s_x * (sc_lo c_low + sc_high c_high) - dmin * (m * sum of x),
// (Q4_K's high nibbles stay in place, so its c_high is divided by 16), the min term taken by
// part p's lane for sub-block 2 c + p of both rows (the image's table holds each half's sum
// of x). Q5_K builds both classes' codes as 5-bit bytes from the nibbles and the high bits.
//
// Block: 16 rows (a row tile), 4 warps splitting K by superblocks (warp w: w, w + 4, ...); per
// lane a register ring of the two steps' codes of its rows and their headers, each loaded a
// superblock (two steps) before use, and (Q5_K) the high bits, loaded once the current ones
// have served step 0. Q4_K: 72 registers or fewer, 7 blocks per SM, as the MLX kernel; Q5_K:
// see KQuantI8Format.
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

// The scales of one row of a superblock (Q4_K and Q5_K alike) that lane (j = chunk of the
// step, p = part) uses:
// sc[h][cls] for step h's sub-block 4 h + 2 j + cls, m[h] for sub-block 4 h + 2 j + p (as
// floats, times dmin), and d. Header words: w0 = d | dmin << 16; w1..w3 the 12 scale bytes q:
// sub-block s < 4: sc = q[s] & 63, m = q[s + 4] & 63; s >= 4: sc = (q[s + 4] & 15) |
// (q[s - 4] >> 6) << 4, m = (q[s + 4] >> 4) | (q[s] >> 6) << 4.
struct KQuantRowScales {
  int sc[2][2];
  float m[2], d;
};

// The lane's header bytes of both of its rows: KQuantHeaderBytes{j, p}.sc picks q[2 j],
// q[2 j + 1] of row a then of row b out of two header words (__byte_perm), .m picks q[2 j + p]
// of row a and of row b, so each mask and shift below serves both rows.
struct KQuantHeaderBytes {
  uint32_t sc, m;
  __device__ KQuantHeaderBytes(int j, int p)
      : sc(uint32_t(2 * j) | uint32_t(2 * j + 1) << 4 | uint32_t(2 * j + 4) << 8 | uint32_t(2 * j + 5) << 12),
        m(uint32_t(2 * j + p) | uint32_t(2 * j + p + 4) << 4) {}
};

// The sub-blocks' 6-bit scales, from the header words holding q[0..3] and q[8..11], and mins,
// from q[4..7] and q[8..11] (formulas above), four sub-blocks per word: .x sub-blocks s < 4,
// .y s >= 4. Byte i of the result comes from byte i of the words, which may be byte_perms of
// two rows' words.
__device__ __forceinline__ uint2 kquant_scales(uint32_t q0, uint32_t q8) {
  return make_uint2(q0 & 0x3f3f3f3fu, (q8 & 0x0f0f0f0fu) | ((q0 >> 2) & 0x30303030u));
}
__device__ __forceinline__ uint2 kquant_mins(uint32_t q4, uint32_t q8) {
  return make_uint2(q4 & 0x3f3f3f3fu, ((q8 >> 4) & 0x0f0f0f0fu) | ((q4 >> 2) & 0x30303030u));
}

// Rows a and b's scales (KQuantRowScales) from their headers ha, hb.
__device__ __forceinline__ void kquant_row_scales(const uint4& ha, const uint4& hb, KQuantHeaderBytes sel,
                                                  KQuantRowScales& ra, KQuantRowScales& rb) {
  // .x: step 0's sub-blocks, .y: step 1's; the mins' bytes 0 and 1 are rows a and b.
  const uint2 sc = kquant_scales(__byte_perm(ha.y, hb.y, sel.sc), __byte_perm(ha.w, hb.w, sel.sc));
  const uint2 mn = kquant_mins(__byte_perm(ha.z, hb.z, sel.m), __byte_perm(ha.w, hb.w, sel.m));
  const uint32_t s0 = sc.x, s1 = sc.y, m0 = mn.x, m1 = mn.y;
  auto byte = [](uint32_t v, int i) { return (v >> (8 * i)) & 0xffu; };
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    ra.sc[0][c] = int(byte(s0, c)), rb.sc[0][c] = int(byte(s0, 2 + c));
    ra.sc[1][c] = int(byte(s1, c)), rb.sc[1][c] = int(byte(s1, 2 + c));
  }
  const float2 da = __half22float2(*reinterpret_cast<const __half2*>(&ha.x));
  const float2 db = __half22float2(*reinterpret_cast<const __half2*>(&hb.x));
  ra.d = da.x, rb.d = db.x;
  ra.m[0] = float(byte(m0, 0)) * da.y, rb.m[0] = float(byte(m0, 1)) * db.y;
  ra.m[1] = float(byte(m1, 0)) * da.y, rb.m[1] = float(byte(m1, 1)) * db.y;
}

// The superblock layouts, in 16-byte units: the header, the high bits (Q5_K), the codes.
template <bool kFive>
struct KQuantI8Format {
  static constexpr int kUnits = kFive ? 11 : 9, kHighBits = 1, kCodes = kFive ? 3 : 1;
  // Q5_K's high bits and code building take ~118 registers unbounded; at 72 (7 blocks per SM)
  // or 80 (6) the spills cost more than the blocks gain (18.98 us at 6 blocks against 14.16 at
  // 5, N = 14336, K = 4096: bench/NOTES.md, run 66), so it runs 5 blocks of 94 registers.
  static constexpr int kMinBlocks = kFive ? 5 : QmvI8Config::kMinBlocks;
};

// p (QmmParams, quant_mlx_qmv.cuh, for its routing and rows; scales and biases unused):
// packed = the weight [experts, n, k] (k % 256 == 0, 16-byte aligned), x = x's image
// (QmvI8Image, NibbleOrder::kHalves, x groups of 64; x_stride in 16-byte units), one x row per
// unit: a plain single-row call (m = 1) or one routed slot. Grid: (units, row tiles of 16). A
// row tile spans fewer than 2^31 16-byte units after its first row (launcher). kFive: Q5_K,
// else Q4_K.
template <class CT, bool kFive>
__global__ void __launch_bounds__(QmvI8Config::kThreads, KQuantI8Format<kFive>::kMinBlocks)
    kquant_i8_kernel(qmlx::QmmParams p) {
  using F = KQuantI8Format<kFive>;
  constexpr int NW = QmvI8Config::kWarps, kStride = NW * F::kUnits;  // a warp's superblock step
  using I = QmvI8Image;
  __shared__ float red[NW][32][2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, n = int(p.n), k = int(p.k), sbs = k / 256;
  const int64_t row_units = int64_t(sbs) * F::kUnits;

  if (p.ids) pdl_wait();  // routed: the ids may come from the kernel before the x kernel
  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, 1, n0, g, un, ra, rb)) return;
  // Rows a and b at this warp's current superblock: one pointer each, with the lane's code
  // unit folded in, so the ring's loads are a pointer and an immediate offset (with a row
  // offset instead, ptxas rebuilt it from n before every load, ~35 instructions a superblock).
  const uint4* wa = reinterpret_cast<const uint4*>(p.packed) + ra * row_units + warp * F::kUnits + t;
  const uint4* wb = wa + rb * row_units;
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0;

  // The ring: codes per step of a superblock, the superblock's headers, and (Q5_K) the high
  // bits of the lane's 16 values per sub-block: unit t % 2 of the 32 bytes. `ahead`: 0 for
  // the current superblock, kStride for the next.
  uint4 ca[2], cb[2], ha, hb, qa, qb;
  auto load_codes = [&](int h, int ahead) {
    ca[h] = load_weight(wa + ahead + F::kCodes + 4 * h);  // W is read once (math.cuh, load_weight)
    cb[h] = load_weight(wb + ahead + F::kCodes + 4 * h);
  };
  auto load_header = [&](int ahead) {
    ha = load_weight(wa + ahead - t);
    hb = load_weight(wb + ahead - t);
  };
  auto load_high_bits = [&](int ahead) {
    qa = load_weight(wa + ahead + F::kHighBits + (t & 1) - t);
    qb = load_weight(wb + ahead + F::kHighBits + (t & 1) - t);
  };
  if (count > 0) {
    load_codes(0, 0);
    load_codes(1, 0);
    load_header(0);
    if constexpr (kFive) load_high_bits(0);
  }
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* img = static_cast<const uint4*>(p.x) + un.x_row * p.x_stride;
  int lo_unit, hi_unit;
  group_part_class_units(g, t, lo_unit, hi_unit);
  const uint4* xl_p = img + 2 * warp * I::kStepUnits + lo_unit;
  const uint4* xh_p = img + 2 * warp * I::kStepUnits + hi_unit;
  const float2* table = reinterpret_cast<const float2*>(img + I::table_unit(k)) + 4 * 2 * warp + t;
  // From step 1 of a superblock to the next one's step 0.
  constexpr int kXNext = (2 * NW - 1) * I::kStepUnits;
  const int chunk = t >> 1;
  const KQuantHeaderBytes header_bytes(chunk, t & 1);

  float acc_a = 0.f, acc_b = 0.f;
  for (int i = 0; i < count; ++i) {
    const bool more = i + 1 < count;
    KQuantRowScales sa, sb;
    kquant_row_scales(ha, hb, header_bytes, sa, sb);
    if (more) load_header(kStride);
    // Q5_K: the high bits, shifted so that bit 0 of each byte is the step's sub-block 2 chunk
    // (+ 4 at step 1) and bit 1 the next one. Step 1's are taken once step 0 has used the
    // loaded ones, and the next superblock's then load into their registers.
    uint4 bits_a, bits_b;
    auto shr = [](const uint4& v, int s) { return make_uint4(v.x >> s, v.y >> s, v.z >> s, v.w >> s); };
    if constexpr (kFive) {
      bits_a = shr(qa, 2 * chunk);
      bits_b = shr(qb, 2 * chunk);
    }
    float da = 0.f, db = 0.f, ma = 0.f, mb = 0.f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint4 xl = __ldg(xl_p), xh = __ldg(xh_p);
      const float2 fx = __ldg(table);
      xl_p += h ? kXNext : I::kStepUnits;
      xh_p += h ? kXNext : I::kStepUnits;
      table += h ? 4 * (2 * NW - 1) : 4;
      int c[4] = {0, 0, 0, 0};
      if constexpr (kFive) {
        // Code bytes (nibble | high bit << 4) of each class: the low class takes bit 0 of
        // the shifted high bits, the high class bit 1.
        constexpr uint32_t kLow = 0x0f0f0f0fu, kBit = 0x10101010u;
        auto lo1 = [](uint32_t q, uint32_t b) { return (q & kLow) | ((b << 4) & kBit); };
        auto hi1 = [](uint32_t q, uint32_t b) { return ((q >> 4) & kLow) | ((b << 3) & kBit); };
        auto build = [](auto f, const uint4& q, const uint4& b) {
          return make_uint4(f(q.x, b.x), f(q.y, b.y), f(q.z, b.z), f(q.w, b.w));
        };
        step_products(c, build(lo1, ca[h], bits_a), build(lo1, cb[h], bits_b), build(hi1, ca[h], bits_a),
                      build(hi1, cb[h], bits_b), xl, xh);
        if (h == 0) {
          bits_a = shr(bits_a, 4);
          bits_b = shr(bits_b, 4);
          if (more) load_high_bits(kStride);
        }
      } else {
        step_products<false>(c, ca[h], cb[h], xl, xh);
      }
      if (more) load_codes(h, kStride);
      // |sc c| < 2^23 per class (32 codes < 32, parts <= 2^7 in magnitude, sc < 64), the sum
      // < 2^24: exact as a float.
      const int hs = kFive ? 0 : 4;  // Q4_K's high class is 16 q
      const int va = sa.sc[h][0] * c[0] + sa.sc[h][1] * (c[1] >> hs);
      const int vb = sb.sc[h][0] * c[2] + sb.sc[h][1] * (c[3] >> hs);
      da = fmaf(float(va), fx.x, da);
      db = fmaf(float(vb), fx.x, db);
      ma = fmaf(sa.m[h], fx.y, ma);
      mb = fmaf(sb.m[h], fx.y, mb);
    }
    wa += kStride;
    wb += kStride;
    acc_a = fmaf(sa.d, da, acc_a) - ma;
    acc_b = fmaf(sb.d, db, acc_b) - mb;
  }
  store_tile<CT>(acc_a, acc_b, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, n0, n);
}

}  // namespace mlxn::kernels
