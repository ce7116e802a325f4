#pragma once
// The routed half of an MoE decode layer (include/mlxn/ops/moe_layer.h) in two kernels, MLX
// affine 4-bit experts at group size 64 or 128, where its parts take four (the router matmul,
// moe_route, moe_experts' gate/up and down kernels), each paying its own launch, first DRAM
// round trip and reduction (bench/NOTES.md, moe):
//
// moe_layer_router_kernel: one warp per router row, the T tokens' logits rounded to x's dtype
//   (as the router's linear layer writes them). It also clears the experts kernel's tickets.
// moe_layer_experts_kernel: moe_gate_up_kernel's blocks (a routed slot's 8 rows of I each), in
//   clusters of 8 that cover 64 columns of I. Each block
//   - selects its token's experts itself from the logits (route_token_block);
//   - computes its 8 activations (gate_up_sums) while its share of the down projection is
//     copied into shared memory: the cluster's 64 columns of D / 8 rows of down;
//   - hands its activations to the whole cluster (distributed shared memory), then multiplies
//     the cluster's 64 activations by its rows of down: a partial sum of the slot's output;
//   - stores that partial for its token and takes a ticket. The last D / 64 blocks of a token
//     to finish wait for the rest, then each adds up 64 rows of the token's partials in a fixed
//     order (so the result does not depend on which block finished first), adds the residual
//     and writes out.
// So the down weights stream with the gate/up weights, and the layer has no other launch.
#include <cooperative_groups.h>

#include "cuda/kernels/moe_route.cuh"
#include "cuda/kernels/moe_experts_i8.cuh"

namespace mlxn::kernels::moe_i8 {

struct MoeLayerConfig {
  static constexpr int kThreads = 32 * MoeExpertConfig::kGateUpWarps;
  static constexpr int kCluster = 8;             // blocks of 8 rows of I: 64 columns of down
  static constexpr int kColumns = 8 * kCluster;  // columns of I per cluster
  static constexpr int kFinishRows = 64;         // rows of D each finishing block adds up
  static constexpr int kMaxTokens = 8;
  static constexpr int kMaxExperts = 1024;
  static constexpr int kRouterWarps = 4;
  // Dynamic shared memory: x's image, then the block's down rows (codes, scale and bias
  // words), which the selection's scratch (a float and a key per expert) uses before them.
  static constexpr int64_t down_bytes(int64_t dim) { return dim / kCluster * (kColumns / 2 + 8); }
  static constexpr int64_t smem_bytes(int64_t dim, int64_t experts) {
    const int64_t tail = down_bytes(dim) > experts * 12 ? down_bytes(dim) : experts * 12;
    return MoeExpertConfig::image_bytes(dim) + (tail + 15) / 16 * 16;
  }
};

struct MoeRouterParams {
  const void* x;  // [T, D], rows x_stride apart
  int64_t x_stride;
  const void* router;  // [E, D], rows router_stride apart
  int64_t router_stride;
  int tokens, experts, dim;
  void* logits;       // [T, E] in x's dtype
  uint32_t* tickets;  // [T], cleared
};

// 8 values of x's dtype times 8 of the router, in f32.
template <class CT>
__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
  float va[8], vb[8];
  unpack_f32<CT>(a, va);
  unpack_f32<CT>(b, vb);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) s = fmaf(va[j], vb[j], s);
  return s;
}

// Grid: ceil(E / kRouterWarps) blocks of kRouterWarps warps. Requires D % 8 == 0 and 16-byte
// rows. A warp's first router chunks are loaded before the wait: the router is a weight, which
// the kernel before does not write.
template <class CT>
__global__ void __launch_bounds__(32 * MoeLayerConfig::kRouterWarps) moe_layer_router_kernel(MoeRouterParams p) {
  constexpr int kPre = 8;  // chunks of 8 values per lane loaded early: D = 2048 in one go
  const int lane = threadIdx.x % 32, e = int(blockIdx.x) * MoeLayerConfig::kRouterWarps + int(threadIdx.x) / 32;
  const int chunks = p.dim / 8;
  const uint4* row =
      reinterpret_cast<const uint4*>(static_cast<const CT*>(p.router) + min(e, p.experts - 1) * p.router_stride);
  uint4 pre[kPre];
#pragma unroll
  for (int j = 0; j < kPre; ++j) pre[j] = lane + 32 * j < chunks ? __ldg(row + lane + 32 * j) : make_uint4(0, 0, 0, 0);
  pdl_wait();
  pdl_launch_dependents();
  if (blockIdx.x == 0 && int(threadIdx.x) < p.tokens) p.tickets[threadIdx.x] = 0;
  if (e >= p.experts) return;
  for (int t = 0; t < p.tokens; ++t) {
    const uint4* xr = reinterpret_cast<const uint4*>(static_cast<const CT*>(p.x) + t * p.x_stride);
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < kPre; ++j)
      if (lane + 32 * j < chunks) dot += dot8<CT>(pre[j], __ldg(xr + lane + 32 * j));
    for (int c = lane + 32 * kPre; c < chunks; c += 32) dot += dot8<CT>(__ldg(row + c), __ldg(xr + c));
    dot = warp_sum(dot);
    if (lane == 0) static_cast<CT*>(p.logits)[int64_t(t) * p.experts + e] = from_f32<CT>(dot);
  }
}

