#pragma once
// The router of an MoE decode step (one token) as one kernel, where the layer otherwise takes
// two dependent launches before its experts (the router's mat-vec, then moe_route; bench/NOTES.md,
// run 247): one cluster of kBlocks blocks computes the E logits, one router row per warp, each
// rounded to x's dtype as the router's linear layer writes them, into the first block's shared
// memory (distributed shared memory), and after the cluster barrier that block's first warp
// selects and weighs the top k exactly as moe_route does (route_one_token).
#include <cooperative_groups.h>

#include "cuda/kernels/moe.cuh"

namespace mlxn::kernels {

struct MoeRouterConfig {
  static constexpr int kBlocks = 8, kWarps = 8, kThreads = 32 * kWarps;  // a portable cluster
  static constexpr int kMaxExperts = 256;                                // route_one_token<8>
  // 16-byte chunks of its first router row each lane loads before the wait on the kernel
  // before (weights are never written by it): D = 2048 in bf16 is 8 chunks a lane.
  static constexpr int kPrefetch = 8;
};

// The dot product of 8 values of x and of a router row, both packed in 16 bytes.
template <class CT>
__device__ __forceinline__ float chunk_dot(const uint4& a, const uint4& b) {
  float va[8], vb[8];
  unpack_f32<CT>(a, va);
  unpack_f32<CT>(b, vb);
  float d = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) d = fmaf(va[i], vb[i], d);
  return d;
}

// Grid: one cluster of kBlocks blocks, kThreads threads. x: [dim] (16-byte aligned); router:
// [E, dim], rows router_stride elements apart (16-byte aligned); dim % 8 == 0; E <= 32 V.
// p.logits is unused (the logits stay on chip); p.tokens == 1.
template <class CT, int V>
__global__ void __launch_bounds__(MoeRouterConfig::kThreads)
    moe_router_kernel(const CT* x, const CT* router, int64_t router_stride, int dim, RouteParams p) {
  using C = MoeRouterConfig;
  namespace cg = cooperative_groups;
  __shared__ float logits[C::kMaxExperts];
  cg::cluster_group cluster = cg::this_cluster();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, chunks = dim / 8;
  const int first = int(cluster.block_rank()) * C::kWarps + warp;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  auto row_of = [&](int e) { return reinterpret_cast<const uint4*>(router + e * router_stride); };
  uint4 pre[C::kPrefetch];
#pragma unroll
  for (int j = 0; j < C::kPrefetch; ++j) {
    const int c = lane + 32 * j;
    pre[j] = first < p.experts && c < chunks ? __ldg(row_of(first) + c) : make_uint4(0, 0, 0, 0);
  }
  pdl_wait();
  pdl_launch_dependents();
  float* first_block_logits = cluster.map_shared_rank(logits, 0);
  for (int e = first; e < p.experts; e += C::kBlocks * C::kWarps) {  // uniform over the warp
    const uint4* row = row_of(e);
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < C::kPrefetch; ++j) {
      const int c = lane + 32 * j;
      if (c < chunks) dot += chunk_dot<CT>(e == first ? pre[j] : __ldg(row + c), __ldg(xv + c));
    }
    for (int c = lane + 32 * C::kPrefetch; c < chunks; c += 32) dot += chunk_dot<CT>(__ldg(row + c), __ldg(xv + c));
    dot = warp_sum(dot);
    if (lane == 0) first_block_logits[e] = to_f32(from_f32<CT>(dot));
  }
  cluster.sync();  // the logits are in the first block's shared memory
  if (cluster.block_rank() == 0 && warp == 0) route_one_token<V>(p, 0, [&](int e) { return logits[e]; });
}

}  // namespace mlxn::kernels
