#pragma once
// The routed half of an MoE decode step for one token as one persistent kernel
// (include/mlxn/ops/moe_layer.h), MLX affine 4-bit experts at group size 64 or 128.
//
// Why one kernel: at decode size every dependent kernel costs a full chain of latencies (its
// launch, the ids from L2, the weights' first DRAM round trip, a block reduction), and the
// layer as router mat-vec + routing + the two moe_experts kernels is four of them, about twice
// the time the selected experts' bytes take to stream (bench/NOTES.md, run 129). Here the
// grid is one block per SM, launched cooperatively so that all are resident, and:
//   1. each block computes the logits of experts b, b + P, ... (one router row each at E <= P)
//      and x's fixed-point image; grid barrier;
//   2. each block reads the E logits and selects the top-k itself (a rank per expert: no
//      serial rounds), then requests its whole share of the selected experts' bytes at once:
//      its gate/up tiles and its down tiles, one bulk copy per piece, counted on one mbarrier
//      per tile (per slot of a down tile), the down pieces once the first gate/up tile is in.
//      The share is balanced in bytes (MoeLayerSplit) and lives in shared memory, so all 21 MB
//      of a Qwen3-30B-A3B layer are in flight together;
//   3. each block computes its gate/up tiles as they land (the moe_experts gate/up kernel's
//      lane mapping: gate row a, up row b; each warp a share of every tile's steps, one block
//      barrier for all tiles) and writes act(gate) * up; grid barrier;
//   4. each block builds the k activation images and computes its down tiles, whose bytes
//      landed meanwhile: all k slots of 16 rows of D, weighted by the routing, plus the residual,
//      each output element written once.
#include <cooperative_groups.h>

#include "cuda/kernels/bulk_copy.cuh"
#include "cuda/kernels/moe_experts_i8.cuh"
#include "cuda/kernels/route_keys.cuh"

