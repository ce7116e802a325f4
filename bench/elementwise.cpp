// Elementwise benchmarks: a residual add and an f32 -> bf16 cast at prefill size (reported
// as bandwidth, no bars yet).
#include "harness.h"
#include "mlxn/ops/elementwise.h"

namespace mlxn::bench {
namespace {

constexpr int64_t kRows = 8192, kDim = 4096;

Workload add_case(Session& s, DType dt) {
  Array a = random_device_array(s, {kRows, kDim}, dt, 21);
  Array b = random_device_array(s, {kRows, kDim}, dt, 22);
  Array y = Array::empty({kRows, kDim}, dt, s.device());
  // reads a and b, writes y
  return {[&s, a, b, y] { add(s, a, b, y); }, 3.0 * double(kRows * kDim) * double(element_size(dt)), 0};
}

Workload cast_case(Session& s, DType from, DType to) {
  Array x = random_device_array(s, {kRows, kDim}, from, 23);
  Array y = Array::empty({kRows, kDim}, to, s.device());
  return {[&s, x, y] { cast(s, x, y); }, double(kRows * kDim) * double(element_size(from) + element_size(to)), 0};
}

MLXN_BENCH(Case{"add bf16 [8192, 4096]", "elementwise", [](Session& s) { return add_case(s, DType::bf16); }});
MLXN_BENCH(Case{"cast f32->bf16 [8192, 4096]", "elementwise",
                [](Session& s) { return cast_case(s, DType::f32, DType::bf16); }});

}  // namespace
}  // namespace mlxn::bench
