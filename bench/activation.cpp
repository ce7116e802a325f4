// Activation benchmarks: the SwiGLU of an 8B-class MLP (hidden 14336) at prefill size
// (bandwidth bar) and at decode size (latency bar, timed as graph replays).
#include "harness.h"
#include "mlxn/ops/activation.h"

namespace mlxn::bench {
namespace {

constexpr int64_t kFfn = 14336;

// silu_mul from one fused gate-up buffer [rows, 2 * n] into [rows, n].
Workload silu_mul_fused_case(Session& s, int64_t rows, int64_t n, DType dt) {
  Array gate_up = random_device_array(s, {rows, 2 * n}, dt, 11);
  Array y = Array::empty({rows, n}, dt, s.device());
  const double e = double(element_size(dt));
  // reads gate and up, writes y
  return {[&s, gate_up, y] { silu_mul(s, gate_up, y); }, 3.0 * double(rows * n) * e, 0};
}

MLXN_BENCH(Case{"silu_mul bf16 [8192, 2x14336]", "activation",
                [](Session& s) { return silu_mul_fused_case(s, 8192, kFfn, DType::bf16); }, 80, 0, true});
MLXN_BENCH(Case{"silu_mul bf16 [1, 2x14336] (decode)", "activation",
                [](Session& s) { return silu_mul_fused_case(s, 1, kFfn, DType::bf16); }, 0, 3.0});

}  // namespace
}  // namespace mlxn::bench