namespace mlxn::kernels::moe_i8 {

struct MoeLayerConfig {
  static constexpr int kWarps = 8, kThreads = 32 * kWarps;
  static constexpr int kMaxExperts = 512;  // the rank selection compares every pair of keys
  static constexpr int kMaxTopK = 32;      // the routing weights are one warp's lanes
  // Tile rows: gate/up tiles are 8 rows of I (gate rows as a, up rows as b); down tiles 16 rows
  // of D (rows g and g + 8), all k slots.
  static constexpr int kGateUpRows = 8, kDownRows = 16;
};

// One token's expert work over `blocks` blocks. Gate/up tile (slot j, rows 8 i .. 8 i + 7 of I)
// is number j * I / 8 + i; down tile r is rows 16 r .. 16 r + 15 of D over all k slots. Block b
// takes down tiles [down_before(b), down_before(b + 1)) and gate/up tiles [gu_before(b),
// gu_before(b + 1)): the gate/up count fills each block up to an equal share of all the bytes.
// gu_before is monotonic when gu_tiles * gu_bytes >= blocks * down_bytes (the launcher picks
// `blocks` so), and gu_before(blocks) = gu_tiles.
struct MoeLayerSplit {
  int64_t gu_tiles, down_tiles;  // k I / 8, D / 16
  int64_t gu_bytes;              // one gate/up tile: gate and up codes, then their scales, biases
  int64_t slot_bytes;            // one slot of a down tile: codes, scales, biases
  int64_t down_bytes;            // k slots
  int blocks;
  __host__ __device__ int64_t down_before(int64_t b) const { return b * down_tiles / blocks; }
  __host__ __device__ int64_t gu_before(int64_t b) const {
    return (b * (gu_tiles * gu_bytes + down_tiles * down_bytes) - blocks * down_bytes * down_before(b)) /
           (blocks * gu_bytes);
  }
};

// Byte offsets of a block's dynamic shared memory (all 16-byte aligned).
struct MoeLayerLayout {
  int64_t down;        // the down tiles (after the gate/up tiles at 0)
  int64_t x_image;     // x's image
  int64_t act_images;  // the k activation rows' images
  int64_t logits;      // E f32
  int64_t keys;        // E u64 selection keys
  int64_t partials;    // the gate/up tiles' per-warp sums: [tile][warp][8 rows] float2
  int64_t bars;        // one mbarrier per gate/up tile, then per (down tile, slot)
  int64_t total;
};

struct MoeLayerKernelParams {
  MoeExpertParams e;   // experts, x, act scratch ([k, I]), out, residual; e.ids, e.weights unused
  const void* router;  // [E, D] in x's dtype, rows router_stride apart
  int64_t router_stride;
  float* logits;  // [E] scratch
  const float* expert_scale;
  const float* score_bias;
  bool sigmoid, renormalize;
  void* ids_out;  // [top_k] or null
  bool ids_out_u32;
  float* weights_out;  // [top_k] or null
  MoeLayerSplit split;
  MoeLayerLayout layout;
  int mode;  // EXPERIMENT
};

// Step 2's selection: the top-k experts of the logits in smem (ties to the lower index, as
// moe_route) into s_id, their weights into s_w. Every thread of the block calls this.
__device__ __forceinline__ uint64_t gtime() {
  uint64_t v;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(v));
  return v;
}
template <int NT>
__device__ __forceinline__ void select_experts(const MoeLayerKernelParams& p, const float* lg, uint64_t* keys,
                                               float* scratch, int* s_id, float* s_w, uint64_t* tsel) {
  const int E = p.e.experts, k = p.e.top_k;
  // Softmax needs the max and the partition sum over all E only for weights without
  // renormalisation, or for biased selection keys; renormalised weights cancel it (the top
  // expert's logit is the max).
  const bool need_z = !p.sigmoid && (p.score_bias || !p.renormalize);
  float mx = 0.f, inv_z = 1.f;
  if (need_z) {
    float m = -INFINITY;
    for (int x = threadIdx.x; x < E; x += NT) m = fmaxf(m, lg[x]);
    mx = block_max(m, scratch);
    float z = 0.f;
    for (int x = threadIdx.x; x < E; x += NT) z += expf(lg[x] - mx);
    inv_z = 1.f / block_sum(z, scratch);
  }
  auto score_of = [&](float l) { return p.sigmoid ? 1.f / (1.f + expf(-l)) : expf(l - mx) * inv_z; };
  for (int x = threadIdx.x; x < E; x += NT)
    keys[x] = route_pack(route_key(lg[x], p.score_bias ? score_of(lg[x]) : 0.f, p.score_bias, x), x);
  __syncthreads();
  tsel[0] = gtime();
  // Expert x is selected at slot rank(x) = the number of keys above its own, when below k. With
  // fewer experts than threads, `parts` adjacent lanes count a share of the keys each.
  const int parts = E >= NT ? 1 : min(32, NT / E);
  const int share = (E + parts - 1) / parts;
  for (int base = 0; base < E * parts; base += NT) {  // uniform over the block
    const int q = base + int(threadIdx.x), x = q / parts, part = q % parts;
    const uint64_t key = x < E ? keys[x] : ~0ull;
    int rank = 0;
    const int y_end = min(E, (part + 1) * share);
#pragma unroll 8
    for (int y = part * share; y < y_end; ++y) rank += keys[y] > key ? 1 : 0;
    for (int o = 1; o < parts; o *= 2) rank += __shfl_xor_sync(0xffffffffu, rank, o);
    if (x < E && part == 0 && rank < k) s_id[rank] = x;
  }
  tsel[1] = gtime();
  __syncthreads();
  tsel[2] = gtime();
  if (threadIdx.x < 32) {
    const int r = threadIdx.x;
    if (!p.sigmoid && !need_z) mx = lg[s_id[0]], inv_z = 1.f;
    const float score = r < k ? score_of(lg[s_id[r]]) : 0.f;
    const float norm = p.renormalize ? 1.f / warp_sum(score) : 1.f;
    if (r < k) {
      float w = score * norm;
      if (p.expert_scale) w *= p.expert_scale[s_id[r]];
      s_w[r] = w;
      if (blockIdx.x == 0 && p.ids_out) {
        if (p.ids_out_u32)
          static_cast<uint32_t*>(p.ids_out)[r] = uint32_t(s_id[r]);
        else
          static_cast<int*>(p.ids_out)[r] = s_id[r];
        p.weights_out[r] = w;
      }
    }
  }
  __syncthreads();
}

