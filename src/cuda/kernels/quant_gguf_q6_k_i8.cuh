#pragma once
// GGUF Q6_K mat-vec on the integer tensor cores (qmv_i8.cuh says why and how): one row of x by
// the weight, or each routed slot of one token by its expert; x bf16/f16.
//
// A Q6_K superblock is 210 bytes for 256 values: ql[128] (low 4 bits), qh[64] (high 2 bits),
// 16 int8 scales (one per 16 values), then d (f16). Value 128 h + 32 c + l of it (half h,
// class c < 4, l < 32) has the code
//   q = nibble (c >> 1) of ql[64 h + 32 (c & 1) + l] | (bits 2c, 2c + 1 of qh[32 h + l]) << 4
// and the value d * scales[8 h + 2 c + l / 16] * (q - 32).
//
// Lane t of a quad takes half h = t / 2 and l = l0 .. l0 + 15, l0 = 16 (t % 2): per class c
// the 16 codes of one scale, from three 16-byte pieces of its row (ql at 64 h + l0 and
// 64 h + 32 + l0, qh at 128 + 32 h + l0), each byte 4 (q - 32) as an int8 (q6k_codes): the s8 x s8
// mma needs no sum of x. Those values are, in x's K-quant image (NibbleOrder::kHalves), vector
// (t % 2) + 2 (c / 2) of step 2 sb + h, nibble class c % 2; the columns are "(vector, part)"
// as for Q4_0 (a lane's accumulators are its own vector's two parts):
//   row value += d * sum_c scales[c] * (s_x(c) / 4) * (256 c_h + c_l).
//
// Rows are 210 K / 256 bytes, so a superblock is only 2-byte aligned. Each warp stages its
// superblock of the tile's 16 rows in a shared-memory ring (the 14 aligned units that cover
// each row's at any even offset o), copied by the copy engine, and each lane shifts its pieces
// into place by o. Rows of whole units (K % 2048 == 0) know o per warp at compile time and copy
// a stage as one box of a tensor map; other rows take runtime offsets and a bulk copy per row.
//
// Block: 16 rows (a row tile), 4 warps splitting K by superblocks (warp w: w, w + 4, ...), each
// with its own ring of kRing superblocks (no block barrier before the final sum).
#include <cuda.h>

#include "cuda/kernels/bulk_copy.cuh"
#include "cuda/kernels/mma.cuh"
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

struct Q6KStage {
  static constexpr int kBytes = 210;
  // 16-byte units that cover a superblock at any even offset within its first unit.
  static constexpr int kUnits = 14, kPitch = 16 * kUnits, kStage = 16 * kPitch, kRing = 2;
  static constexpr int kSmem = QmvI8Config::kWarps * kRing * kStage;  // 28 KB: 7 blocks per SM
  static_assert(kStage % 128 == 0, "tile copies land 128-byte aligned");
};

