#pragma once
// The chunked delta rule on tensor cores (q/k/v in bf16 or f16, products in that type with
// f32 accumulation), in two kernels:
//
// prepare (one block per chunk and value head, all chunks at once):
//   g_cum = cumsum(g);  A = strictly-lower(beta_i k_i.k_j e^(gc_i - gc_j));  Ai = (I + A)^-1
//   Aqk = scale causal(q_i.k_j e^(gc_i - gc_j));  row factors (ScanRow)
// scan (one block per sequence, value head and 32 or 64 columns of V; chunks in order; on
// Hopper's warpgroup mma, one warpgroup carrying the state, one making the outputs), with the
// [K, BV] state slice h in registers (f32) and in shared memory (bf16/f16):
//   X = beta (v - e^gc (k h))        (= u - w h before the solve: Ai is applied after)
//   v_new = Ai X
//   o = e^gc scale (q h) + Aqk v_new
//   h = e^G h + k^T (v_new e^(G - gc))
// q and k enter the products raw; the l2 normalisation is a per-row factor applied to the
// results, so the kernels read q, k and v straight from the caller's tensors.
#include <type_traits>

#include "cuda/kernels/gdn_common.cuh"
#include "cuda/kernels/gdn_mma.cuh"
#include "cuda/kernels/wgmma.cuh"