// Step 2's requests, by one warp: pieces [first, end) of the block's list, where piece q < n_gu
// is gate/up tile first_gu + q and the rest are the slots of down tiles first_down, ... Each
// lane issues whole pieces.
template <class ST, int GS>
__device__ __forceinline__ void request_pieces(const MoeLayerKernelParams& p, const int* s_id, int first, int end,
                                               int first_gu, int n_gu, int first_down, uint8_t* smem,
                                               uint64_t* bars) {
  const MoeExpertParams& e = p.e;
  const MoeLayerSplit& sp = p.split;
  const int D = e.dim, I = e.width, k = e.top_k;
  // Copy c of the list: 6 per gate/up tile, then 3 per down slot, issued in list order (lane
  // l takes copies l, l + 32, ...) so that each SM's copy engine fetches the pieces in turn and
  // they land one after the other.
  const int gu_copies = 6 * (min(end, n_gu) - min(first, n_gu));
  const int first_copy = 6 * min(first, n_gu) + 3 * max(first - n_gu, 0);
  const int n_copies = gu_copies + 3 * (end - max(first, n_gu));
  for (int c = int(threadIdx.x % 32); c < n_copies; c += 32) {
    const int cc = first_copy + c;
    const int q = cc < 6 * n_gu ? cc / 6 : n_gu + (cc - 6 * n_gu) / 3;
    const int part = cc < 6 * n_gu ? cc % 6 : (cc - 6 * n_gu) % 3;
    uint64_t* bar = bars + q;
    if (q < n_gu) {
      const int tile = first_gu + q, j = tile / (I / 8);
      const int64_t row = int64_t(s_id[j]) * I + tile % (I / 8) * 8;  // the tile's first gate/up row
      const int64_t codes = 8 * D / 2, scales = 8 * (D / GS) * int64_t(sizeof(ST));
      uint8_t* dst = smem + int64_t(q) * sp.gu_bytes;
      if (part == 0) mbar_arrive_expect(bar, uint32_t(sp.gu_bytes));
      const void* src[6] = {e.gate, e.up, e.gate_s, e.gate_b, e.up_s, e.up_b};
      const int64_t off = part < 2 ? part * codes : 2 * codes + (part - 2) * scales;
      const int64_t at = part < 2 ? row * (D / 2) : row / 8 * scales;
      bulk_copy_g2s(dst + off, static_cast<const uint8_t*>(src[part]) + at, uint32_t(part < 2 ? codes : scales), bar);
    } else {
      const int d = q - n_gu, tile = first_down + d / k, j = d % k;
      const int64_t row = int64_t(s_id[j]) * D + int64_t(tile) * 16;  // the slot's first down row
      const int64_t codes = 16 * I / 2, scales = 16 * (I / GS) * int64_t(sizeof(ST));
      uint8_t* dst = smem + p.layout.down + int64_t(d / k) * sp.down_bytes + int64_t(j) * sp.slot_bytes;
      if (part == 0) mbar_arrive_expect(bar, uint32_t(sp.slot_bytes));
      const void* src[3] = {e.down, e.down_s, e.down_b};
      const int64_t off = part == 0 ? 0 : codes + (part - 1) * scales;
      const int64_t at = part == 0 ? row * (I / 2) : row / 16 * scales;
      bulk_copy_g2s(dst + off, static_cast<const uint8_t*>(src[part]) + at, uint32_t(part == 0 ? codes : scales), bar);
    }
  }
}

