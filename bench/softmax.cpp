// Softmax benchmarks: a vocabulary-wide batch against the copy bandwidth, attention-sized
// rows, and a decode-sized call timed inside a replayed graph.
#include "harness.h"
#include "mlxn/ops/softmax.h"

namespace mlxn::bench {
namespace {

Workload softmax_case(Session& s, int64_t rows, int64_t cols, DType dt) {
  Array x = random_device_array(s, {rows, cols}, dt, 11);
  Array y = Array::empty({rows, cols}, dt, s.device());
  // reads x once, writes y once
  return {[&s, x, y] { softmax(s, x, y); }, 2.0 * double(rows * cols) * double(element_size(dt)), 0};
}

MLXN_BENCH(Case{"softmax f32 [8192, 32000]", "softmax",
                [](Session& s) { return softmax_case(s, 8192, 32000, DType::f32); }, 80, 0, true});
MLXN_BENCH(Case{"softmax bf16 [8192, 4096]", "softmax",
                [](Session& s) { return softmax_case(s, 8192, 4096, DType::bf16); }, 0});
MLXN_BENCH(Case{"softmax bf16 [1, 4096] (decode)", "softmax",
                [](Session& s) { return softmax_case(s, 1, 4096, DType::bf16); }, 0, 3.0});

}  // namespace
}  // namespace mlxn::bench