namespace mlxn::kernels::gdn {

template <class CT>
struct ChunkParams {
  const CT *q, *k, *v;
  CT* out;
  int64_t q_tok, q_head, k_tok, k_head, v_tok, v_head, o_tok, o_head;
  const float* g;
  int64_t g_stride;
  const void* beta;
  int64_t beta_stride;
  int beta_kind;
  const float* h0;
  float* ht;
  SeqLayout seq;
  int H, group, V;
  float scale, l2_eps;
  bool l2;
  // prepare -> scan, per (slot, head): Ai and Aqk [64][64] CT; row factors [kScanRows][64] f32
  CT* Ai;
  CT* Aqk;
  float* rows;
};

enum RowScalar { kGc = 0, kBeta = 1, kRq = 2, kRk = 3 };  // the prepare's own row scalars

// The row factors the prepare hands the scan (exponentials taken once, off the scan's chain):
// gc; beta; e^gc |q|^-1 scale (q h's); e^gc |k|^-1 (k h's); e^(G - gc) |k|^-1 (the state
// update's), G the chunk's last gc. Rows past the chunk's length are 0 but for gc.
enum ScanRow { kRowGc = 0, kRowBeta = 1, kRowQ = 2, kRowK = 3, kRowD = 4, kScanRows = 5 };

constexpr int kThreads = 128;  // four warps, each 16 rows of a 64-token chunk

// Shared memory of the prepare kernel: the chunk's q and k tiles (swizzled, wgmma.cuh), then
// (once the products are in registers) A and its inverse N in the same bytes (f32, padded
// rows); a product scratch T and the row scalars. Sharing the bytes keeps K = 128 at 41 KB:
// 4 blocks per SM, not 3.
template <int K>
struct PrepareLayout {
  // Row strides: LDA = 4 mod 32 makes the inverse's product reads of A and N (rows g, columns
  // t) conflict-free and its rows 16-byte aligned (forward substitution reads them as float4);
  // LDT = 8 mod 32 does the same for the reads of T (rows t, columns g).
  static constexpr int LDA = kChunk + 4, LDT = 40;
  static constexpr int q = 0;                     // [64][K] CT, swizzled
  static constexpr int k = q + kChunk * K * 2;    // [64][K] CT, swizzled
  static constexpr int a = 0;                     // [64][LDA] f32, after the products
  static constexpr int n = a + kChunk * LDA * 4;  // [64][LDA] f32
  static constexpr int qk_end = k + kChunk * K * 2, an_end = n + kChunk * LDA * 4;
  static constexpr int t = ((qk_end > an_end ? qk_end : an_end) + 15) / 16 * 16;  // [32][LDT] f32
  static constexpr int rows = t + 32 * LDT * 4;                                   // [4][64] f32
  static constexpr int bytes = rows + 4 * kChunk * 4 + kSwizzleSlack;             // swizzle_pad
};

// Copies rows [0, 64) x cols [0, D) of a head (rows past len zero-filled) into a shared tile,
// element (r, c) at tile[offset(r, c)], 16 bytes per cp.async, over NT threads (tid:
// 0..NT-1). Thread i moves piece i % P of rows i / P, i / P + R, ...: a fixed column and a
// pointer stepped by R rows, so a copy costs a few instructions (per-copy index arithmetic once
// took 40% of the scan's), and a warp moves whole rows.
template <class CT, int D, int NT, class Offset>
__device__ __forceinline__ void load_rows(CT* tile, Offset offset, const CT* base, int64_t row_stride, int len,
                                          int tid) {
  constexpr int P = D / 8, R = NT / P;  // 16-byte pieces a row, rows a pass
  static_assert(NT % P == 0 && kChunk % R == 0, "whole passes");
  const int r0 = tid / P, c = (tid % P) * 8;
  const CT* src = base + r0 * row_stride + c;
#pragma unroll
  for (int i = 0; i < kChunk / R; ++i, src += R * row_stride) {
    CT* dst = tile + offset(r0 + i * R, c);
    if (len >= kChunk) {  // every chunk but a sequence's last
      cp_async<16>(dst, src);
    } else {
      const bool valid = r0 + i * R < len;
      cp_async16(dst, valid ? src : base, valid);
    }
  }
}

// The same into a padded tile (row stride ld).
template <class CT, int D, int NT>
__device__ __forceinline__ void load_tile(CT* tile, int ld, const CT* base, int64_t row_stride, int len, int tid) {
  load_rows<CT, D, NT>(
      tile, [ld](int r, int c) { return r * ld + c; }, base, row_stride, len, tid);
}

// The same into a swizzled tile (wgmma.cuh; whole 64-column strips): a warp's two whole rows
// fill all 32 banks.
template <class CT, int D, int NT>
__device__ __forceinline__ void load_swizzled(CT* tile, const CT* base, int64_t row_stride, int len, int tid) {
  static_assert(D % 64 == 0, "whole strips");
  load_rows<CT, D, NT>(
      tile, [](int r, int c) { return swizzled_offset(r, c); }, base, row_stride, len, tid);
}

// N = (I + A)^-1 of a strictly lower-triangular 64 x 64 A (f32, 16-byte aligned, row stride lda
// a multiple of 4), by doubling:
// warp w inverts diagonal block w (16 x 16) by forward substitution, a lane per column; then
// for S = 16 and 32 the diagonal blocks of 2S come from those of S:
//   [[D_top, 0], [A_low_top, D_low]]^-1 has lower-left block -D_low A_low_top D_top,
// two products on the tensor cores at f32 accuracy (product_16x8_f32), in 16 x 8 tiles dealt
// over the four warps, through the scratch T ([32][ldt]). The blocks above the diagonal are
// left unset, except (0, 1) and (2, 3), which the 32 x 32 step reads, zeroed first.
__device__ void invert_unit_lower(const float* A, float* N, int lda, float* T, int ldt) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, o = 16 * warp, c = lane & 15;
  if (lane < 16) {
    float x[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      float s = i == c ? 1.f : 0.f;
      const float4* row = reinterpret_cast<const float4*>(A + (o + i) * lda + o);  // broadcast reads
#pragma unroll
      for (int q = 0; q < (i + 3) / 4; ++q) {
        const float4 a4 = row[q];
        const float a[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (4 * q + e < i) s -= a[e] * x[4 * q + e];
      }
      x[i] = s;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) N[(o + i) * lda + o + c] = x[i];
  } else if ((warp & 1) == 0) {
#pragma unroll
    for (int i = 0; i < 16; ++i) N[(o + i) * lda + o + 16 + c] = 0.f;
  }
  __syncthreads();
#pragma unroll
  for (int S = 16; S <= 32; S *= 2) {
    // 64 / (2S) pairs of S x S diagonal blocks, each lower-left block (S / 16) x (S / 8) tiles:
    // 4 tiles at S = 16, 8 at S = 32. Tile i: pair i / per, rows 16 (i % per / (S / 8)), columns
    // 8 (i % (S / 8)) of the block; pair q's T at rows S q of the scratch.
    constexpr int kWarps = kThreads / 32;
    const int per = (S / 16) * (S / 8);
    auto tile = [&](int i, int& top, int& m, int& n) {
      top = 2 * S * (i / per), m = 16 * (i % per / (S / 8)), n = 8 * (i % (S / 8));
    };
    for (int i = warp; i < 64 / (2 * S) * per; i += kWarps) {  // T = A_low_top D_top
      int top, m, n;
      tile(i, top, m, n);
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      product_16x8_f32(acc, A, lda, top + S + m, top, N, lda, top, top + n, S / 8);
      store_16x8_f32(T, ldt, top / 2 + m, n, acc, 1.f);
    }
    // Warp w made every T tile of its columns n (tiles i = w, w + 4 share n), and those are all
    // its lower-left tiles read: it waits for itself only.
    __syncwarp();
    for (int i = warp; i < 64 / (2 * S) * per; i += kWarps) {  // lower-left = -D_low T
      int top, m, n;
      tile(i, top, m, n);
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      product_16x8_f32(acc, N, lda, top + S + m, top + S, T + top / 2 * ldt, ldt, 0, n, S / 8);
      store_16x8_f32(N, lda, top + S + m, top + n, acc, -1.f);
    }
    __syncthreads();
  }
}

template <class CT, int K>
__global__ void __launch_bounds__(kThreads) chunk_prepare_kernel(ChunkParams<CT> p) {
  using L = PrepareLayout<K>;
  constexpr int LDA = L::LDA;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + swizzle_pad(smem_raw);
  CT* qs = reinterpret_cast<CT*>(smem + L::q);
  CT* ks = reinterpret_cast<CT*>(smem + L::k);
  float* A = reinterpret_cast<float*>(smem + L::a);
  float* N = reinterpret_cast<float*>(smem + L::n);
  float* rows = reinterpret_cast<float*>(smem + L::rows);  // [4][64]: gc, beta, rq, rk

  int64_t n, tok0;
  int len;
  const int64_t slot = blockIdx.x;
  // Launched with PDL: the previous kernel's writes first; then the scan may launch, so that its
  // blocks take the SMs as this grid's last blocks leave them.
  pdl_wait();
  pdl_launch_dependents();
  if (!chunk_of_slot(p.seq, slot, n, tok0, len)) return;
  const int h = blockIdx.y, hk = h / p.group, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // g and beta first, so that their loads fly while the copies below are issued (beta's bits
  // are converted after them).
  const bool row = tid < kChunk && tid < len;
  float x = row ? p.g[(tok0 + tid) * p.g_stride + h] : 0.f;
  const uint32_t braw = row ? scalar_bits(p.beta, p.beta_kind, (tok0 + tid) * p.beta_stride + h) : 0u;
  load_swizzled<CT, K, kThreads>(qs, p.q + tok0 * p.q_tok + hk * p.q_head, p.q_tok, len, tid);
  load_swizzled<CT, K, kThreads>(ks, p.k + tok0 * p.k_tok + hk * p.k_head, p.k_tok, len, tid);
  cp_async_commit();
  // gc = inclusive cumsum of g (two warps, 32 tokens each; the second adds the first's total
  // below), beta. Padded rows have g 0, so their gc repeats the last token's, and beta 0.
  if (tid < kChunk) {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    rows[kGc * kChunk + tid] = x;
    rows[kBeta * kChunk + tid] = scalar_from_bits(braw, p.beta_kind);
  }
  cp_async_wait<0>();
  fence_shared_for_async();
  __syncthreads();
  if (tid >= 32 && tid < kChunk) rows[kGc * kChunk + tid] += rows[kGc * kChunk + 31];

  // k k^T, q k^T and q q^T (64 x 64 each) on the warpgroup's wgmma; warp w holds rows 16 w..:
  // ckk[4 j + e] is row m0 + g + 8 (e >> 1), column 8 j + 2 t + (e & 1).
  const int m0 = warp * 16, g = lane >> 2, t = lane & 3;
  float ckk[32], cqk[32], cqq[32];
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < K / 16; ++s) {
    const uint64_t dk = swizzled_desc(ks + swizzled_k_step(s), false),
                   dq = swizzled_desc(qs + swizzled_k_step(s), false);
    wgmma_64xN<CT, 64, false, false>(ckk, dk, dk, s > 0);
    wgmma_64xN<CT, 64, false, false>(cqk, dq, dk, s > 0);
    wgmma_64xN<CT, 64, false, false>(cqq, dq, dq, s > 0);
  }
  wgmma_commit_and_wait();
  // Row r = m0 + g + 8 half sits on the diagonal in n-tile 2 w + half, element 2 half + (g - 2 t),
  // held by the lanes with g - 2 t in {0, 1} (picked by unrolled selects: an index by the warp
  // would put the accumulators in local memory).
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float kk = 0.f, qq = 0.f;
#pragma unroll
      for (int w = 0; w < 4; ++w)
        if (w == warp) kk = ckk[4 * (2 * w + half) + 2 * half + e], qq = cqq[4 * (2 * w + half) + 2 * half + e];
      const int r = m0 + g + 8 * half;
      if (g == 2 * t + e) {
        rows[kRq * kChunk + r] = r < len ? (p.l2 ? rsqrtf(qq + p.l2_eps) : 1.f) : 0.f;
        rows[kRk * kChunk + r] = r < len ? (p.l2 ? rsqrtf(kk + p.l2_eps) : 1.f) : 0.f;
      }
    }
  __syncthreads();

  CT* aqk = p.Aqk + (slot * p.H + h) * kChunk * kChunk;
  // The row and column scalars in registers first: the stores to A below could alias `rows`
  // for the compiler, which then reloaded every scalar after every store.
  // A's row factor beta |k|^-1, Aqk's |q|^-1 scale.
  float gr[2], ra[2], rq[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = m0 + g + half * 8;
    gr[half] = rows[kGc * kChunk + r];
    ra[half] = rows[kBeta * kChunk + r] * rows[kRk * kChunk + r];
    rq[half] = rows[kRq * kChunk + r] * p.scale;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = j * 8 + 2 * t;
    if (j * 8 > m0 + 15) {  // wholly above the diagonal: zeros
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = m0 + g + half * 8;
        A[r * LDA + c] = A[r * LDA + c + 1] = 0.f;
        *reinterpret_cast<uint32_t*>(aqk + r * kChunk + c) = 0u;
      }
      continue;
    }
    const float gc[2] = {rows[kGc * kChunk + c], rows[kGc * kChunk + c + 1]};
    const float kc[2] = {rows[kRk * kChunk + c], rows[kRk * kChunk + c + 1]};
    // The tile's elements; the causal masks only where it meets the diagonal (a branch uniform
    // over the warp, so the tiles wholly below it run without the compares and selects).
    auto tile = [&](auto masked) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = m0 + g + half * 8;
        float a2[2], q2[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int cc = c + e;
          const float d = !masked || cc <= r ? __expf(gr[half] - gc[e]) * kc[e] : 0.f;
          a2[e] = !masked || cc < r ? ckk[4 * j + half * 2 + e] * d * ra[half] : 0.f;
          q2[e] = cqk[4 * j + half * 2 + e] * d * rq[half];
        }
        A[r * LDA + c] = a2[0];
        A[r * LDA + c + 1] = a2[1];
        *reinterpret_cast<uint32_t*>(aqk + r * kChunk + c) = pack2<CT>(q2[0], q2[1]);
      }
    };
    if (j * 8 + 8 <= m0)
      tile(std::false_type{});
    else
      tile(std::true_type{});
  }
  __syncthreads();
  invert_unit_lower(A, N, LDA, reinterpret_cast<float*>(smem + L::t), L::LDT);
  CT* ai = p.Ai + (slot * p.H + h) * kChunk * kChunk;
  for (int e = tid; e < kChunk * kChunk / 8; e += kThreads) {  // 8 values (16 bytes) a store
    const int r = e / 8, c = (e % 8) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (c < 16 * (r / 16 + 1)) {  // at or left of the diagonal block (the rest of N is unset)
      const float4 lo = *reinterpret_cast<const float4*>(N + r * LDA + c);  // rows 16-byte aligned
      const float4 hi = *reinterpret_cast<const float4*>(N + r * LDA + c + 4);
      v = make_uint4(pack2<CT>(lo.x, lo.y), pack2<CT>(lo.z, lo.w), pack2<CT>(hi.x, hi.y), pack2<CT>(hi.z, hi.w));
    }
    *reinterpret_cast<uint4*>(ai + r * kChunk + c) = v;
  }
  float* rows_out = p.rows + (slot * p.H + h) * kScanRows * kChunk;
  if (tid < kChunk) {
    const float gc = rows[kGc * kChunk + tid], eg = __expf(gc), rk = rows[kRk * kChunk + tid];
    rows_out[kRowGc * kChunk + tid] = gc;
    rows_out[kRowBeta * kChunk + tid] = rows[kBeta * kChunk + tid];
    rows_out[kRowQ * kChunk + tid] = eg * rows[kRq * kChunk + tid] * p.scale;
    rows_out[kRowK * kChunk + tid] = eg * rk;
    rows_out[kRowD * kChunk + tid] = __expf(rows[kGc * kChunk + len - 1] - gc) * rk;
  }
}

