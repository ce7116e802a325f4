#pragma once
// Benchmark harness behind `mlxn bench`. A case builds its inputs once and returns a
// Workload: a callable that enqueues one call, plus the bytes and FLOPs that call must move
// and compute. The harness times it (device events, warm-up, median of repetitions; on a GPU
// also as CUDA-graph replays of back-to-back launches, the time bars are judged on), measures the device's copy
// bandwidth in the same run, and reports every case as time, GB/s and % of that ceiling.
#include <functional>
#include <string>
#include <vector>

#include "mlxn/session.h"

namespace mlxn::bench {

struct BenchOptions {
  Device device = Device::cpu();
  std::string filter;
  std::string json_path;
  bool quick = false;
};

struct Workload {
  std::function<void()> run;  // enqueues one call on the session
  double bytes = 0;           // fewest bytes the call must read + write
  double flops = 0;           // 0 for memory-bound ops
};

struct Case {
  std::string name;    // "rms_norm bf16 [8192, 4096]"
  std::string family;  // "norm"
  std::function<Workload(Session&)> make;
  double goal_pct_copy = 0;  // bar: >= this % of copy bandwidth (0 = none)
  double goal_us = 0;        // bar: <= this many microseconds (graph replay on a GPU)
  bool cuda_only = false;    // too large for the CPU backend to be worth timing
  double goal_pct_gemm = 0;  // bar: >= this % of the dense bf16 GEMM rate (flops-bound cases)
};

bool register_case(Case c);
// The matrix-unit ceiling: a function measuring the device's dense bf16 GEMM rate (FLOP/s)
// through the vendor library, registered by the matmul benchmarks. Cases with flops report
// % of it; without one registered, the column stays empty.
bool register_gemm_ceiling(std::function<double(Session&)> measure);
int run_benchmarks(const BenchOptions& opts);

// Random contiguous device data (uniform [-1, 1)); bench inputs are never zeros.
Array random_device_array(Session& s, Dims shape, DType dtype, uint64_t seed);

// How many copies of an operand of `bytes` a case cycles through so that no call finds it in
// L2, as in a model, where every other layer's weights stream through L2 between two calls of
// one layer: at least 192 MB in rotation on a GPU (the H100's and H200's L2 hold 50 MB), one
// on the CPU.
int l2_rotation(const Session& s, double bytes);

// Routings of `tokens` x `top_k` slots over `experts` for an expert-routed case ([tokens,
// top_k] u32 each): as many as l2_rotation asks for `expert_bytes` per selected expert, at
// most experts / (tokens x top_k), and no expert in two of them, so no call finds its experts
// in L2. Within one routing the slots take distinct experts while there are enough.
std::vector<Array> routed_ids(Session& s, int64_t experts, int64_t tokens, int64_t top_k, double expert_bytes);

// The operands a case cycles through, one per call (shared by the case's callable).
template <class T>
struct Rotation {
  std::vector<T> items;
  size_t calls = 0;
  const T& next() { return items[calls++ % items.size()]; }
};

}  // namespace mlxn::bench

#define MLXN_BENCH_CONCAT2(a, b) a##b
#define MLXN_BENCH_CONCAT(a, b) MLXN_BENCH_CONCAT2(a, b)
// MLXN_BENCH(Case{...});  at namespace scope in a bench/<family>.cpp file.
#define MLXN_BENCH(...)                                                         \
  [[maybe_unused]] static const bool MLXN_BENCH_CONCAT(mlxn_bench_, __LINE__) = \
      ::mlxn::bench::register_case(__VA_ARGS__)
