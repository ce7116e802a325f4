#pragma once
// The routed-expert block of an MoE decode step on the integer tensor cores
// (include/mlxn/ops/moe_experts.h), MLX affine 4-bit experts at group size 64 or 128: two
// kernels made of the single-row mat-vec's parts (qmv_i8.cuh: the fixed-point image of x,
// the u8 x s8 step products, the (x group, part, nibble class) columns), where the layer as
// separate ops takes eight launches (two x images, gate/up, GLU, a second x image, down, the
// weighted sum; bench/NOTES.md, moe).
//
// moe_gate_up_kernel: a block per (routed slot, 8 rows of the expert width I). Lane (g, t)
//   owns gate row n0 + g as its row a and up row n0 + g as its row b, so the block's two sums
//   per output are the pair the activation joins: act[slot, n0 + g] = act(gate) * up.
// moe_down_kernel: a block per (token, 16 rows of D) loops over the token's k experts and
//   folds each slot's weight into its steps' scales, so the weighted sum (and the residual)
//   comes out of the block's final reduction, each output element written once.
//
// Each block builds the image of its x (or of its token's k activation rows) in shared memory
// first (prepare_x_row; a few KB, read from L2), where the separate ops wrote it to global
// memory in a kernel of its own. Weights stream through a per-lane register ring of S steps
// (MoeExpertConfig).
#include "cuda/kernels/qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"
#include "ops/elementwise_math.h"