// Shared memory of the scan kernel: a ring of kStages stages of chunk inputs (three, so that a
// chunk's copies have two steps to land; two at K = 256, where three do not fit), then the
// state and the per-chunk intermediates. The copied tiles are swizzled and the tiles threads
// write blocked (wgmma.cuh); v, read by threads only, keeps padded rows.
template <int K, int BV_>
struct ScanLayout {
  static constexpr int BV = BV_, LDV = BV + 8, kStages = K <= 128 ? 3 : 2;
  static constexpr int q = 0;                                                         // [64][K] CT, swizzled
  static constexpr int k = q + kChunk * K * 2;                                        // [64][K] CT, swizzled
  static constexpr int v = k + kChunk * K * 2;                                        // [64][LDV] CT
  static constexpr int ai = v + kChunk * LDV * 2;                                     // [64][64] CT, swizzled
  static constexpr int aqk = ai + kChunk * kChunk * 2;                                // [64][64] CT, swizzled
  static constexpr int rows = aqk + kChunk * kChunk * 2;                              // [kScanRows][64] f32
  static constexpr int stage = (rows + kScanRows * kChunk * 4 + 1023) / 1024 * 1024;  // bytes of one stage
  static constexpr int h = kStages * stage;                                           // [K][BV] CT, blocked
  static constexpr int x = h + K * BV * 2;                                            // [64][BV] CT, blocked
  static constexpr int vn = x + kChunk * BV * 2;                                      // [64][BV] CT, blocked
  static constexpr int vd = vn + kChunk * BV * 2;                                     // [64][BV] CT, blocked
  static constexpr int bytes = vd + kChunk * BV * 2 + kSwizzleSlack;                  // swizzle_pad
  static_assert(k % 1024 == 0 && ai % 1024 == 0 && aqk % 1024 == 0, "swizzled tiles 1024-byte aligned");
};

