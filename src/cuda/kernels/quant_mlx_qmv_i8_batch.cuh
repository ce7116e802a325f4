#pragma once
// MLX affine 4-bit mat-vec on the integer tensor cores for 2..8 rows of x (decode of a small
// batch), group size 64 or 128, on the batch image (qmv_i8_batch.cuh says why and how): per
// 128-value step (two x groups of 64, 32 code bytes each) lane t of a quad takes bytes
// 8t .. 8t + 7 of each group. Both nibble classes of a byte are one group, so the high
// nibbles are shifted down and share the low ones' accumulator; each part (h, l) has its
// own: 8 mma per step for all 8 rows of x.
//
// Block: 16 rows of W, 4 warps splitting K in steps, each with its own shared-memory ring of
// codes (cp.async), so that the bytes in flight do not cost registers; the tile's scales and
// biases are staged once. Lane (g, t) ends with rows g and g + 8 by x rows 2t and 2t + 1.
#include "cuda/kernels/qmv_i8_batch.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels::qmlx {

// Shared memory of the batch kernel: per warp a ring of kRing stages, each the step's codes of
// the tile's 16 rows (64 bytes each at a 96-byte pitch: the 8 rows a warp load reads fall in
// disjoint banks); then the tile's scales and biases, [2][16 rows][groups] (rows padded),
// copied once at the start (per-step 4-byte copies of them doubled the L2 transactions).
template <class ST>
struct QmvI8BatchSmem {
  static constexpr int kPitch = 96, kStage = 16 * kPitch, kRing = 3;
  static constexpr int kCodes = QmvI8BatchConfig::kWarps * kRing * kStage;
  // A row of scales (whole 4-byte words) and one word of padding.
  static constexpr int pitch_words(int64_t groups) { return int(groups * int64_t(sizeof(ST)) / 4) + 1; }
  static constexpr int64_t scale_bytes(int64_t groups) { return 2 * 16 * 4 * int64_t(pitch_words(groups)); }
  static constexpr int64_t bytes(int64_t groups) { return kCodes + scale_bytes(groups); }
};