// A scale or bias from the 4-byte word that holds it: a 2-byte one is the word's low or high
// half (`half`).
template <class ST>
__device__ __forceinline__ float word_value(uint32_t word, int half) {
  if constexpr (std::is_same_v<ST, float>) {
    return __uint_as_float(word);
  } else {
    const auto bits = static_cast<unsigned short>(word >> (16 * half));
    if constexpr (std::is_same_v<ST, __half>)
      return __half2float(__ushort_as_half(bits));
    else
      return __bfloat162float(__ushort_as_bfloat16(bits));
  }
}

struct MoeLayerParams {
  MoeExpertParams ex;  // ids, weights and act unused
  RouteParams route;   // logits [T, E] in x's dtype (row_stride E); ids, weights: the routing out
  float* partials;     // [T, top_k * I / 64, D]
  uint32_t* tickets;   // [T], zero at the start (moe_layer_router_kernel clears them)
};

// Grid: (I / 8, T * top_k) in clusters of (kCluster, 1, 1), kThreads threads, dynamic shared
// memory smem_bytes(D, E). Requires what moe_gate_up_kernel does, I % 64 == 0, top_k <= 32,
// down's scales and biases 4-byte aligned (read as the words that hold them), and room for
// every token's finishing blocks (D / 64) to wait together.
template <class CT, class ST, int GS, bool kGelu>
__global__ void __launch_bounds__(MoeLayerConfig::kThreads, MoeExpertConfig::kGateUpMinBlocks)
    moe_layer_experts_kernel(MoeLayerParams p) {
  using C = MoeLayerConfig;
  namespace cg = cooperative_groups;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ int s_ids[32];
  __shared__ float s_w[32];
  __shared__ float s_act[C::kColumns];
  __shared__ uint32_t s_ticket;
  __shared__ float4 s_red[8][16];
  const MoeExpertParams& q = p.ex;
  const int k = q.top_k, I = q.width, D = q.dim, tid = threadIdx.x;
  const int64_t slot = blockIdx.y, token = slot / k;
  const int j = int(slot % k), n0 = int(blockIdx.x) * 8, chunk = int(blockIdx.x) / C::kCluster;
  const int rows = D / C::kCluster;
  uint4* img = reinterpret_cast<uint4*>(smem);
  uint8_t* tail = smem + MoeExpertConfig::image_bytes(D);
  uint4* codes = reinterpret_cast<uint4*>(tail);                          // [rows][2] 16-byte units
  uint32_t* scale_words = reinterpret_cast<uint32_t*>(tail + rows * 32);  // [2][rows]
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank()), d0 = rank * rows;

  pdl_wait();  // the logits and the cleared tickets come from the router kernel
  pdl_launch_dependents();
  route_token_block(p.route, static_cast<const CT*>(p.route.logits) + token * p.route.row_stride,
                    reinterpret_cast<float*>(tail + 8 * p.route.experts), reinterpret_cast<uint64_t*>(tail), s_ids,
                    s_w);
  if (blockIdx.x == 0 && j == 0 && tid < k) {
    p.route.ids[token * k + tid] = uint32_t(s_ids[tid]);
    p.route.weights[token * k + tid] = s_w[tid];
  }
  const int e = s_ids[j];
  // Row r of the block's share of down (read from shared memory where used: fewer registers
  // live across the gate/up ring).
  auto down_row = [&](int r) { return int64_t(s_ids[j]) * D + d0 + r; };
  // The block's down rows: 32 bytes of codes each (columns 64 chunk ..), and the 4-byte words
  // that hold their scale and bias (a 2-byte scale shares its word with a neighbour).
  const int groups = I / GS, grp = chunk * C::kColumns / GS;
  auto stage_down = [&] {
    for (int i = tid; i < rows * 2; i += C::kThreads)
      cp_async<16>(codes + i, reinterpret_cast<const uint4*>(q.down) + down_row(i / 2) * (I / 32) + chunk * 2 + i % 2);
    for (int i = tid; i < rows * 2; i += C::kThreads) {
      const int r = i % rows;
      const ST* src = static_cast<const ST*>(i < rows ? q.down_s : q.down_b) + down_row(r) * groups + grp;
      cp_async<4>(scale_words + i, reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(src) & ~uintptr_t(3)));
    }
    cp_async_commit();
  };
  auto ready = [&] {
    stage_down();  // behind the gate/up ring's first loads
    build_images<CT, C::kThreads>(static_cast<const CT*>(q.x) + token * q.x_stride, q.x_stride, 1, D, img);
    __syncthreads();
  };
  float gate, up;
  if (gate_up_sums<ST, GS>(q, e, n0, img, ready, gate, up)) {
    // Rounded to x's dtype, as moe_experts' activations are.
    const float a = to_f32(from_f32<CT>(ew::GluAct<kGelu>{}(gate)*up));
    const int col = rank * 8 + tid / 4;
#pragma unroll
    for (int b = 0; b < C::kCluster; ++b) cluster.map_shared_rank(s_act, b)[col] = a;
  }
  cluster.sync();  // every block of the cluster has its 64 activations
  cp_async_wait<0>();
  __syncthreads();

  float a_sum = 0.f;