// The scan's block: warpgroup 0 (warps 0-3) carries the state through the chunks (k h, X,
// v_new, the state update), warpgroup 1 (warps 4-7) makes the outputs (q h, then Aqk v_new)
// beside it, copies the next chunks' inputs and updates half of the state. Every product is a
// warpgroup wgmma over the chunk's 64 token rows (or a 64-row half of the state), warp w of a
// group holding rows 16 w.. of the result.
constexpr int kScanThreads = 256, kStateThreads = 128;

// The output warps' copies of a chunk's inputs (thread index tid, 0..127 over those warps).
template <class CT, int K, int BV>
__device__ __forceinline__ void scan_load(const ChunkParams<CT>& p, unsigned char* st, int64_t slot, int64_t tok0,
                                          int len, int h, int hk, int col0) {
  using L = ScanLayout<K, BV>;
  constexpr int NT = kScanThreads - kStateThreads;
  const int tid = int(threadIdx.x) - kStateThreads;
  load_swizzled<CT, K, NT>(reinterpret_cast<CT*>(st + L::q), p.q + tok0 * p.q_tok + hk * p.q_head, p.q_tok, len, tid);
  load_swizzled<CT, K, NT>(reinterpret_cast<CT*>(st + L::k), p.k + tok0 * p.k_tok + hk * p.k_head, p.k_tok, len, tid);
  load_tile<CT, L::BV, NT>(reinterpret_cast<CT*>(st + L::v), L::LDV, p.v + tok0 * p.v_tok + h * p.v_head + col0,
                           p.v_tok, len, tid);
  const int64_t mat = (slot * p.H + h) * kChunk * kChunk;
  load_swizzled<CT, kChunk, NT>(reinterpret_cast<CT*>(st + L::ai), p.Ai + mat, kChunk, kChunk, tid);
  load_swizzled<CT, kChunk, NT>(reinterpret_cast<CT*>(st + L::aqk), p.Aqk + mat, kChunk, kChunk, tid);
  const float* rows = p.rows + (slot * p.H + h) * kScanRows * kChunk;
  if (tid < kScanRows * kChunk / 4) cp_async16(st + L::rows + tid * 16, rows + tid * 4, true);
}

