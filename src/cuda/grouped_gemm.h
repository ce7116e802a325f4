#pragma once
// The prefill half of every expert-routed matmul on CUDA: the routed pairs grouped by expert on
// the device (moe_group_tokens), rows of out-of-range ids zeroed, each expert's rows cut into
// tiles, then one grouped GEMM kernel over all tiles, so each expert runs as one GEMM and the
// host never learns the group sizes. Used by matmul_id (dense experts), quantized_matmul_id
// (MLX experts dequantized tile by tile) and gguf_matmul_id (Q4_K / Q5_K superblocks).
#include <algorithm>

#include "cuda/common/check.h"
#include "cuda/common/launch.h"
#include "cuda/kernels/matmul.cuh"
#include "mlxn/ops/moe.h"
#include "ops/dispatch_int.h"

namespace mlxn::cuda {

// Up to this many routed rows, the mat-vec kernels (weights streamed once per row, rows that
// share an expert launched side by side so the second read hits L2); beyond it, grouping.
inline constexpr int64_t kRoutedMatvecMaxPairs = 64;

// The pairs of p grouped by expert, with their row tiles of `bm` numbered; the scratch they live
// in is held until the grouped kernel is enqueued.
template <class T>
struct ExpertGroups {
  ScratchBuffer rows, offsets, tiles;
  kernels::GroupedParams<T> params;
  int bm = 0;
  int64_t tile_bound = 0;  // grid rows: at most one partial tile per expert beyond the full ones
};

// Row tile height: the rows an expert gets when routing is even, so that experts with few
// tokens do not pay for padding (the tensor-core kernel's 32, 64 or 128; fma_bm otherwise).
inline int grouped_tile_rows(int64_t pairs, int64_t experts, bool tensor_cores, int fma_bm) {
  const int64_t per_expert = (pairs + experts - 1) / experts;
  return !tensor_cores ? fma_bm : per_expert <= 16 ? 32 : per_expert <= 64 ? 64 : 128;
}

// ids: [P] expert ids as u32 (an i32 id below 0 reads as one past every expert: its rows become
// zeros, like any id outside [0, E)).
template <class T>
ExpertGroups<T> group_by_expert(Session& s, const char* op, const kernels::MatmulIdParams<T>& p, const void* ids,
                                int bm) {
  const int64_t pairs = p.pairs, e = p.experts;
  ExpertGroups<T> g;
  g.rows = s.pool().acquire(size_t(pairs) * 4);
  g.offsets = s.pool().acquire(size_t(e + 1) * 4);
  g.tiles = s.pool().acquire(size_t(e + 1) * 4);
  g.bm = bm;
  g.tile_bound = (pairs + bm - 1) / bm + std::min(e, pairs);
  if (g.tile_bound > kMaxGridY)
    throw_error<Unsupported>(op, "cuda: ", pairs, " routed rows need more than ", kMaxGridY, " row tiles");
  const Device dev = s.device();
  moe_group_tokens(s, Tensor(const_cast<void*>(ids), DType::u32, {pairs}, dev),
                   Tensor(g.rows.data(), DType::u32, {pairs}, dev), Tensor(g.offsets.data(), DType::u32, {e + 1}, dev));
  g.params = {p, static_cast<const uint32_t*>(g.rows.data()), static_cast<const uint32_t*>(g.offsets.data()),
              static_cast<const int*>(g.tiles.data())};
  launch_pdl(s, op, kernels::zero_unrouted_kernel<T>, unsigned((pairs * 32 + 255) / 256), 256, 0, g.params.sorted_rows,
             g.params.offsets, int(e), int(pairs), p.out, p.n);
  launch_pdl(s, op, kernels::group_tiles_kernel, 1, 1024, 0, g.params.offsets, int(e), bm,
             static_cast<int*>(g.tiles.data()));
  return g;
}

// The tensor-core grouped GEMM over g's tiles, W's tiles from `w` (kernels::DenseExpertTiles,
// or a loader that dequantizes).
template <class T, class W>
void grouped_mma(Session& s, const char* op, const ExpertGroups<T>& g, const W& w) {
  detail::dispatch_int<32, 64, 128>(g.bm, [&]<int BM>() {
    constexpr int kSmem = kernels::grouped_smem_bytes<T, W>(BM);
    const dim3 grid(unsigned((g.params.mm.n + kernels::kMmaBN - 1) / kernels::kMmaBN), unsigned(g.tile_bound));
    launch_pdl(s, op, with_smem(kernels::grouped_mma_kernel<T, BM, W>, kSmem), grid, kernels::kMmaThreads, kSmem,
               g.params, w);
  });
}

}  // namespace mlxn::cuda
