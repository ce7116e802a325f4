// GGUF quant benchmarks: the decode mat-vec bars (x [M, 4096] by W [14336, 4096], M = 1 and
// 8) and the prefill matmul (M = 512..4096). Decode-sized calls rotate their weights (or, routed,
// their experts) through more than L2 holds, so every call streams W from device memory as it
// would in a model.
#include <cstring>
#include <memory>
#include <vector>

#include "harness.h"
#include "ops/quant_gguf_args.h"
#include "mlxn/ops/quant_gguf.h"

namespace mlxn::bench {
namespace {

constexpr int64_t kN = 14336, kK = 4096;

Array random_blocks(Session& s, Dims shape, DType t, uint64_t seed) {
  Array a = Array::empty(shape, t, s.device());
  std::vector<uint8_t> host(a->nbytes());
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& b : host) {
    z ^= z << 13, z ^= z >> 7, z ^= z << 17;
    b = uint8_t(z >> 24);
  }
  const auto& tr = traits(t);
  const size_t nblocks = host.size() / tr.block_bytes;
  for (size_t i = 0; i < nblocks; ++i)
    for (int off : detail::gguf_f16_scale_offsets(t)) {
      const uint16_t h = Half(0.01f + 0.001f * float(i % 7)).bits;
      std::memcpy(host.data() + i * tr.block_bytes + size_t(off), &h, 2);
    }
  s.upload(a, host.data(), host.size());
  s.synchronize();
  return a;
}

Workload matmul_case(Session& s, DType t, int64_t m) {
  auto ws = std::make_shared<Rotation<Array>>();
  ws->items.push_back(random_blocks(s, {kN, kK}, t, 7));
  const double wb = double(ws->items[0]->nbytes());
  const int copies = m <= 128 ? l2_rotation(s, wb) : 1;  // prefill reads W many times anyway
  for (int i = 1; i < copies; ++i) ws->items.push_back(random_blocks(s, {kN, kK}, t, 7 + uint64_t(i)));
  Array x = random_device_array(s, {m, kK}, DType::bf16, 8);
  Array y = Array::empty({m, kN}, DType::bf16, s.device());
  const double bytes = wb + 2.0 * double(m * kK) + 2.0 * double(m * kN);
  return {[&s, x, ws, y] { gguf_matmul(s, x, ws->next(), y); }, bytes, 2.0 * double(m) * double(kN) * double(kK)};
}

// The CPU times the single-row and 8-row cases (decode on a machine without a GPU).
#define MLXN_GGUF_MATVEC(type, tname, m, goal)                                      \
  MLXN_BENCH(Case{"gguf " tname " matvec [" #m ",4096]x[14336,4096]", "quant_gguf", \
                  [](Session& s) { return matmul_case(s, DType::type, m); }, goal, 0, m != 1 && m != 8})

// Decode bars: >= 70% of copy bandwidth on W's bytes at M = 1. At M = 8 the bar is that the
// time grows by under 30% from M = 1 (compare the two rows); 54% = 70% / 1.3 is the goal
// shown for it.
MLXN_GGUF_MATVEC(q4_0, "q4_0", 1, 70);
MLXN_GGUF_MATVEC(q4_k, "q4_k", 1, 70);
MLXN_GGUF_MATVEC(q6_k, "q6_k", 1, 70);
MLXN_GGUF_MATVEC(q8_0, "q8_0", 1, 70);
MLXN_GGUF_MATVEC(q4_0, "q4_0", 2, 0);
MLXN_GGUF_MATVEC(q4_k, "q4_k", 2, 0);
MLXN_GGUF_MATVEC(q6_k, "q6_k", 2, 0);
MLXN_GGUF_MATVEC(q4_0, "q4_0", 4, 0);
MLXN_GGUF_MATVEC(q4_k, "q4_k", 4, 0);
MLXN_GGUF_MATVEC(q6_k, "q6_k", 4, 0);
MLXN_GGUF_MATVEC(q4_0, "q4_0", 8, 54);
MLXN_GGUF_MATVEC(q4_k, "q4_k", 8, 54);
MLXN_GGUF_MATVEC(q6_k, "q6_k", 8, 54);
MLXN_GGUF_MATVEC(q8_0, "q8_0", 8, 54);
// Other block types, no bar.
MLXN_GGUF_MATVEC(q2_k, "q2_k", 1, 0);
MLXN_GGUF_MATVEC(q3_k, "q3_k", 1, 0);
MLXN_GGUF_MATVEC(q5_k, "q5_k", 1, 0);
MLXN_GGUF_MATVEC(q5_k, "q5_k", 8, 0);
MLXN_GGUF_MATVEC(q5_0, "q5_0", 1, 0);

// Prefill: the bar is >= 50% of the cuBLAS bf16 GEMM rate (flops are reported for it).
#define MLXN_GGUF_MATMUL(m)                                                             \
  MLXN_BENCH(Case{"gguf q4_k matmul M=" #m " [" #m ",4096]x[14336,4096]", "quant_gguf", \
                  [](Session& s) { return matmul_case(s, DType::q4_k, m); }, 0, 0, true})
MLXN_GGUF_MATMUL(512);
MLXN_GGUF_MATMUL(2048);
MLXN_GGUF_MATMUL(4096);

// MoE shape: 128 experts [768, 2048] q4_k, T tokens each routed to 8 of them (bytes: every
// slot's expert, as if none were shared). pad > 0 writes rows pad elements apart, which keeps
// a prefill-sized call on the grouped mat-vec, for comparison with the grouped GEMM.
Workload moe_case(Session& s, int64_t tokens, int64_t pad = 0) {
  constexpr int64_t e = 128, n = 768, k = 2048, top_k = 8;
  Array w = random_blocks(s, {e, n, k}, DType::q4_k, 9);
  Array x = random_device_array(s, {tokens, k}, DType::bf16, 10);
  const double expert_bytes = double(w->nbytes()) / double(e);
  auto ids = std::make_shared<Rotation<Array>>(routed_ids(s, e, tokens, top_k, expert_bytes));
  Array y = Array::empty({tokens, top_k, n + pad}, DType::bf16, s.device());
  const Tensor yv = y.tensor().slice(2, 0, n);
  const double slots = double(tokens * top_k);
  const double bytes = expert_bytes * slots + 2.0 * double(tokens * k) + 2.0 * slots * double(n);
  return {[&s, x, w, ids, y, yv] { gguf_matmul_id(s, x, w, ids->next(), yv); }, bytes, 2.0 * slots * double(n * k)};
}
MLXN_BENCH(Case{"gguf q4_k matmul_id 128x[768,2048] top8 [1,2048]", "quant_gguf",
                [](Session& s) { return moe_case(s, 1); }, 0, 0, true});
MLXN_BENCH(Case{"gguf q4_k matmul_id 128x[768,2048] top8 [4,2048]", "quant_gguf",
                [](Session& s) { return moe_case(s, 4); }, 0, 0, true});
#define MLXN_GGUF_MOE(T, PAD, WHAT)                                                                        \
  MLXN_BENCH(Case{"gguf q4_k matmul_id 128x[768,2048] top8 [" #T ",2048] (prefill" WHAT ")", "quant_gguf", \
                  [](Session& s) { return moe_case(s, T, PAD); }, 0, 0, true})
MLXN_GGUF_MOE(64, 0, "");
MLXN_GGUF_MOE(128, 0, "");
MLXN_GGUF_MOE(256, 0, "");
MLXN_GGUF_MOE(512, 0, "");
MLXN_GGUF_MOE(128, 8, ", grouped mat-vec");
MLXN_GGUF_MOE(512, 8, ", grouped mat-vec");
#undef MLXN_GGUF_MOE

}  // namespace
}  // namespace mlxn::bench