#pragma unroll 8
  for (int i = 0; i < C::kColumns; ++i) a_sum += s_act[i];
  const int parts = k * (I / C::kColumns);
  float* part = p.partials + (token * parts + int64_t(j) * (I / C::kColumns) + chunk) * D + d0;
  // Thread (row r, word u) multiplies the row's 8 codes of word u; the 8 threads of a row add up
  // in a fixed order.
  const int u = tid % 8;
  float av[8];
#pragma unroll
  for (int n = 0; n < 8; ++n) av[n] = s_act[8 * u + n];
  const uint32_t* code_words = reinterpret_cast<const uint32_t*>(codes);
  for (int r = tid / 8; r < rows; r += C::kThreads / 8) {  // rows % 16 == 0: whole warps
    const uint32_t cw = code_words[r * 8 + u];
    float dot = 0.f;
#pragma unroll
    for (int n = 0; n < 8; ++n) dot = fmaf(float((cw >> (4 * n)) & 15u), av[n], dot);
#pragma unroll
    for (int o = 1; o < 8; o *= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    if (u == 0) {
      const int half = int((down_row(r) * groups + grp) & 1);  // a 2-byte scale's half of its word
      const float s = word_value<ST>(scale_words[r], half), b = word_value<ST>(scale_words[rows + r], half);
      part[r] = s_w[j] * fmaf(s, dot, b * a_sum);
    }
  }

  // Ticket: the partial is visible before the count says so.
  __threadfence();
  __syncthreads();
  const uint32_t total = gridDim.x * uint32_t(k), finishers = uint32_t(D / C::kFinishRows);
  if (tid == 0) s_ticket = atomicAdd(p.tickets + token, 1u);
  __syncthreads();
  if (s_ticket + finishers < total) return;
  const int f = int(s_ticket + finishers - total);  // 0 .. finishers - 1
  if (tid == 0) {
    uint32_t seen;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(seen) : "l"(p.tickets + token) : "memory");
      if (seen < total) __nanosleep(64);
    } while (seen < total);
  }
  __syncthreads();
  // Rows 64 f .. of the token: thread (subset s, row quad q4) adds parts s, s + 8, ... in order,
  // then the 8 subsets are added in order.
  const int q4 = tid % 16, sub = tid / 16, r0 = C::kFinishRows * f;
  const float* tok = p.partials + token * parts * int64_t(D) + r0 + 4 * q4;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
  for (int i = sub; i < parts; i += 8) {
    const float4 v = __ldcg(reinterpret_cast<const float4*>(tok + int64_t(i) * D));
    acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
  }
  s_red[sub][q4] = acc;
  __syncthreads();
  if (tid < C::kFinishRows) {
    const float* rv = reinterpret_cast<const float*>(s_red);
    float v = 0.f;
#pragma unroll
    for (int s = 0; s < 8; ++s) v += rv[s * C::kFinishRows + tid];
    const int d = r0 + tid;
    if (q.residual) v += to_f32(static_cast<const CT*>(q.residual)[token * q.residual_stride + d]);
    static_cast<CT*>(q.out)[token * q.out_stride + d] = from_f32<CT>(v);
  }
}

}  // namespace mlxn::kernels::moe_i8
