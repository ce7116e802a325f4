#pragma once
// MLX affine quantized matmul for many rows of x (prefill) on the tensor cores.
//
// Block tile: 128 rows of x (tokens) x 128 rows of W, K in steps of 64; 8 warps, each
// 64 tokens x 32 W rows, mma.m16n8k16 with f32 accumulators; two blocks per SM. A 3- or
// 4-stage cp.async pipeline brings x tiles (bf16/f16, swizzled 16-byte chunks) and raw
// packed W into shared memory; each thread owns one 32-value chunk of W per step (row
// tid / 2, half tid % 2), turns it into x's 16-bit type in registers (quant_mlx.cuh), and
// stores it in natural k order into a double-buffered, swizzled bf16/f16 tile that ldmatrix
// then reads like any GEMM operand. Step kt + 1 is dequantized while step kt's MMAs run
// (one barrier per step), so the conversion overlaps the tensor cores.
#include "cuda/kernels/quant_mlx_qmv.cuh"

namespace mlxn::kernels::qmlx {

struct QmmTile {
  static constexpr int kBM = 128, kBN = 128, kBK = 64, kThreads = 256;
  template <int BITS>
  static constexpr int bytes(int stages) {
    return stages * kBM * kBK * 2 + stages * kThreads * BITS * 4 + 2 * kBN * kBK * 2;
  }
  // 4 stages where two blocks still fit in an SM's 227 KB, else 3.
  template <int BITS>
  static constexpr int stages() {
    return 2 * bytes<BITS>(4) <= 227 * 1024 ? 4 : 3;
  }
  template <int BITS>
  static constexpr int smem_bytes() {
    return bytes<BITS>(stages<BITS>());
  }
};

// Plain matmul only (units are not used): out [M, N] = x [M, K] · W^T. Requires x rows and
// the packed matrix 16-byte aligned.
template <class CT, class ST, int BITS>
__global__ void __launch_bounds__(256, 2) qmm_mma_kernel(QmmParams p) {
  using Tl = QmmTile;
  constexpr int BM = Tl::kBM, BN = Tl::kBN, BK = Tl::kBK, S = Tl::stages<BITS>(), NT = Tl::kThreads;
  constexpr bool kFast = std::is_same_v<ST, CT> && BITS <= Pair<CT>::kMagicBits;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  CT* xs = reinterpret_cast<CT*>(smem_raw);                                         // [S][BM * BK]
  uint32_t* wraw = reinterpret_cast<uint32_t*>(smem_raw + S * BM * BK * 2);         // [S][NT * BITS]
  CT* wbf = reinterpret_cast<CT*>(smem_raw + S * BM * BK * 2 + S * NT * BITS * 4);  // [2][BN * BK]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int64_t M = p.m, N = p.n, K = p.k, row_words = K * BITS / 32, groups = K / p.gs;
  const int ktiles = int((K + BK - 1) / BK);
  const CT* x = static_cast<const CT*>(p.x);
  const auto* scales = static_cast<const ST*>(p.scales);
  const auto* biases = static_cast<const ST*>(p.biases);

  // This thread's W chunk: row wr of the tile, values [32 wc, 32 wc + 32) of each K step.
  const int wr = tid / 2, wc = tid % 2;
  const int64_t wn = n0 + wr;
  const bool wrow_ok = wn < N;
  const uint32_t* wsrc = p.packed + (wrow_ok ? wn : 0) * row_words;

  auto issue = [&](int kt) {
    const int slot = kt % S;
    if (kt < ktiles) {
      CT* xd = xs + slot * BM * BK;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int idx = tid + i * NT, r = idx / 8, c = idx % 8;
        const int64_t row = m0 + r, k = int64_t(kt) * BK + c * 8;
        const bool ok = row < M && k < K;
        cp_async<16>(xd + swz(r, c), ok ? x + row * p.x_stride + k : x, ok);
      }
      const int64_t k = int64_t(kt) * BK + 32 * wc;
      const bool ok = wrow_ok && k < K;
      cp_async_chunk<BITS>(wraw + slot * NT * BITS + tid * BITS, ok ? wsrc + k * BITS / 32 : p.packed, ok);
    }
    cp_async_commit();  // possibly empty: keeps the group count uniform
  };
  const ST* srow = scales + (wrow_ok ? wn : 0) * groups;
  const ST* brow = biases + (wrow_ok ? wn : 0) * groups;
  auto load_scale = [&](int kt, float& s, float& b) {
    const int k = kt * BK + 32 * wc;  // int: K < 2^30
    if (kt < ktiles && wrow_ok && k < K) {
      s = to_f32(srow[k >> p.gs_shift]);
      b = to_f32(brow[k >> p.gs_shift]);
    } else {
      s = b = 0.f;
    }
  };
  // Dequantizes step kt's chunk (already landed) into wbf[kt & 1], natural k order.
  auto dequant = [&](int kt, float s, float b) {
    uint32_t w[BITS];
    const uint32_t* src = wraw + (kt % S) * NT * BITS + tid * BITS;
#pragma unroll
    for (int i = 0; i < BITS; ++i) w[i] = src[i];
    uint32_t r[16];
    dequant_pairs<CT, BITS, kFast>(w, s, b, r);
    CT* wd = wbf + (kt & 1) * BN * BK;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      uint4 v;
      v.x = natural<BITS>(r, 4 * c);
      v.y = natural<BITS>(r, 4 * c + 1);
      v.z = natural<BITS>(r, 4 * c + 2);
      v.w = natural<BITS>(r, 4 * c + 3);
      *reinterpret_cast<uint4*>(wd + swz(wr, 4 * wc + c)) = v;
    }
  };