// d (64 x BV) = (accumulate ? d : 0) + A . B over `steps` k = 16 steps, issued by the whole
// warpgroup (complete after wgmma_commit_and_wait). A is a swizzled tile at `a`: its rows as M
// and columns as K (K-major), or, kTransA, the 64 x 64 strip at `a` with its rows as K and
// columns as M. B is the blocked [k][BV] tile at `b` (its rows as K).
template <class CT, int BV, bool kTransA>
__device__ __forceinline__ void wg_issue(float (&d)[BV / 2], const CT* a, const CT* b, int steps, bool accumulate) {
#pragma unroll
  for (int s = 0; s < steps; ++s) {
    const CT* as = kTransA ? a + 16 * s * 64 : a + swizzled_k_step(s);
    wgmma_64xN<CT, BV, kTransA, true>(d, swizzled_desc(as, kTransA),
                                      blocked_desc(b + blocked_offset(16 * s, 0, BV), BV, true), accumulate || s > 0);
  }
}

// The same, complete when it returns.
template <class CT, int BV, bool kTransA>
__device__ __forceinline__ void wg_product(float (&d)[BV / 2], const CT* a, const CT* b, int steps, bool accumulate) {
  wgmma_fence();
  wg_issue<CT, BV, kTransA>(d, a, b, steps, accumulate);
  wgmma_commit_and_wait();
}