namespace mlxn::kernels::moe_i8 {

struct MoeExpertParams {
  // gate, up: [E, I, D]; down: [E, D, I] (packed codes, scales, biases).
  const uint32_t *gate, *up, *down;
  const void *gate_s, *gate_b, *up_s, *up_b, *down_s, *down_b;
  const void* x;  // [T, D], rows x_stride apart
  int64_t x_stride;
  const void* ids;  // [T, top_k]
  bool ids_u32;
  const float* weights;  // [T, top_k]
  void* act;             // [T * top_k, I] scratch in x's dtype
  void* out;             // [T, D]
  int64_t out_stride;
  const void* residual;  // [T, D] or null
  int64_t residual_stride;
  int experts, top_k, dim, width;  // E, k, D, I
};

// Both kernels run a handful of steps per warp (D = 2048: 4 per gate/up warp; k = 8, I = 768:
// 3 per down warp), so there is no steady state to pipeline: the rings hold 3 steps, all of a
// down warp's and 3 of a gate/up warp's 4 (a ring of 4 spilled at the 80 registers of 6 blocks
// per SM; 2 -> 3 steps moved the layer by 0.3 us, bench/NOTES.md run 129).
struct MoeExpertConfig {
  static constexpr int kGateUpWarps = 4, kGateUpRing = 3;
  // 6 blocks per SM (80 registers): 792 on 132 SMs, one wave for the 768 blocks of one token.
  static constexpr int kGateUpMinBlocks = 6;
  // 16 rows x k experts x I: 16 warps of 512 threads, one block per SM (D = 2048: 128 blocks).
  static constexpr int kDownWarps = 16, kDownRing = 3;
  static constexpr int kMaxTopK = 32;  // slots a down block lists in shared memory
  static constexpr int64_t image_bytes(int64_t k) { return QmvI8Image::units(k) * 16; }
};

// Expert id of a slot, or -1 outside [0, E). Read through L2 (.cg): see moe_down_kernel.
__device__ __forceinline__ int slot_expert(const MoeExpertParams& p, int64_t slot) {
  const uint32_t raw = p.ids_u32 ? __ldcg(static_cast<const uint32_t*>(p.ids) + slot)
                                 : uint32_t(__ldcg(static_cast<const int*>(p.ids) + slot));
  const int e = int(raw);
  return p.ids_u32 ? (raw < uint32_t(p.experts) ? e : -1) : (e >= 0 && e < p.experts ? e : -1);
}

// The image of `rows` x rows of k values each (rows x_stride apart) into shared memory, images
// QmvI8Image::units(k) units apart, by the block's THREADS threads. prepare_x_row wants every
// lane of a warp present and the 8 lanes of an x group in one row: k / 8 is a multiple of 16.
template <class CT, int THREADS>
__device__ __forceinline__ void build_images(const CT* x, int64_t x_stride, int rows, int k, uint4* img) {
  const int per_row = k / 8, items = rows * per_row;
  for (int base = 0; base < items; base += THREADS) {
    const int q = base + int(threadIdx.x), r = q < items ? q / per_row : 0, i = q < items ? q % per_row : per_row;
    prepare_x_row<CT, NibbleOrder::kPairs, 64>(x + r * x_stride, k, i, img + int64_t(r) * QmvI8Image::units(k));
  }
}

// One lane's share of a pair of weight rows over a list of 128-value steps. Item i of the warp
// (its i-th step) is located by `at(i, Item&)`: the code vectors of rows a and b, their scales,
// the bias row the lane adds (a for even t, b for odd t: each (row, x group) once), the x image
// and step, and a factor applied to the whole step (a slot's routing weight). Accumulates
// acc_a, acc_b as the single-row kernel does (quant_mlx_qmv_i8.cuh, default scale path).
struct Item {
  const uint4 *wa, *wb;
  const void *sa, *sb, *bias;  // element pointers at the lane's weight group
  int x_unit;                  // the step's x units in the block's images (16-byte units)
  int entry;                   // the lane's table entry of the step in the images (float2s)
  float w;
};

// `ready()` runs after the ring's first loads are issued and before the first product: the
// place for the kernel's PDL wait and its x images (at `img` in shared memory). Every thread of
// the block calls this. The ring holds offsets, not pointers, to save registers: S steps in
// flight is what hides DRAM latency here, where a warp has only a few steps in all.
template <class ST, int S, class At, class Ready>
__device__ __forceinline__ void stream_items(int count, int lo_unit, int hi_unit, const uint4* img, At at, Ready ready,
                                             float& acc_a, float& acc_b, float& acc_bias) {
  uint4 ca[S], cb[S];
  ST sa[S], sb[S], bi[S];
  int xu[S], en[S];
  float w[S];
  auto load = [&](int j, int i) {
    Item it;
    at(i, it);
    ca[j] = load_weight(it.wa);  // the experts' bytes are read once (math.cuh, load_weight)
    cb[j] = load_weight(it.wb);
    sa[j] = __ldg(static_cast<const ST*>(it.sa));
    sb[j] = __ldg(static_cast<const ST*>(it.sb));
    bi[j] = __ldg(static_cast<const ST*>(it.bias));
    xu[j] = it.x_unit;
    en[j] = it.entry;
    w[j] = it.w;
  };
#pragma unroll
  for (int j = 0; j < S; ++j)
    if (j < count) load(j, j);
  ready();
  for (int i0 = 0; i0 < count; i0 += S) {
#pragma unroll
    for (int j = 0; j < S; ++j) {
      if (i0 + j < count) {
        const uint4 xl = img[xu[j] + lo_unit], xh = img[xu[j] + hi_unit];
        const float2 fx = reinterpret_cast<const float2*>(img)[en[j]];
        int c[4] = {0, 0, 0, 0};
        step_products<false>(c, ca[j], cb[j], xl, xh);
        // The high class is 16 q x exactly, so the shift is exact.
        const int va = c[0] + (c[1] >> 4), vb = c[2] + (c[3] >> 4);
        acc_a = fmaf(to_f32(sa[j]) * w[j] * fx.x, float(va), acc_a);
        acc_b = fmaf(to_f32(sb[j]) * w[j] * fx.x, float(vb), acc_b);
        acc_bias = fmaf(to_f32(bi[j]) * w[j], fx.y, acc_bias);
        if (i0 + j + S < count) load(j, i0 + j + S);
      }
    }
  }
}

// Lane t's weight group of a step, and the (x group, part) table entry it reads.
template <int GS>
__device__ __forceinline__ int lane_group(int step, int t) {
  return 32 * t / GS + step * (128 / GS);
}

// Grid: (I / 8, T * top_k), kGateUpWarps warps, dynamic shared memory image_bytes(D).
// Requires D % 128 == 0, I % 8 == 0, 16-byte rows of x.
template <class CT, class ST, int GS, bool kGelu>
__global__ void __launch_bounds__(32 * MoeExpertConfig::kGateUpWarps, MoeExpertConfig::kGateUpMinBlocks)
    moe_gate_up_kernel(MoeExpertParams p) {
  constexpr int NW = MoeExpertConfig::kGateUpWarps, S = MoeExpertConfig::kGateUpRing;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float red[NW][32][2];
  uint4* img = reinterpret_cast<uint4*>(smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int K = p.dim, I = p.width, steps = K / 128, groups = K / GS;
  const int64_t slot = blockIdx.y;
  const int n0 = int(blockIdx.x) * 8;

  pdl_wait();  // the ids come from the kernel before (the routing)
  pdl_launch_dependents();
  const int e = slot_expert(p, slot);
  if (e < 0) return;  // the down kernel skips the slot
  // Gate and up rows share one index, so one offset into each array; the bases stay kernel
  // parameters (five per-array pointers in registers made a ring of 4 spill at 80).
  const int64_t row = int64_t(e) * I + n0 + g, w_row = row * (K / 32) + t, s_row = row * groups;
  const int count = steps > warp ? (steps - warp + NW - 1) / NW : 0;
  const int table = int(QmvI8Image::table_unit(K)) * 2;  // in float2s
  auto at = [&](int i, Item& it) {
    const int s = warp + NW * i, grp = lane_group<GS>(s, t);
    it.wa = reinterpret_cast<const uint4*>(p.gate) + w_row + 4 * s;
    it.wb = reinterpret_cast<const uint4*>(p.up) + w_row + 4 * s;
    it.sa = static_cast<const ST*>(p.gate_s) + s_row + grp;
    it.sb = static_cast<const ST*>(p.up_s) + s_row + grp;
    it.bias = static_cast<const ST*>((t & 1) ? p.up_b : p.gate_b) + s_row + grp;
    it.x_unit = s * QmvI8Image::kStepUnits;
    it.entry = table + 4 * s + t;
    it.w = 1.f;
  };
  auto ready = [&] {
    build_images<CT, 32 * NW>(static_cast<const CT*>(p.x) + slot / p.top_k * p.x_stride, p.x_stride, 1, K, img);
    __syncthreads();
  };
  int lo_unit, hi_unit;
  group_part_class_units(g, t, lo_unit, hi_unit);
  float acc_a = 0.f, acc_b = 0.f, acc_bias = 0.f;
  stream_items<ST, S>(count, lo_unit, hi_unit, img, at, ready, acc_a, acc_b, acc_bias);
  ((t & 1) ? acc_b : acc_a) += acc_bias;
  float gate, up;
  if (tile_sums<NW>(acc_a, acc_b, red, gate, up))
    static_cast<CT*>(p.act)[slot * I + n0 + g] = from_f32<CT>(ew::GluAct<kGelu>{}(gate)*up);
}

// Grid: (D / 16, T), kDownWarps warps, dynamic shared memory top_k * image_bytes(I).
// Requires I % 128 == 0, top_k <= kMaxTopK. Launched right after moe_gate_up_kernel, which
// releases it only after its own wait on the routing: so the ids and weights are final when
// this kernel starts, and it reads them (through L2) and its first weights before its wait,
// which is for the activations alone.
template <class CT, class ST, int GS>
__global__ void __launch_bounds__(32 * MoeExpertConfig::kDownWarps) moe_down_kernel(MoeExpertParams p) {
  constexpr int NW = MoeExpertConfig::kDownWarps, S = MoeExpertConfig::kDownRing;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float red[NW][32][2];
  __shared__ int s_expert[MoeExpertConfig::kMaxTopK], s_slot[MoeExpertConfig::kMaxTopK], s_count;
  __shared__ float s_weight[MoeExpertConfig::kMaxTopK];
  uint4* img = reinterpret_cast<uint4*>(smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int K = p.width, D = p.dim, steps = K / 128, groups = K / GS, k = p.top_k;
  const int64_t token = blockIdx.y;
  const int n0 = int(blockIdx.x) * 16;
  const int img_units = int(QmvI8Image::units(K));

  // The token's valid slots, in slot order (an out-of-range id contributes nothing).
  if (threadIdx.x == 0) {
    int n = 0;
    for (int j = 0; j < k; ++j) {
      const int e = slot_expert(p, token * k + j);
      if (e < 0) continue;
      s_expert[n] = e, s_slot[n] = j, s_weight[n] = __ldcg(p.weights + token * k + j);
      ++n;
    }
    s_count = n;
  }
  __syncthreads();
  const int count_all = s_count * steps;
  const int count = count_all > warp ? (count_all - warp + NW - 1) / NW : 0;
  const int rb = n0 + g + 8 < D ? 8 : 0;
  auto at = [&](int i, Item& it) {
    const int q = warp + NW * i, j = q / steps, s = q - j * steps, grp = lane_group<GS>(s, t);
    const int64_t ra = int64_t(s_expert[j]) * D + min(n0 + g, D - 1);
    it.wa = reinterpret_cast<const uint4*>(p.down) + ra * (K / 32) + 4 * s + t;
    it.wb = it.wa + rb * (K / 32);
    it.sa = static_cast<const ST*>(p.down_s) + ra * groups + grp;
    it.sb = static_cast<const ST*>(it.sa) + rb * groups;
    it.bias = static_cast<const ST*>(p.down_b) + ra * groups + grp + ((t & 1) ? rb * groups : 0);
    const int base = s_slot[j] * img_units;
    it.x_unit = base + s * QmvI8Image::kStepUnits;
    it.entry = 2 * (base + int(QmvI8Image::table_unit(K))) + 4 * s + t;
    it.w = s_weight[j];
  };
  // The ring's first weights go out before the wait; the images need the activations.
  int lo_unit, hi_unit;
  group_part_class_units(g, t, lo_unit, hi_unit);
  float acc_a = 0.f, acc_b = 0.f, acc_bias = 0.f;
  auto ready = [&] {
    pdl_wait();
    pdl_launch_dependents();
    build_images<CT, 32 * NW>(static_cast<const CT*>(p.act) + token * k * K, K, k, K, img);
    __syncthreads();
  };
  stream_items<ST, S>(count, lo_unit, hi_unit, img, at, ready, acc_a, acc_b, acc_bias);
  ((t & 1) ? acc_b : acc_a) += acc_bias;
  float va, vb;
  if (tile_sums<NW>(acc_a, acc_b, red, va, vb)) {
    CT* out = static_cast<CT*>(p.out) + token * p.out_stride;
    const CT* res = p.residual ? static_cast<const CT*>(p.residual) + token * p.residual_stride : nullptr;
    if (n0 + g < D) out[n0 + g] = from_f32<CT>(va + (res ? to_f32(res[n0 + g]) : 0.f));
    if (n0 + g + 8 < D) out[n0 + g + 8] = from_f32<CT>(vb + (res ? to_f32(res[n0 + g + 8]) : 0.f));
  }
}

}  // namespace mlxn::kernels::moe_i8