#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i);
  float s0, b0, s1, b1;
  load_scale(0, s0, b0);
  load_scale(1, s1, b1);
  cp_async_wait<S - 2>();  // step 0 landed
  dequant(0, s0, b0);

  const int wm0 = (warp / 4) * 64, wn0 = (warp % 4) * 32;
  float acc[4][4][4] = {};

  for (int kt = 0; kt < ktiles; ++kt) {
    // Steps <= kt + 1 landed (S - 1 + kt groups committed, S - 3 may be pending); after the
    // barrier: wbf[kt & 1] is complete, and every warp is done with step kt - 1's buffers.
    if constexpr (S >= 3) cp_async_wait<S - 3>();
    __syncthreads();
    issue(kt + S - 1);
    float s2, b2;
    load_scale(kt + 2, s2, b2);
    if (kt + 1 < ktiles) dequant(kt + 1, s1, b1);
    s1 = s2;
    b1 = b2;

    const CT* xa = xs + (kt % S) * BM * BK;
    const CT* wb = wbf + (kt & 1) * BN * BK;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t a[4][4], b[2][4];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) ldmatrix_x4(a[mi], xa + swz(wm0 + mi * 16 + (lane % 16), kk * 2 + lane / 16));
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        const int mat = lane / 8;
        ldmatrix_x4(b[nj], wb + swz(wn0 + nj * 16 + (mat / 2) * 8 + lane % 8, kk * 2 + (mat % 2)));
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
          mma16816<CT>(acc[mi][ni], a[mi][0], a[mi][1], a[mi][2], a[mi][3], b[ni / 2][(ni % 2) * 2],
                       b[ni / 2][(ni % 2) * 2 + 1]);
    }
  }
  cp_async_wait<0>();

  CT* out = static_cast<CT*>(p.out);
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t row = m0 + wm0 + mi * 16 + g + (c >= 2 ? 8 : 0);
        const int64_t n = n0 + wn0 + ni * 8 + 2 * t + (c & 1);
        if (row < M && n < N) out[row * p.out_stride + n] = from_f32<CT>(acc[mi][ni][c]);
      }
}

}  // namespace mlxn::kernels::qmlx