// The 64 x BV accumulator d (this thread's part: d[4 j + e] is row 16 (warp % 4) + g + 8 (e >> 1),
// column 8 j + 2 t + (e & 1)) as CT pairs into rows row0.. of the blocked [.][BV] tile, rows
// g scaled by scale0 and g + 8 by scale1.
template <class CT, int BV>
__device__ __forceinline__ void store_pairs_blocked(CT* tile, const float (&d)[BV / 2], int row0, float scale0,
                                                    float scale1) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < BV / 8; ++j)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float f = half ? scale1 : scale0;
      *reinterpret_cast<uint32_t*>(tile + blocked_offset(row0 + g + 8 * half, 8 * j + 2 * t, BV)) =
          pack2<CT>(d[4 * j + 2 * half] * f, d[4 * j + 2 * half + 1] * f);
    }
}

template <class CT, int K, int BV_>
__global__ void __launch_bounds__(kScanThreads) chunk_scan_kernel(ChunkParams<CT> p) {
  using L = ScanLayout<K, BV_>;
  constexpr int BV = L::BV, LDV = L::LDV, MT = K / 64;  // 64-row halves of the state
  constexpr int NA = BV / 2, NJ = BV / 8;               // a thread's accumulator floats and 8-column tiles
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + swizzle_pad(smem_raw);
  CT* hs = reinterpret_cast<CT*>(smem + L::h);
  CT* xs = reinterpret_cast<CT*>(smem + L::x);
  CT* vns = reinterpret_cast<CT*>(smem + L::vn);
  CT* vds = reinterpret_cast<CT*>(smem + L::vd);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  // The warpgroup, through a shuffle so that the compiler sees it uniform over each warp (else
  // it serialises the wgmma of the branches on it).
  const bool state_warp = __shfl_sync(0xffffffffu, tid / kStateThreads, 0) == 0;
  const int col0 = blockIdx.x * BV, h = blockIdx.y, hk = h / p.group;
  const int64_t nseq = blockIdx.z;
  int64_t begin, len_seq, slot0;
  seq_span(p.seq, nseq, begin, len_seq, slot0);
  const int64_t nchunks = (len_seq + kChunk - 1) / kChunk;
  const int m0 = (warp & 3) * 16;  // the 16 rows of each 64-row product this warp holds

  // The state, in f32 in registers and as CT in hs for the products, split by 64-row halves
  // between the warpgroups (at K = 64 the state warps hold the one half): the update's products
  // then run on both. Half mt = wg * MS + i of warpgroup wg is hacc[i]; hacc[i][4 j + e] is row
  // 64 mt + m0 + g + 8 (e >> 1), column 8 j + 2 t + (e & 1) of the slice.
  constexpr int MS = MT == 1 ? 1 : MT / 2;
  const int wg = state_warp ? 0 : 1;
  const bool holds_state = state_warp || MT > 1;
  float hacc[MS][NA];
  const int64_t soff = (nseq * p.H + h) * int64_t(K) * p.V;
  auto state_row = [&](int i, int e) { return 64 * (wg * MS + i) + m0 + g + 8 * ((e & 3) >> 1); };
  auto state_col = [&](int e) { return 8 * (e >> 2) + 2 * t + (e & 1); };
  if (holds_state) {
#pragma unroll
    for (int i = 0; i < MS; ++i) {
#pragma unroll
      for (int e = 0; e < NA; ++e)
        hacc[i][e] = p.h0 ? p.h0[soff + int64_t(state_row(i, e)) * p.V + col0 + state_col(e)] : 0.f;
      store_pairs_blocked<CT, BV>(hs + 64 * (wg * MS + i) * BV, hacc[i], m0, 1.f, 1.f);
    }
  }
  // Launched with PDL after the prepare: its Ai, Aqk and row factors are complete past here.
  pdl_wait();
  // The output warps copy each chunk's inputs kStages - 1 steps ahead, off the state chain's
  // path: chunk cc into stage `slot`, one commit group per chunk (empty past the last).
  constexpr int S = L::kStages;
  auto load_chunk = [&](int64_t cc, int slot) {
    if (!state_warp && cc < nchunks) {
      const int64_t rest = len_seq - cc * kChunk;
      scan_load<CT, K, BV>(p, smem + slot * L::stage, slot0 + cc, begin + cc * kChunk,
                           int(rest < kChunk ? rest : kChunk), h, hk, col0);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) load_chunk(i, i);
  cp_async_wait<S - 2>();
  fence_shared_for_async();
  __syncthreads();  // chunk 0's inputs and the state are in shared memory

  // The output warps' rows of chunk c's o, stored during step c + 1: the stores are then long
  // done when the step's closing fence (which waits for this thread's memory operations) comes.
  uint32_t o_pairs[2][NJ];
  int64_t o_tok0 = 0;
  int o_len = 0;
  auto store_out = [&] {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = m0 + g + half * 8;
      if (r < o_len) {
        CT* orow = p.out + (o_tok0 + r) * p.o_tok + h * p.o_head + col0;
#pragma unroll
        for (int j = 0; j < NJ; ++j) *reinterpret_cast<uint32_t*>(orow + j * 8 + 2 * t) = o_pairs[half][j];
      }
    }
  };
  int slot = 0;  // chunk c's stage, c % S
  for (int64_t c = 0; c < nchunks; ++c, slot = slot + 1 == S ? 0 : slot + 1) {
    unsigned char* st = smem + slot * L::stage;
    const int64_t tok0 = begin + c * kChunk;
    const int len = int(len_seq - c * kChunk < kChunk ? len_seq - c * kChunk : kChunk);
    const CT* qs = reinterpret_cast<const CT*>(st + L::q);
    const CT* ks = reinterpret_cast<const CT*>(st + L::k);
    const CT* vs = reinterpret_cast<const CT*>(st + L::v);
    const CT* ais = reinterpret_cast<const CT*>(st + L::ai);
    const CT* aqks = reinterpret_cast<const CT*>(st + L::aqk);
    const float* rows = reinterpret_cast<const float*>(st + L::rows);
    const float eG = __expf(rows[kRowGc * kChunk + len - 1]);  // the state's decay over the chunk

    // The row factors and v pairs the epilogue below takes, read before the product, so their
    // shared-memory latency hides under it (the state warps: e^gc |k|^-1, beta and v; the
    // output warps: e^gc |q|^-1 scale).
    float f0[2], f1[2];
    uint32_t vp[2][NJ];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = m0 + g + half * 8;
      f0[half] = rows[(state_warp ? kRowK : kRowQ) * kChunk + r];
      f1[half] = rows[kRowBeta * kChunk + r];
#pragma unroll
      for (int j = 0; j < NJ; ++j)
        vp[half][j] = state_warp ? *reinterpret_cast<const uint32_t*>(vs + r * LDV + j * 8 + 2 * t) : 0u;
    }
    // The state warps: token rows of k h, then X. The output warps meanwhile issue the copies of
    // chunk c + S - 1 (into the stage chunk c - 1 used) and store chunk c - 1's o (none before
    // chunk 0), so that k h, the head of the state chain, has the tensor cores to itself.
    float acc[NA];
    if (state_warp) {
      wg_product<CT, BV, false>(acc, ks, hs, K / 16, false);
      // X = beta (v - e^gc rk (k h)) -> shared
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const CT* vv = reinterpret_cast<const CT*>(&vp[half][j]);
          const float fk = f0[half], b = f1[half];
          acc[4 * j + 2 * half] = b * (float(vv[0]) - fk * acc[4 * j + 2 * half]);
          acc[4 * j + 2 * half + 1] = b * (float(vv[1]) - fk * acc[4 * j + 2 * half + 1]);
        }
      store_pairs_blocked<CT, BV>(xs, acc, m0, 1.f, 1.f);
      fence_shared_for_async();
    } else {
      load_chunk(c + S - 1, slot == 0 ? S - 1 : slot - 1);
      store_out();
    }
    // X is in shared memory. The output warps take this barrier too: with a barrier of the state
    // warps alone (bar.sync 1, 128) compute-sanitizer's racecheck reported the later block-wide
    // barriers as missing; this form checks clean and costs ~1 us at T4096.
    __syncthreads();
    if (state_warp) {
      // v_new = Ai X, stored as rounded, and its copy scaled by e^(G - gc) |k|^-1 for the update
      float vn[NA];
      wg_product<CT, BV, false>(vn, ais, xs, kChunk / 16, false);
#pragma unroll
      for (int e = 0; e < NA; ++e) vn[e] = float(CT(vn[e]));  // the state goes on from v_new as rounded
      store_pairs_blocked<CT, BV>(vns, vn, m0, 1.f, 1.f);
      store_pairs_blocked<CT, BV>(vds, vn, m0, rows[kRowD * kChunk + m0 + g], rows[kRowD * kChunk + m0 + g + 8]);
      fence_shared_for_async();
    } else {
      // While the state warps solve: token rows of q h (the state is unchanged until the
      // update), scaled by e^gc |q|^-1 scale
      wg_product<CT, BV, false>(acc, qs, hs, K / 16, false);
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[4 * j + e] *= f0[e >> 1];
    }
    __syncthreads();  // v_new is in shared memory; every read of the state hs is done

    // h = e^G h + k^T vd on each warpgroup's halves (k^T: the k tile read transposed), one
    // group; then the output warps' o = (scaled q h) + Aqk v_new, a second group that runs on
    // while the state halves are stored (the next step waits for the state, not for o).
