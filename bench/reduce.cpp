// Reduce-family benchmarks: the sampling-path calls on one vocabulary row (decode, timed in
// a replayed graph) and batched scans and sorts.
#include "harness.h"
#include "mlxn/ops/reduce.h"

namespace mlxn::bench {
namespace {

constexpr int64_t kVocab = 151936;

Workload top_k_case(Session& s, int64_t rows, int64_t cols, int64_t k) {
  Array x = random_device_array(s, {rows, cols}, DType::f32, 21);
  Array v = Array::empty({rows, k}, DType::f32, s.device());
  Array i = Array::empty({rows, k}, DType::i32, s.device());
  // reads x once, writes k values and k indices per row
  return {[&s, x, k, v, i] { top_k(s, x, k, v, i); }, double(rows * cols) * 4.0 + double(rows * k) * 8.0, 0};
}

Workload argmax_case(Session& s, int64_t rows, int64_t cols) {
  Array x = random_device_array(s, {rows, cols}, DType::f32, 22);
  Array out = Array::empty({rows}, DType::i32, s.device());
  return {[&s, x, out] { argmax(s, x, out); }, double(rows * cols) * 4.0 + double(rows) * 4.0, 0};
}

Workload cumsum_case(Session& s, int64_t rows, int64_t cols, DType dt) {
  Array x = random_device_array(s, {rows, cols}, dt, 23);
  Array y = Array::empty({rows, cols}, dt, s.device());
  return {[&s, x, y] { cumsum(s, x, y); }, 2.0 * double(rows * cols) * double(element_size(dt)), 0};
}

Workload argsort_case(Session& s, int64_t rows, int64_t cols) {
  Array x = random_device_array(s, {rows, cols}, DType::f32, 24);
  Array out = Array::empty({rows, cols}, DType::i32, s.device());
  return {[&s, x, out] { argsort(s, x, out); }, double(rows * cols) * 8.0, 0};
}

MLXN_BENCH(Case{"top_k f32 [1, 151936] k=40", "reduce", [](Session& s) { return top_k_case(s, 1, kVocab, 40); }, 0});
MLXN_BENCH(Case{"top_k f32 [64, 151936] k=40", "reduce", [](Session& s) { return top_k_case(s, 64, kVocab, 40); }, 0, 0,
                true});
MLXN_BENCH(Case{"argmax f32 [1, 151936]", "reduce", [](Session& s) { return argmax_case(s, 1, kVocab); }, 0});
MLXN_BENCH(Case{"argmax f32 [64, 151936]", "reduce", [](Session& s) { return argmax_case(s, 64, kVocab); }, 0});
MLXN_BENCH(Case{"cumsum bf16 [8192, 4096]", "reduce",
                [](Session& s) { return cumsum_case(s, 8192, 4096, DType::bf16); }, 0, 0, true});
MLXN_BENCH(Case{"argsort f32 [4096, 1024]", "reduce", [](Session& s) { return argsort_case(s, 4096, 1024); }, 0, 0,
                true});
MLXN_BENCH(Case{"argsort f32 [1, 151936]", "reduce", [](Session& s) { return argsort_case(s, 1, kVocab); }, 0});

}  // namespace
}  // namespace mlxn::bench
