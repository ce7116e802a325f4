// MLX affine quantized matmul benchmarks: the decode (mat-vec) bars, batched decode, prefill
// (reported in TFLOP/s through the flops field) and an MoE decode step's expert matmul.
// Weights rotate through enough copies to exceed the L2 cache, so every call streams W from
// device memory as it would in a model.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "harness.h"
#include "mlxn/ops/quant_mlx.h"

namespace mlxn::bench {
namespace {

struct QWeights {
  Array packed, scales, biases;
};

QWeights make_weights(Session& s, int64_t e, int64_t n, int64_t k, MlxQuant q, uint64_t seed) {
  const Dims p = e ? Dims{e, n, k * q.bits / 32} : Dims{n, k * q.bits / 32};
  const Dims g = e ? Dims{e, n, k / q.group_size} : Dims{n, k / q.group_size};
  return {random_device_array(s, p, DType::u32, seed), random_device_array(s, g, DType::bf16, seed + 1),
          random_device_array(s, g, DType::bf16, seed + 2)};
}

double weight_bytes(int64_t n, int64_t k, MlxQuant q) {
  return double(n) * double(k) * q.bits / 8.0 + 2.0 * 2.0 * double(n) * double(k / q.group_size);
}

Workload qmm_case(Session& s, int64_t m, int64_t n, int64_t k, MlxQuant q) {
  const double wb = weight_bytes(n, k, q);
  const int copies = m <= 128 ? l2_rotation(s, wb) : 1;  // prefill reads W many times anyway
  auto ws = std::make_shared<Rotation<QWeights>>();
  for (int i = 0; i < copies; ++i) ws->items.push_back(make_weights(s, 0, n, k, q, 10 + 3 * uint64_t(i)));
  Array x = random_device_array(s, {m, k}, DType::bf16, 1);
  Array out = Array::empty({m, n}, DType::bf16, s.device());
  Workload w;
  w.run = [&s, ws, x, out, q] {
    const QWeights& c = ws->next();
    quantized_matmul(s, x, c.packed, c.scales, c.biases, q, out);
  };
  w.bytes = wb + 2.0 * double(m * k) + 2.0 * double(m * n);
  w.flops = 2.0 * double(m) * double(n) * double(k);
  return w;
}

// One MoE decode step's gate (or up) projection: 1 token, top 8 of 128 experts, hidden 2048,
// expert width 768. Bytes: the 8 selected experts' weights once, x and out. The routings
// rotate over disjoint expert sets (routed_ids), so no call finds its experts in L2.
// out_pad > 0: out rows width + out_pad apart, which keeps the call on the per-slot mat-vec
// (the grouped prefill GEMM writes rows back to back): the comparison for the crossover.
Workload moe_case(Session& s, int64_t tokens, MlxQuant q, int64_t out_pad = 0) {
  constexpr int64_t E = 128, top_k = 8, hidden = 2048, width = 768;
  QWeights w8 = make_weights(s, E, width, hidden, q, 40);
  Array x = random_device_array(s, {tokens, hidden}, DType::bf16, 41);
  auto ids = std::make_shared<Rotation<Array>>(routed_ids(s, E, tokens, top_k, weight_bytes(width, hidden, q)));
  Array out_buf = Array::empty({tokens, top_k, width + out_pad}, DType::bf16, s.device());
  Workload w;
  w.run = [&s, w8, x, ids, out_buf, q] {
    const Tensor out = out_buf.tensor().slice(2, 0, width);
    quantized_matmul_id(s, x, w8.packed, w8.scales, w8.biases, ids->next(), q, out);
  };
  w.bytes = double(tokens * top_k) * weight_bytes(width, hidden, q) + 2.0 * double(tokens * hidden) +
            2.0 * double(tokens * top_k * width);
  w.flops = 2.0 * double(tokens * top_k) * double(width) * double(hidden);
  return w;
}

constexpr int64_t kN = 14336, kK = 4096;

// Decode-sized cases: BITS-bit, group size GS, M rows of x by W [14336, 4096]; GOAL the % of
// copy bandwidth its bar asks (0: no bar of its own).
#define MLXN_QMM(BITS, GS, M, GOAL)                                                     \
  MLXN_BENCH(Case{"qmm " #BITS "-bit g" #GS " [" #M ",4096]x[14336,4096]", "quant_mlx", \
                  [](Session& s) {                                                      \
                    return qmm_case(s, M, kN, kK, {BITS, GS});                          \
                  },                                                                    \
                  GOAL})
MLXN_QMM(4, 64, 1, 75);
// The other group sizes of the single-row path (no bar).
MLXN_QMM(4, 32, 1, 0);
MLXN_QMM(4, 128, 1, 0);
MLXN_QMM(8, 64, 1, 70);
// 2..8 rows: the bar is the growth from 1 row (under 30% at 8), read off these rows.
MLXN_QMM(4, 64, 2, 0);
MLXN_QMM(4, 64, 4, 0);
MLXN_QMM(4, 64, 8, 0);
// 8 rows at the other group sizes (no bar): group 128 takes the integer batch kernel, group 32
// the bf16 mat-vec.
MLXN_QMM(4, 32, 8, 0);
MLXN_QMM(4, 128, 8, 0);
// The mat-vec at 16 rows, either side of its limit (24 rows: 3 mat-vec passes against
// dequantize + GEMM), and 48 rows on the GEMM path.
MLXN_QMM(4, 64, 16, 0);
MLXN_QMM(4, 64, 24, 0);
MLXN_QMM(4, 64, 25, 0);
MLXN_QMM(4, 64, 48, 0);
MLXN_QMM(3, 64, 1, 0);
MLXN_QMM(3, 32, 1, 0);
MLXN_QMM(5, 64, 1, 0);
MLXN_QMM(6, 64, 1, 0);
#undef MLXN_QMM
MLXN_BENCH(Case{"qmm 4-bit g64 [512,4096]x[14336,4096] (prefill)", "quant_mlx",
                [](Session& s) {
                  return qmm_case(s, 512, kN, kK, {4, 64});
                },
                0, 0, true});
MLXN_BENCH(Case{"qmm 4-bit g64 [2048,4096]x[14336,4096] (prefill)", "quant_mlx",
                [](Session& s) {
                  return qmm_case(s, 2048, kN, kK, {4, 64});
                },
                0, 0, true});
MLXN_BENCH(Case{"qmm 4-bit g64 [4096,4096]x[14336,4096] (prefill)", "quant_mlx",
                [](Session& s) {
                  return qmm_case(s, 4096, kN, kK, {4, 64});
                },
                0, 0, true});
MLXN_BENCH(Case{"qmm_id 4-bit g64 E128 top8 [1,2048]->768 (MoE decode)", "quant_mlx",
                [](Session& s) {
                  return moe_case(s, 1, {4, 64});
                },
                0});
// An MoE prefill step's projection: 64 to 512 tokens, each routed to 8 of the 128 experts;
// and the per-slot mat-vec on the same calls.
#define MLXN_QMM_MOE(T, PAD, WHAT)                                                                    \
  MLXN_BENCH(Case{"qmm_id 4-bit g64 E128 top8 [" #T ",2048]->768 (MoE prefill" WHAT ")", "quant_mlx", \
                  [](Session& s) {                                                                    \
                    return moe_case(s, T, {4, 64}, PAD);                                              \
                  },                                                                                  \
                  0, 0, true})
MLXN_QMM_MOE(64, 0, "");
MLXN_QMM_MOE(128, 0, "");
MLXN_QMM_MOE(256, 0, "");
MLXN_QMM_MOE(512, 0, "");
MLXN_QMM_MOE(512, 8, ", mat-vec");
#undef MLXN_QMM_MOE

}  // namespace
}  // namespace mlxn::bench