#pragma unroll
    for (int i = 0; i < MS; ++i)
#pragma unroll
      for (int e = 0; e < NA; ++e) hacc[i][e] *= eG;
    wgmma_fence();
    if (holds_state) {
#pragma unroll
      for (int i = 0; i < MS; ++i)
        wg_issue<CT, BV, true>(hacc[i], ks + swizzled_offset(0, 64 * (wg * MS + i)), vds, kChunk / 16, true);
    }
    wgmma_commit();
    if (!state_warp) wg_issue<CT, BV, false>(acc, aqks, vns, kChunk / 16, true);
    wgmma_commit();
    wgmma_wait<1>();
    if (holds_state) {
#pragma unroll
      for (int i = 0; i < MS; ++i) store_pairs_blocked<CT, BV>(hs + 64 * (wg * MS + i) * BV, hacc[i], m0, 1.f, 1.f);
    }
    wgmma_wait<0>();
    if (!state_warp) {  // o, stored early in the next step (store_out)
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int half = 0; half < 2; ++half)
          o_pairs[half][j] = pack2<CT>(acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
      o_tok0 = tok0, o_len = len;
    }
    cp_async_wait<S - 2>();  // the output warps' copies of chunk c + 1 (later chunks may fly on)
    fence_shared_for_async();
    __syncthreads();  // the state complete, chunk c + 1's inputs landed, v_new read, this stage free
  }
  if (!state_warp) store_out();  // the last chunk's
  if (p.ht && holds_state) {
#pragma unroll
    for (int i = 0; i < MS; ++i)
#pragma unroll
      for (int e = 0; e < NA; ++e) p.ht[soff + int64_t(state_row(i, e)) * p.V + col0 + state_col(e)] = hacc[i][e];
  }
}

}  // namespace mlxn::kernels::gdn