__device__ unsigned int g_bar_count;
__device__ unsigned int g_bar_gen;
__device__ __forceinline__ void flag_barrier(unsigned int blocks) {
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned int gen;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(gen) : "l"(&g_bar_gen) : "memory");
    __threadfence();
    if (atomicAdd(&g_bar_count, 1u) == blocks - 1) {
      g_bar_count = 0;
      __threadfence();
      asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(&g_bar_gen), "r"(gen + 1) : "memory");
    } else {
      unsigned int now;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(&g_bar_gen) : "memory");
      } while (now == gen);
    }
  }
  __syncthreads();
}

// Grid: MoeLayerSplit::blocks blocks (all resident: a cooperative launch), kThreads threads,
// dynamic shared memory layout.total. One token; requires D % 128 == 0, I % 128 == 0, E <=
// kMaxExperts, top_k <= kMaxTopK, 16-byte aligned arrays and router rows.
template <class CT, class ST, int GS, bool kGelu>
__global__ void __launch_bounds__(MoeLayerConfig::kThreads, 1) moe_layer_kernel(MoeLayerKernelParams p) {
  constexpr int NW = MoeLayerConfig::kWarps, NT = MoeLayerConfig::kThreads;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float red[2][NW][32][2];
  __shared__ float scratch[32];
  __shared__ int s_id[MoeLayerConfig::kMaxTopK];
  __shared__ float s_w[MoeLayerConfig::kMaxTopK];
  namespace cg = cooperative_groups;
  const MoeExpertParams& e = p.e;
  const MoeLayerSplit& sp = p.split;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int D = e.dim, I = e.width, k = e.top_k, E = e.experts, b = blockIdx.x;
  const int first_gu = int(sp.gu_before(b)), n_gu = int(sp.gu_before(b + 1)) - first_gu;
  const int first_down = int(sp.down_before(b)), n_down_tiles = int(sp.down_before(b + 1)) - first_down;
  uint4* x_img = reinterpret_cast<uint4*>(smem + p.layout.x_image);
  uint4* act_img = reinterpret_cast<uint4*>(smem + p.layout.act_images);
  float* lg = reinterpret_cast<float*>(smem + p.layout.logits);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + p.layout.bars);
  if (threadIdx.x == 0)
    for (int i = 0; i < n_gu + n_down_tiles * k; ++i) mbar_init(bars + i, 1);

  uint64_t ts[13] = {};
  auto stamp = [&](int i) {
    uint64_t v;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(v));
    ts[i] = v;
  };
  stamp(0);
  // 1. Logits (rounded to x's dtype, as the router's linear layer writes them) and x's image.
  pdl_wait();
  if (p.mode & 512) pdl_launch_dependents();
  const CT* x = static_cast<const CT*>(e.x);
  for (int ex = b; ex < E; ex += int(gridDim.x)) {
    const uint4* row = reinterpret_cast<const uint4*>(static_cast<const CT*>(p.router) + ex * p.router_stride);
    float dot = 0.f;
    for (int c = threadIdx.x; c < D / 8; c += NT) {
      float xv[8], rv[8];
      unpack_f32<CT>(__ldg(row + c), rv);
      unpack_f32<CT>(__ldg(reinterpret_cast<const uint4*>(x) + c), xv);
#pragma unroll
      for (int i = 0; i < 8; ++i) dot = fmaf(xv[i], rv[i], dot);
    }
    dot = block_sum(dot, scratch);
    if (threadIdx.x == 0) p.logits[ex] = to_f32(from_f32<CT>(dot));
  }
  if (p.mode & 64) return;
  stamp(1);
  build_images<CT, NT>(x, e.x_stride, 1, D, x_img);
  if (p.mode & 1024) flag_barrier(gridDim.x); else if (!(p.mode & 1)) cg::this_grid().sync(); else __syncthreads();

  stamp(2);
  // 2. The routing, and the requests for this block's share of the selected experts.
  for (int ex = threadIdx.x; ex < E; ex += NT) lg[ex] = __ldcg(p.logits + ex);
  __syncthreads();
  stamp(3);
  if (p.mode & 128) {
    if (threadIdx.x < k) s_id[threadIdx.x] = (threadIdx.x * 7 + b * 0) % E, s_w[threadIdx.x] = 1.f / k;
    __syncthreads();
  } else {
    select_experts<NT>(p, lg, reinterpret_cast<uint64_t*>(smem + p.layout.keys), scratch, s_id, s_w, ts + 10);
  }
  if (p.mode & 8) return;
  stamp(4);
  // The gate/up pieces first; the down pieces once the first gate/up tile has landed, so that
  // DRAM serves the gate/up bytes first and the down bytes stream in while the gate/up tiles
  // are computed and exchanged.
  const int n_pieces = n_gu + n_down_tiles * k;
  if (warp == 0) request_pieces<ST, GS>(p, s_id, 0, n_pieces, first_gu, n_gu, first_down, smem, bars);
  if (p.mode & 32) {
    for (int i = 0; i < n_gu + n_down_tiles * k; ++i) mbar_wait(bars + i, 0);
    return;
  }

  // 3. Gate/up tiles as they land: warp w takes steps w, w + NW, ... of every tile; its quad's
  // sums go to shared memory, and after one barrier thread (tile, row) adds the NW warps' parts:
  // act[j, i] = act(gate_i x) * (up_i x).
  int lo_unit, hi_unit;
  group_part_class_units(g, t, lo_unit, hi_unit);
  const int groups_d = D / GS, table_d = int(QmvI8Image::table_unit(D)) * 2;
  float2* parts = reinterpret_cast<float2*>(smem + p.layout.partials);  // [tile][warp][row]
  for (int q = 0; q < n_gu; ++q) {
    const uint8_t* tile = smem + int64_t(q) * sp.gu_bytes;
    const uint4* wa = reinterpret_cast<const uint4*>(tile) + g * (D / 32) + t;  // gate row g
    const uint4* wb = wa + 8 * (D / 32);                                        // up row g
    const ST* sa = reinterpret_cast<const ST*>(tile + 8 * D) + g * groups_d;    // gate scales
    const ST* sb = sa + 2 * 8 * groups_d;                                       // up scales
    const ST* bias = sa + ((t & 1) ? 3 : 1) * 8 * groups_d;                     // up or gate biases
    float acc_a = 0.f, acc_b = 0.f, acc_bias = 0.f;
    if (warp < D / 128) {
      mbar_wait(bars + q, 0);
      for (int s = warp; s < D / 128; s += NW) {
        const int grp = lane_group<GS>(s, t);
        accumulate_step(wa[4 * s], wb[4 * s], sa[grp], sb[grp], bias[grp], 1.f, x_img, s * QmvI8Image::kStepUnits,
                        table_d + 4 * s + t, lo_unit, hi_unit, acc_a, acc_b, acc_bias);
      }
      ((t & 1) ? acc_b : acc_a) += acc_bias;
    }
#pragma unroll
    for (int o = 1; o < 4; o *= 2) {
      acc_a += __shfl_xor_sync(0xffffffffu, acc_a, o);
      acc_b += __shfl_xor_sync(0xffffffffu, acc_b, o);
    }
    if (t == 0) parts[(q * NW + warp) * 8 + g] = make_float2(acc_a, acc_b);
    if (q == 0) stamp(5);
  }
  stamp(6);
  __syncthreads();
  for (int o = threadIdx.x; o < n_gu * 8; o += NT) {
    const int q = o / 8, row = o % 8, tile_id = first_gu + q;
    float gate = 0.f, up = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) {
      const float2 v = parts[(q * NW + w) * 8 + row];
      gate += v.x, up += v.y;
    }
    static_cast<CT*>(e.act)[int64_t(tile_id / (I / 8)) * I + tile_id % (I / 8) * 8 + row] =
        from_f32<CT>(ew::GluAct<kGelu>{}(gate) * up);
  }
  if (p.mode & 1024) flag_barrier(gridDim.x); else if (!(p.mode & 2)) cg::this_grid().sync(); else __syncthreads();
  if (p.mode & 16) return;
  stamp(7);

  // 4. Down tiles: out[n] = sum_j w_j down_j[n] . act_j (+ residual[n]).
  build_images<CT, NT, true, 4>(static_cast<const CT*>(e.act), I, k, I, act_img);
  __syncthreads();
  stamp(8);
  const int steps_i = I / 128, groups_i = I / GS, units_i = int(QmvI8Image::units(I));
  const int table_i = int(QmvI8Image::table_unit(I));
  for (int r = 0; r < n_down_tiles; ++r) {
    const uint8_t* tile = smem + p.layout.down + int64_t(r) * sp.down_bytes;
    float acc_a = 0.f, acc_b = 0.f, acc_bias = 0.f;
    for (int q = warp; q < k * steps_i; q += NW) {
      const int j = q / steps_i, s = q - j * steps_i, grp = lane_group<GS>(s, t), base = j * units_i;
      const uint8_t* slot = tile + int64_t(j) * sp.slot_bytes;
      const uint4* wa = reinterpret_cast<const uint4*>(slot) + g * (I / 32) + 4 * s + t;  // row g
      const ST* sa = reinterpret_cast<const ST*>(slot + 8 * I) + g * groups_i + grp;      // 16 rows of codes before
      mbar_wait(bars + n_gu + r * k + j, 0);
      accumulate_step(wa[0], wa[8 * (I / 32)], sa[0], sa[8 * groups_i], sa[(16 + ((t & 1) ? 8 : 0)) * groups_i], s_w[j],
                      act_img, base + s * QmvI8Image::kStepUnits, 2 * (base + table_i) + 4 * s + t, lo_unit, hi_unit,
                      acc_a, acc_b, acc_bias);
    }
    ((t & 1) ? acc_b : acc_a) += acc_bias;
    float va, vb;
    if (tile_sums<NW>(acc_a, acc_b, red[r & 1], va, vb)) {
      const int n0 = (first_down + r) * 16;
      CT* out = static_cast<CT*>(e.out);
      const CT* res = static_cast<const CT*>(e.residual);
      out[n0 + g] = from_f32<CT>(va + (res ? to_f32(res[n0 + g]) : 0.f));
      out[n0 + g + 8] = from_f32<CT>(vb + (res ? to_f32(res[n0 + g + 8]) : 0.f));
    }
  }
  stamp(9);
  if ((p.mode & 256) && threadIdx.x == 0 && (b % 33 == 0))
    printf("TS %lld b%d gu%d d%d: %lld %lld %lld %lld %lld %lld %lld %lld %lld\n", (long long)(ts[0] % 10000000), b, n_gu,
           n_down_tiles, (long long)(ts[1] - ts[0]), (long long)(ts[2] - ts[0]), (long long)(ts[3] - ts[0]),
           (long long)(ts[4] - ts[0]), (long long)(ts[5] - ts[0]), (long long)(ts[6] - ts[0]), (long long)(ts[7] - ts[0]),
           (long long)(ts[8] - ts[0]), (long long)(ts[9] - ts[0]));
  if ((p.mode & 256) && threadIdx.x == 0 && (b % 33 == 0))
    printf("SEL b%d: %lld %lld %lld\n", b, (long long)(ts[10] - ts[0]), (long long)(ts[11] - ts[0]), (long long)(ts[12] - ts[0]));
}

}  // namespace mlxn::kernels::moe_i8
