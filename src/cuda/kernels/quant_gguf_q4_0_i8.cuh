#pragma once
// GGUF Q4_0 mat-vec on the integer tensor cores (qmv_i8.cuh says why and how): one row of x by
// the weight, or each routed slot of one token by its expert; x bf16/f16, K % 256 == 0.
//
// A Q4_0 block is 18 bytes for 32 values: d (f16), then 16 code bytes whose low nibbles are
// values 0..15 and high nibbles 16..31, each value d (q - 8). Eight blocks (256 values) are 144
// bytes, nine 16-byte units, so a row of K % 256 == 0 is whole units and every load is a
// 16-byte vector; but a block straddles units. Lane t takes block 4 h + t of each 128-value
// step h of such a superblock: it loads unit 4 h + t, which holds the block's start, takes the
// next unit from the quad's next lane (lane 3: from lane 0's next step, or from the ninth unit,
// which every lane loads beside its ring), and shifts the block's d and 16 codes out of the
// pair. The step's columns are "(block, part)": lane t's accumulators are its own block, both
// parts, both nibble classes (the high nibbles shifted down), so its own d applies:
//   row value += d (s_x (256 c_h + c_l) - 8 * sum of x over the block)
// with s_x and the block's sum of x from the image's table (NibbleOrder::kBlocks).
//
// Block: 16 rows (a row tile), 4 warps splitting K by superblocks (warp w: w, w + 4, ...); per
// lane a register ring of both steps' units of its rows and their ninth units, each loaded a
// superblock before use, as the Q4_K kernel (quant_gguf_qmv_i8.cuh).
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels {

// Lane t's block of step h from the two units that hold it: u (its own, unit 4 h + t) and v
// (the next). The block starts at byte 8 h + 2 t of u, so word 2 h + t / 2 of the pair, upper
// half for odd t. Returns the 16 codes and sets d.
__device__ __forceinline__ uint4 q4_0_block(const uint4& u, const uint4& v, int h, int t, float& d) {
  const uint32_t w[8] = {u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w};
  const bool second = (t >> 1) != 0, odd = (t & 1) != 0;
  uint32_t y[5];  // the pair's words from the block's first
#pragma unroll
  for (int i = 0; i < 5; ++i)
    y[i] = second ? w[2 * h + 1 + i] : w[2 * h + i];  // h is a constant: the caller's loop unrolls
  d = __half2float(__ushort_as_half(uint16_t(__byte_perm(y[0], 0, odd ? 0x32 : 0x10))));
  // Codes at bytes 2..17 of the block: word i from bytes 2 + 4 i of y.
  const uint32_t sel = odd ? 0x7654 : 0x5432;
  return make_uint4(__byte_perm(y[0], y[1], sel), __byte_perm(y[1], y[2], sel), __byte_perm(y[2], y[3], sel),
                    __byte_perm(y[3], y[4], sel));
}

// p (QmmParams, quant_mlx_qmv.cuh, for its routing and rows; scales and biases unused):
// packed = the weight [experts, n, k] (k % 256 == 0, 16-byte aligned), x = x's image
// (QmvI8Image, NibbleOrder::kBlocks, x groups of 64; x_stride in 16-byte units), one x row per
// unit. Grid: (units, row tiles of 16). A row tile spans fewer than 2^31 16-byte units after its
// first row (launcher).
template <class CT>
__global__ void __launch_bounds__(QmvI8Config::kThreads, QmvI8Config::kMinBlocks) q4_0_i8_kernel(qmlx::QmmParams p) {
  constexpr int NW = QmvI8Config::kWarps, kUnits = 9, kStride = NW * kUnits;  // a warp's superblock step
  using I = QmvI8Image;
  __shared__ float red[NW][32][2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, k = int(p.k), sbs = k / 256;
  const int64_t row_units = int64_t(sbs) * kUnits;

  if (p.ids) pdl_wait();  // routed: the ids may come from the kernel before the x kernel
  qmlx::Unit un;
  int64_t ra;
  int rb;
  if (!qmlx::tile_rows<CT>(p, 1, n0, g, un, ra, rb)) return;
  // Rows a and b at this warp's current superblock, the lane's unit folded in.
  const uint4* wa = reinterpret_cast<const uint4*>(p.packed) + ra * row_units + warp * kUnits + t;
  const uint4* wb = wa + rb * row_units;
  const int count = sbs > warp ? (sbs - warp + NW - 1) / NW : 0;

  // The ring: each step's unit and the superblock's ninth unit; `ahead`: 0 for the current
  // superblock, kStride for the next.
  uint4 ca[2], cb[2], na, nb;
  auto load_units = [&](int h, int ahead) {
    ca[h] = load_weight(wa + ahead + 4 * h);  // W is read once (math.cuh, load_weight)
    cb[h] = load_weight(wb + ahead + 4 * h);
  };
  auto load_ninth = [&](int ahead) {
    na = load_weight(wa + ahead + 8 - t);
    nb = load_weight(wb + ahead + 8 - t);
  };
  if (count > 0) {
    load_units(0, 0);
    load_units(1, 0);
    load_ninth(0);
  }
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* img = static_cast<const uint4*>(p.x) + un.x_row * p.x_stride;
  // Columns "(block, part)", as MLX groups of 32 (vector_part_units).
  int lo_unit, hi_unit;
  vector_part_units(g, t, lo_unit, hi_unit);
  const uint4* xl_p = img + 2 * warp * I::kStepUnits + lo_unit;
  const uint4* xh_p = img + 2 * warp * I::kStepUnits + hi_unit;
  // Per step the table's two float2 of the lane's x group, as floats: (256 s_x, sum of x over
  // block 0 of the group, s_x, sum over block 1).
  const float* table = reinterpret_cast<const float*>(img + I::table_unit(k)) + 4 * (2 * 2 * warp + (t >> 1));
  const int next = (t + 1) & 3, src_lane = (lane & ~3) | next;  // the quad's next lane

  float acc_a = 0.f, acc_b = 0.f;
  for (int i = 0; i < count; ++i) {
    const bool more = i + 1 < count;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint4 xl = __ldg(xl_p), xh = __ldg(xh_p);
      const float sx = __ldg(table + 2), bias = -8.f * __ldg(table + 1 + 2 * (t & 1));
      xl_p += h ? (2 * NW - 1) * I::kStepUnits : I::kStepUnits;
      xh_p += h ? (2 * NW - 1) * I::kStepUnits : I::kStepUnits;
      table += h ? 8 * (2 * NW - 1) : 8;
      // The unit after each lane's own: the next lane's (lane 0 offers its step 1 unit at
      // step 0, for lane 3); at step 1 lane 3 takes the ninth.
      // Step 0's blocks end within the next unit's first 8 bytes, so two words move there.
      auto shfl4 = [&](const uint4& v) {
        const uint32_t x = __shfl_sync(0xffffffffu, v.x, src_lane), y = __shfl_sync(0xffffffffu, v.y, src_lane);
        if (h == 0) return make_uint4(x, y, 0u, 0u);
        return make_uint4(x, y, __shfl_sync(0xffffffffu, v.z, src_lane), __shfl_sync(0xffffffffu, v.w, src_lane));
      };
      // (Selected word by word: a select of whole vectors became a select of their addresses
      // and put the ring in local memory.)
      auto pick = [](bool c, const uint4& x, const uint4& y) {
        return make_uint4(c ? x.x : y.x, c ? x.y : y.y, c ? x.z : y.z, c ? x.w : y.w);
      };
      const bool offer_next = h == 0 && t == 0, take_ninth = h == 1 && t == 3;
      const uint4 va = pick(take_ninth, na, shfl4(pick(offer_next, ca[1], ca[h])));
      const uint4 vb = pick(take_ninth, nb, shfl4(pick(offer_next, cb[1], cb[h])));
      float da, db;
      const uint4 qa = q4_0_block(ca[h], va, h, t, da), qb = q4_0_block(cb[h], vb, h, t, db);
      if (more) load_units(h, kStride);
      if (h == 1 && more) load_ninth(kStride);
      int c[4] = {0, 0, 0, 0};
      step_products<true>(c, qa, qb, xl, xh);
      // |256 c_h + c_l| <= 32 * 15 * 2^15 < 2^24: exact as a float.
      acc_a = fmaf(da, fmaf(sx, float(256 * c[0] + c[1]), bias), acc_a);
      acc_b = fmaf(db, fmaf(sx, float(256 * c[2] + c[3]), bias), acc_b);
    }
    wa += kStride;
    wb += kStride;
  }
  store_tile<CT>(acc_a, acc_b, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, n0, int(p.n));
}

}  // namespace mlxn::kernels
