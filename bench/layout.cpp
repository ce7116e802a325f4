// Layout benchmarks: the transpose bandwidth bar, strided copies, and the two decode-step
// calls (KV-cache write, embedding row) timed as graph replays.
#include <cmath>

#include "harness.h"
#include "mlxn/ops/layout.h"

namespace mlxn::bench {
namespace {

Array index_array(Session& s, int32_t value) {
  Array a = Array::empty({1}, DType::i32, s.device());
  s.upload(a, &value, sizeof value);
  s.synchronize();
  return a;
}

Workload transpose_case(Session& s, int64_t rows, int64_t cols, DType dt) {
  Array x = random_device_array(s, {rows, cols}, dt, 11);
  Array y = Array::empty({cols, rows}, dt, s.device());
  const double e = double(element_size(dt));
  return {[&s, x, y] { transpose(s, x, y); }, 2.0 * double(rows * cols) * e};
}

// Contiguous when cols == parent_cols, else a column slice of a wider parent.
Workload copy_case(Session& s, int64_t rows, int64_t cols, int64_t parent_cols, DType dt) {
  Array parent = random_device_array(s, {rows, parent_cols}, dt, 12);
  Array y = Array::empty({rows, cols}, dt, s.device());
  const double e = double(element_size(dt));
  return {[&s, parent, y] { copy(s, parent.tensor().slice(1, 0, y->dim(1)), y); }, 2.0 * double(rows * cols) * e};
}

Workload repeat_heads_case(Session& s) {
  Array x = random_device_array(s, {1, 8, 4096, 128}, DType::bf16, 13);
  Array y = Array::empty({1, 32, 4096, 128}, DType::bf16, s.device());
  return {[&s, x, y] { repeat_heads(s, x, y); }, (8.0 + 32.0) * 4096 * 128 * 2};
}

// Decode (T = 1, row from a device position, as inside a captured graph) or prefill.
Workload kv_write_case(Session& s, int64_t tokens) {
  constexpr int64_t H = 8, D = 128, kCapacity = 4096;
  Array cache = random_device_array(s, {H, kCapacity, D}, DType::bf16, 14);
  Array src = random_device_array(s, {tokens, H, D}, DType::bf16, 15);
  const double bytes = 2.0 * double(tokens * H * D) * 2;
  if (tokens == 1) {
    Array pos = index_array(s, 1234);
    return {[&s, cache, src, pos] { kv_cache_write(s, cache, src, {0, pos.tensor(), false}); }, bytes + 4, 0};
  }
  return {[&s, cache, src] { kv_cache_write(s, cache, src, {0, std::nullopt, false}); }, bytes};
}

Workload embedding_case(Session& s) {
  constexpr int64_t V = 151936, D = 4096;
  Array table = random_device_array(s, {V, D}, DType::bf16, 16);
  Array ids = index_array(s, 123457);
  Array out = Array::empty({1, D}, DType::bf16, s.device());
  const float scale = std::sqrt(float(D));
  return {[&s, table, ids, out, scale] { embedding(s, table, ids, out, scale); }, 2.0 * D * 2 + 4, 0};
}

MLXN_BENCH(Case{"transpose bf16 [8192, 8192]", "layout",
                [](Session& s) { return transpose_case(s, 8192, 8192, DType::bf16); }, 80});
MLXN_BENCH(Case{"transpose f32 [8192, 8192]", "layout",
                [](Session& s) { return transpose_case(s, 8192, 8192, DType::f32); }, 0});
MLXN_BENCH(Case{"copy bf16 [8192, 8192] (contiguous)", "layout",
                [](Session& s) { return copy_case(s, 8192, 8192, 8192, DType::bf16); }, 0});
MLXN_BENCH(Case{"copy strided bf16 [8192, 4096] from [8192, 8192]", "layout",
                [](Session& s) { return copy_case(s, 8192, 4096, 8192, DType::bf16); }, 0});
MLXN_BENCH(Case{"repeat_heads bf16 [1, 8, 4096, 128] -> 32 heads", "layout",
                [](Session& s) { return repeat_heads_case(s); }, 0});
MLXN_BENCH(Case{"kv_cache_write bf16 decode H8 D128", "layout", [](Session& s) { return kv_write_case(s, 1); }, 0,
                3.0});
MLXN_BENCH(Case{"kv_cache_write bf16 prefill T4096 H8 D128", "layout",
                [](Session& s) { return kv_write_case(s, 4096); }, 0});
MLXN_BENCH(Case{"embedding bf16 [1, 4096] from [151936, 4096] (decode)", "layout",
                [](Session& s) { return embedding_case(s); }, 0, 3.0, /*cuda_only=*/true});

}  // namespace
}  // namespace mlxn::bench
