// Norm benchmarks: the bandwidth bars of the foundation issue and a decode-sized call.
#include <optional>

#include "harness.h"
#include "mlxn/ops/norm.h"

namespace mlxn::bench {
namespace {

constexpr int64_t kRows = 8192, kDim = 4096;

// The norm weight is in x's dtype, as models ship it and as the torch peer runs it, unless
// `wdt` says otherwise.
Workload rms_norm_case(Session& s, int64_t rows, DType dt, std::optional<DType> wdt = {}) {
  Array x = random_device_array(s, {rows, kDim}, dt, 1);
  Array w = random_device_array(s, {kDim}, wdt.value_or(dt), 2);
  Array y = Array::empty({rows, kDim}, dt, s.device());
  const double e = double(element_size(dt));
  return {[&s, x, w, y] { rms_norm(s, x, y, {w.tensor()}); },
          2.0 * double(rows * kDim) * e + double(kDim * element_size(w.tensor().dtype())), 0};
}

Workload rms_norm_residual_case(Session& s, int64_t rows, DType dt) {
  Array x = random_device_array(s, {rows, kDim}, dt, 3);
  Array r = random_device_array(s, {rows, kDim}, dt, 4);
  Array w = random_device_array(s, {kDim}, dt, 5);
  Array y = Array::empty({rows, kDim}, dt, s.device());
  Array sum = Array::empty({rows, kDim}, dt, s.device());
  const double e = double(element_size(dt));
  // reads x and residual, writes y and the sum
  return {[&s, x, r, w, y, sum] { rms_norm_residual(s, x, r, y, {w.tensor()}, sum.tensor()); },
          4.0 * double(rows * kDim) * e + double(kDim) * e, 0};
}

MLXN_BENCH(Case{"rms_norm bf16 [8192, 4096]", "norm", [](Session& s) { return rms_norm_case(s, kRows, DType::bf16); },
                90});
MLXN_BENCH(Case{"rms_norm bf16 [8192, 4096] (f32 weight)", "norm",
                [](Session& s) { return rms_norm_case(s, kRows, DType::bf16, DType::f32); }, 0});
MLXN_BENCH(Case{"rms_norm f32 [8192, 4096]", "norm", [](Session& s) { return rms_norm_case(s, kRows, DType::f32); },
                0});
MLXN_BENCH(Case{"rms_norm_residual bf16 [8192, 4096]", "norm",
                [](Session& s) { return rms_norm_residual_case(s, kRows, DType::bf16); }, 80});
MLXN_BENCH(Case{"rms_norm bf16 [1, 4096] (decode)", "norm", [](Session& s) { return rms_norm_case(s, 1, DType::bf16); },
                0, 3.0});
MLXN_BENCH(Case{"rms_norm_residual bf16 [1, 4096] (decode)", "norm",
                [](Session& s) { return rms_norm_residual_case(s, 1, DType::bf16); }, 0, 3.0});

}  // namespace
}  // namespace mlxn::bench