// CT: x's dtype; ST: the scales'; GS: 64 or 128. p.x: the batch image (QmvI8Batch), p.m in
// 1..8 rows, no routing. Grid: (1, row tiles of 16); dynamic shared memory
// QmvI8BatchSmem<ST>::bytes(K / GS). Requires K % 128 == 0, the packed matrix 16-byte aligned
// and scales and biases 4-byte aligned with rows of whole 4-byte words.
template <class CT, class ST, int GS>
__global__ void __launch_bounds__(QmvI8BatchConfig::kThreads, QmvI8BatchConfig::kMinBlocks)
    qmv_i8_batch_kernel(QmmParams p) {
  using I = QmvI8Batch<>;
  using Sm = QmvI8BatchSmem<ST>;
  constexpr int NW = I::kWarps, S = Sm::kRing;
  static_assert(GS == 64 || GS == 128, "x groups of 64 lie in one weight group");
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float red[NW][32][4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = int(blockIdx.y) * 16, N = int(p.n), K = int(p.k), groups = K / GS, steps = K / 128;
  uint8_t* ring = smem + warp * S * Sm::kStage;
  const ST* staged = reinterpret_cast<const ST*>(smem + Sm::kCodes);

  Unit un;
  int64_t ra;
  int rb;
  if (!tile_rows<CT>(p, I::kRows, n0, g, un, ra, rb)) return;
  // The tile's scales and biases, whole rows in 4-byte pieces (rows past N copy row N - 1),
  // at a pitch of one word more than a row: the 8 rows a warp reads at once in different banks
  // (at the bare pitch, 128 bytes at group size 64, all 8 fell in one bank: 17.1 us against
  // 11.3 at group size 128, run 91).
  const int pitch = Sm::pitch_words(groups);
  stage_tile_scales<4, I::kThreads>(smem + Sm::kCodes, 4 * pitch, p.scales, p.biases, 0, n0, N,
                                    groups * int(sizeof(ST)));
  // The ring's copies: lane (g, t) moves 16-byte unit t of its rows a and b's 64 code bytes;
  // every lane later reads only its own rows' bytes, which its quad copied (so __syncwarp per
  // stage, no block barrier).
  const uint4* wa = reinterpret_cast<const uint4*>(p.packed) + ra * (K / 32) + warp * 4 + t;
  const int w_b = rb * (K / 32);
  const int count = steps > warp ? (steps - warp + NW - 1) / NW : 0;
  auto issue = [&](int i) {
    if (i < count) {
      uint8_t* st = ring + (i % S) * Sm::kStage;
      cp_async<16>(st + g * Sm::kPitch + 16 * t, wa);
      cp_async<16>(st + (g + 8) * Sm::kPitch + 16 * t, wa + w_b);
      wa += NW * 4;
    }
    cp_async_commit();  // one group per step, even empty, so that waits count steps
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i);
  // The weight loads above go out before the wait (qmv_i8_prepare_x says why that is safe).
  pdl_wait();
  pdl_launch_dependents();

  const uint4* xp = static_cast<const uint4*>(p.x) + warp * I::kStepUnits + lane;
  const float4* tp = reinterpret_cast<const float4*>(static_cast<const uint4*>(p.x) + I::table_unit(K)) +
                     warp * 2 * I::kRows / 2 + t;  // float4 = x rows 2t, 2t + 1
  // Row a's scale of the lane's first step; row b's, the biases at fixed offsets (elements).
  constexpr int kPerWord = 4 / sizeof(ST);
  const ST* sp = staged + g * pitch * kPerWord + warp * 128 / GS;
  const int s_b = (rb ? 8 : 0) * pitch * kPerWord, s_bias = 16 * pitch * kPerWord;
  cp_async_wait<S - 1>();  // the scales' group, the first, has landed (the ring's stay in flight)
  __syncthreads();         // and so have every other thread's pieces

  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // (row a, x row 2t), (a, 2t + 1), (b, 2t), (b, 2t + 1)
  for (int i = 0; i < count; ++i) {
    issue(i + S - 1);
    cp_async_wait<S - 1>();  // this lane's copies of step i have landed
    __syncwarp();            // and so have its quad's
    const uint8_t* st = ring + (i % S) * Sm::kStage;
    // The step's two x groups' weight groups: 2 s, 2 s + 1 (GS = 64) or s twice.
    auto pair = [&](const ST* q) {
      return GS == 64 ? make_float2(to_f32(q[0]), to_f32(q[1])) : make_float2(to_f32(q[0]), to_f32(q[0]));
    };
    const float2 sw_a2 = pair(sp), sw_b2 = pair(sp + s_b), bw_a2 = pair(sp + s_bias), bw_b2 = pair(sp + s_bias + s_b);
    sp += NW * 128 / GS;
#pragma unroll
    for (int G = 0; G < 2; ++G) {
      constexpr uint32_t kLow = 0x0f0f0f0fu;
      const uint2 wa2 = *reinterpret_cast<const uint2*>(st + g * Sm::kPitch + 32 * G + 8 * t);
      const uint2 wb2 = *reinterpret_cast<const uint2*>(st + (g + 8) * Sm::kPitch + 32 * G + 8 * t);
      const uint4 xh = __ldg(xp + (2 * G) * I::kFragUnits), xl = __ldg(xp + (2 * G + 1) * I::kFragUnits);
      const float4 e = __ldg(tp + G * I::kRows / 2);
      int ch[4] = {0, 0, 0, 0}, cl[4] = {0, 0, 0, 0};
      // Low nibbles, then high nibbles shifted down: words x and y are k slots 4t and 16 + 4t.
      const uint32_t a0 = wa2.x & kLow, a1 = wb2.x & kLow, a2 = wa2.y & kLow, a3 = wb2.y & kLow;
      const uint32_t h0 = (wa2.x >> 4) & kLow, h1 = (wb2.x >> 4) & kLow;
      const uint32_t h2 = (wa2.y >> 4) & kLow, h3 = (wb2.y >> 4) & kLow;
      mma_u8s8(ch, a0, a1, a2, a3, xh.x, xh.y);
      mma_u8s8(ch, h0, h1, h2, h3, xh.z, xh.w);
      mma_u8s8(cl, a0, a1, a2, a3, xl.x, xl.y);
      mma_u8s8(cl, h0, h1, h2, h3, xl.z, xl.w);
      const float sw_a = G ? sw_a2.y : sw_a2.x, sw_b = G ? sw_b2.y : sw_b2.x;
      const float bw_a = G ? bw_a2.y : bw_a2.x, bw_b = G ? bw_b2.y : bw_b2.x;
      // |256 c_h + c_l| < 2^31 (64 values x 15 x 2^15); as a float it is off by 2^-24.
      auto v = [&](int c) { return float(256 * ch[c] + cl[c]); };
      acc[0] += sw_a * e.x * v(0) + bw_a * e.y;
      acc[1] += sw_a * e.z * v(1) + bw_a * e.w;
      acc[2] += sw_b * e.x * v(2) + bw_b * e.y;
      acc[3] += sw_b * e.z * v(3) + bw_b * e.w;
    }
    __syncwarp();  // every lane is done with this slot before the next issue refills it
    xp += NW * I::kStepUnits;
    tp += NW * 2 * I::kRows / 2;
  }
  cp_async_wait<0>();
  store_batch_tile<CT>(acc, red, static_cast<CT*>(p.out) + un.out_row * p.out_stride, p.out_stride, n0, N, un.rows);
}

}  // namespace mlxn::kernels::qmlx