// 16 bytes at row + at + o (at a multiple of 16, o even, o < 16) from shared memory: the two
// 16-byte units from row + at (two loads; at the 224-byte pitch the rows a warp reads share no
// bank for the ql pieces, two for qh's), shifted by o bytes.
__device__ __forceinline__ uint4 q6k_piece(const uint8_t* row, int at, int o) {
  const uint4* v = reinterpret_cast<const uint4*>(row + at);
  const uint4 u0 = v[0], u1 = v[1];
  const uint32_t w[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
  const uint32_t sel = (o & 2) ? 0x5432u : 0x3210u;
  uint32_t x[7];  // words shifted by o & 3 bytes
#pragma unroll
  for (int i = 0; i < 7; ++i) x[i] = __byte_perm(w[i], w[i + 1], sel);
  const bool two = (o & 8) != 0, one = (o & 4) != 0;  // then by o / 4 words
  uint32_t y[5];
#pragma unroll
  for (int i = 0; i < 5; ++i) y[i] = two ? x[i + 2] : x[i];
  return make_uint4(one ? y[1] : y[0], one ? y[2] : y[1], one ? y[3] : y[2], one ? y[4] : y[3]);
}

// The same at a compile-time offset O: the words move by register naming, and only an odd
// half-word offset costs instructions (4 byte permutes).
template <int O>
__device__ __forceinline__ uint4 q6k_piece(const uint8_t* row, int at, std::integral_constant<int, O>) {
  const uint4* v = reinterpret_cast<const uint4*>(row + at);
  if constexpr (O == 0) {
    return v[0];
  } else {
    const uint4 u0 = v[0], u1 = v[1];
    const uint32_t w[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
    constexpr int k = O >> 2;
    if constexpr ((O & 2) == 0) return make_uint4(w[k], w[k + 1], w[k + 2], w[k + 3]);
    return make_uint4(__byte_perm(w[k], w[k + 1], 0x5432), __byte_perm(w[k + 1], w[k + 2], 0x5432),
                      __byte_perm(w[k + 2], w[k + 3], 0x5432), __byte_perm(w[k + 3], w[k + 4], 0x5432));
  }
}

// Four signed codes of class C, each 4 (q - 32), from words of the pieces: l1 = ql at 64 h + l0,
// l2 = ql 32 bytes on, hb = qh. A code byte holds q's 6 bits in its bits 2..7 with the top one
// (bit 5 of q) flipped: q - 32 in 6-bit two's complement, so the byte read as int8 is 4 (q - 32),
// with no sign to extend (the caller divides the 4 out of s_x).
// Per word: the nibbles and high bits shifted into place, merged in one LOP3 with the nibble
// mask, then bits 0..1 cleared and bit 7 flipped in one LOP3 with both masks (written out: from
// plain C++ the compiler made 3 LOP3 of the 2, and moved a flip of hb past the shifts, 5
// instructions a word instead of 4, bench/NOTES.md run 134).
template <int C>
__device__ __forceinline__ uint32_t q6k_codes(uint32_t l1, uint32_t l2, uint32_t hb) {
  constexpr uint32_t kNibble = 0x3c3c3c3cu;
  const uint32_t ql = C & 1 ? l2 : l1;
  const uint32_t nib = C >> 1 ? ql >> 2 : ql << 2;
  const uint32_t top = C == 0 ? hb << 6 : C == 1 ? hb << 4 : C == 2 ? hb << 2 : hb;
  uint32_t merged, code;
  asm("lop3.b32 %0, %1, %2, %3, 0xe2;"
      : "=r"(merged)
      : "r"(nib), "n"(kNibble), "r"(top));  // nib where the mask is set, else top
  asm("lop3.b32 %0, %1, %2, %3, 0x28;"
      : "=r"(code)
      : "r"(merged), "r"(0x80808080u), "r"(0xfcfcfcfcu));  // (m ^ 0x80..) & 0xfc..
  return code;
}

template <int C>
__device__ __forceinline__ uint4 q6k_codes(const uint4& l1, const uint4& l2, const uint4& hb) {
  return make_uint4(q6k_codes<C>(l1.x, l2.x, hb.x), q6k_codes<C>(l1.y, l2.y, hb.y), q6k_codes<C>(l1.z, l2.z, hb.z),
                    q6k_codes<C>(l1.w, l2.w, hb.w));
}

// One row's pieces of a superblock for lane (half h, l0), and where its scales and d are in the
// stage.
struct Q6KRowPart {
  uint4 l1, l2, hb;
  const uint8_t* sb;  // the superblock's first byte in the stage
  // o: the superblock's offset in the row's first unit, an int or a std::integral_constant.
  template <class Off>
  __device__ Q6KRowPart(const uint8_t* row, Off o, int h, int l0) : sb(row + int(o)) {
    l1 = q6k_piece(row, 64 * h + l0, o);
    l2 = q6k_piece(row, 64 * h + 32 + l0, o);
    hb = q6k_piece(row, 128 + 32 * h + l0, o);
  }
  // Class c's scale (c < 4) and d. The int8 s becomes a float through 2^23's bit pattern with
  // s + 128 in its low byte (2^23 + 128 + s), less 2^23 + 128: two full-rate instructions where
  // the compiler's conversion of an int8 is an I2F.S16, a quarter-rate one.
  __device__ float scale(int h, int l0, int c) const {
    const uint32_t b = sb[192 + 8 * h + 2 * c + l0 / 16];
    return __uint_as_float(0x4b000000u | (b ^ 0x80u)) - 8388736.f;
  }
  __device__ float d() const { return __half2float(*reinterpret_cast<const __half*>(sb + 208)); }
};

// p (QmmParams, quant_mlx_qmv.cuh, for its routing and rows; scales and biases unused):
// packed = the weight [experts, n, k] (k % 256 == 0, 16-byte aligned), x = x's image
// (QmvI8Image, NibbleOrder::kHalves, x groups of 64; x_stride in 16-byte units), one x row per
// unit. Grid: (units, row tiles of 16). kAligned: rows are whole 16-byte units (K % 2048 == 0),
// so every superblock's offset within its first unit is known per warp at compile time, and
// `rows` maps the weight as a byte matrix [experts n, row bytes] in boxes of 16 rows by 224
// bytes (Q6KStage); else it is unused.
template <class CT, bool kAligned>
__global__ void __launch_bounds__(QmvI8Config::kThreads, QmvI8Config::kMinBlocks)
    q6_k_i8_kernel(qmlx::QmmParams p, const __grid_constant__ CUtensorMap rows) {
  using Sm = Q6KStage;
  using I = QmvI8Image;
  constexpr int NW = QmvI8Config::kWarps, S = Sm::kRing;
  __shared__ __align__(128) uint8_t smem[Sm::kSmem];  // tile copies land 128-byte aligned
  __shared__ float red[NW][32][2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, n = int(p.n), k = int(p.k), sbs = k / 256;
  const int64_t row_bytes = int64_t(sbs) * Sm::kBytes;
  uint8_t* ring = smem + warp * S * Sm::kStage;

  if (p.ids) pdl_wait();  // routed: the ids may come from the kernel before the x kernel
  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, 1, n0, g, un, ra, rb)) return;
  const uint8_t* w = reinterpret_cast<const uint8_t*>(p.packed);
  auto row_of = [&](int r) { return w + (un.expert * n + min(n0 + r, n - 1)) * row_bytes; };
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0;

  // The copies, by the copy engine, counted on the slot's barrier. Rows of whole units (kAligned):
  // lane 0 moves the tile's 16 rows of the covering units as one box of the weight's tensor map
  // (the box's rows past the weight, and its bytes past a row's end, land as zeros). Else lane
  // r < 16 moves row r's with one bulk copy; the last unit of the weight's last superblock may
  // extend past its end, and its bytes up to the end move by cp.async, zero-filled past it.
  // (Per-lane 16-byte cp.async, 8 per lane and superblock, kept the MIO queue full, and 16 bulk
  // copies a superblock cost ~180 instructions of a warp's ~550: bench/NOTES.md run 134.)
  __shared__ uint64_t full[NW][S];  // per warp and slot: its copies' arrivals and bytes
  if (lane == 0)
    for (int j = 0; j < S; ++j) mbar_init(&full[warp][j], kAligned ? 1 : 16);
  __syncwarp();
  const uint8_t* copy_row = row_of(lane % 16);
  const uint8_t* w_end = w + p.experts * n * row_bytes;
  auto issue = [&](int i) {
    uint8_t* stage = ring + (i % S) * Sm::kStage;
    uint64_t* bar = &full[warp][i % S];
    const int at = Sm::kBytes * (warp + NW * i);  // the superblock's first byte in its row
    if constexpr (kAligned) {
      if (i < count && lane == 0) {
        mbar_arrive_expect(bar, Sm::kStage);
        tile_copy_g2s(stage, &rows, at & ~15, int(un.expert * n + n0), bar);
      }
    } else if (i < count && lane < 16) {
      const uintptr_t sb = reinterpret_cast<uintptr_t>(copy_row + at);
      const uint8_t* src = reinterpret_cast<const uint8_t*>(sb & ~uintptr_t(15));  // the covering's first unit
      const int64_t left = w_end - src;
      const uint32_t bytes = left < Sm::kPitch ? uint32_t(left) & ~15u : uint32_t(Sm::kPitch);
      uint8_t* dst = stage + lane * Sm::kPitch;
      mbar_arrive_expect(bar, bytes);
      bulk_copy_g2s(dst, src, bytes, bar);
      if (bytes < Sm::kPitch && left > bytes) cp_async16_part(dst + bytes, src + bytes, int(left - bytes));
    }
    cp_async_commit();  // one group per superblock, even empty, so that waits count them
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const int h = t >> 1, l0 = 16 * (t & 1);
  // B lane (g, t) serves column g = (vector g / 2's values, part g % 2): its x units when the
  // vector is its own (class c at unit_c = base + 8 (c / 2) + c % 2), else the zero unit.
  const bool mine = (g >> 1) == t;
  const int x_base = mine ? 4 * (t & 1) + 2 * (g & 1) : 16, x_class = mine ? 1 : 0;
  const uint4* img = static_cast<const uint4*>(p.x) + un.x_row * p.x_stride;
  const float* table = reinterpret_cast<const float*>(img + I::table_unit(k));

  float acc_a = 0.f, acc_b = 0.f;
  // Superblock i of this warp, its offsets in rows a and b (ints, or compile-time constants).
  auto superblock = [&](int i, auto o_a, auto o_b) {
    issue(i + S - 1);
    mbar_wait(&full[warp][i % S], uint32_t(i / S) & 1u);  // superblock i's copies have landed
    cp_async_wait<S - 1>();                               // and this lane's tail copy
    __syncwarp();                                         // and every lane's
    const int sb = warp + NW * i, step = 2 * sb + h;
    const uint8_t* st = ring + (i % S) * Sm::kStage;
    const Q6KRowPart ra_part(st + g * Sm::kPitch, o_a, h, l0);
    const Q6KRowPart rb_part(st + (g + 8) * Sm::kPitch, o_b, h, l0);
    const uint4* xs = img + int64_t(step) * I::kStepUnits + x_base;
    // s_x / 4 (the codes are 4 (q - 32)) of the step's two x groups of 64 (classes 0, 1 and
    // 2, 3), from the table's part-1 entries.
    const float sx[2] = {0.25f * __ldg(table + 8 * step + 2), 0.25f * __ldg(table + 8 * step + 6)};
    float va = 0.f, vb = 0.f;
    [&]<int... C>(std::integer_sequence<int, C...>) {
      (
          [&] {
            const uint4 xb = __ldg(xs + x_class * (8 * (C >> 1) + (C & 1)));
            const uint4 ca = q6k_codes<C>(ra_part.l1, ra_part.l2, ra_part.hb);
            const uint4 cb = q6k_codes<C>(rb_part.l1, rb_part.l2, rb_part.hb);
            int c[4] = {0, 0, 0, 0};
            mma_s8s8(c, ca.x, cb.x, ca.y, cb.y, xb.x, xb.y);
            mma_s8s8(c, ca.z, cb.z, ca.w, cb.w, xb.z, xb.w);
            // |256 c_h + c_l| <= 16 * 128 * (127 * 256 + 128) < 2^27: off by at most 2^-24 as a float.
            const float f = ra_part.scale(h, l0, C) * sx[C >> 1], fb = rb_part.scale(h, l0, C) * sx[C >> 1];
            va = fmaf(f, float(256 * c[0] + c[1]), va);
            vb = fmaf(fb, float(256 * c[2] + c[3]), vb);
          }(),
          ...);
    }
    (std::make_integer_sequence<int, 4>{});
    acc_a = fmaf(ra_part.d(), va, acc_a);
    acc_b = fmaf(rb_part.d(), vb, acc_b);
    __syncwarp();  // every lane is done with this slot before the next issue refills it
  };
  if constexpr (kAligned) {
    // Rows of whole units: superblock sb of every row is at offset 210 sb % 16 = 2 sb % 16, so
    // warp w's are at 2 w and 2 w + 8 in turn, constants of a loop instantiated per warp.
    auto run = [&]<int O>(std::integral_constant<int, O> o) {
      constexpr std::integral_constant<int, (O + 8) % 16> o_next{};
      for (int i = 0; i < count; i += 2) {
        superblock(i, o, o);
        if (i + 1 < count) superblock(i + 1, o_next, o_next);
      }
    };
    switch (warp) {
      case 0:
        run(std::integral_constant<int, 0>{});
        break;
      case 1:
        run(std::integral_constant<int, 2>{});
        break;
      case 2:
        run(std::integral_constant<int, 4>{});
        break;
      default:
        run(std::integral_constant<int, 6>{});
        break;
    }
  } else {
    // The lane's rows a = g and b = g + 8 (as copied: past n, the last row); their superblocks'
    // offsets within a 16-byte unit follow from the rows' addresses.
    const uint32_t base_a = uint32_t(reinterpret_cast<uintptr_t>(row_of(g)));
    const uint32_t base_b = uint32_t(reinterpret_cast<uintptr_t>(row_of(g + 8)));
    for (int i = 0; i < count; ++i) {
      const uint32_t at = uint32_t(Sm::kBytes * (warp + NW * i));
      superblock(i, int((base_a + at) & 15u), int((base_b + at) & 15u));
    }
  }
  cp_async_wait<0>();
  store_tile<CT>(acc_a, acc_b, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, n0, n);
}

}  // namespace mlxn::kernels
