#include "harness.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "mlxn/error.h"

namespace mlxn::bench {

namespace {

std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}

std::function<double(Session&)>& gemm_ceiling() {
  static std::function<double(Session&)> f;
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Median milliseconds per call of `fn`, which enqueues `per_call` calls per invocation.
double time_ms(Session& s, const std::function<void()>& fn, double per_call, bool quick) {
  Timer t(s);
  t.start();
  fn();
  t.stop();
  const double one = std::max(t.elapsed_ms(), 1e-4);
  const int iters = int(std::clamp((quick ? 1.0 : 4.0) / one, 1.0, 2000.0));
  const int reps = quick ? 5 : 15;
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    t.start();
    for (int i = 0; i < iters; ++i) fn();
    t.stop();
    samples.push_back(t.elapsed_ms() / iters / per_call);
  }
  return median(samples);
}

// Bytes read + written per second by a plain device copy: the bandwidth ceiling.
double copy_bandwidth_gbs(Session& s, bool quick) {
  const int64_t n = s.device().is_cuda() ? (int64_t(1) << 30) : (int64_t(1) << 28);
  Array a = Array::empty({n}, DType::u8, s.device()), b = Array::empty({n}, DType::u8, s.device());
  std::function<void()> copy;
  if (s.device().is_cuda()) {
    copy = [&] { s.copy(b, a); };
  } else {
    // Every core copies its own slice, as the CPU kernels spread rows over cores.
    copy = [&] {
      auto* src = a.data_as<char>();
      auto* dst = b.data_as<char>();
#pragma omp parallel
      {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t chunk = (n + nt - 1) / nt, lo = id * chunk, hi = std::min(n, lo + chunk);
        if (lo < hi) std::memcpy(dst + lo, src + lo, size_t(hi - lo));
      }
    };
  }
  copy();
  s.synchronize();
  const double ms = time_ms(s, copy, 1, quick);
  return 2.0 * double(n) / (ms * 1e-3) / 1e9;
}

}  // namespace

bool register_gemm_ceiling(std::function<double(Session&)> measure) {
  gemm_ceiling() = std::move(measure);
  return true;
}

bool register_case(Case c) {
  cases().push_back(std::move(c));
  return true;
}

int l2_rotation(const Session& s, double bytes) {
  return s.device().is_cuda() ? int(std::max(1.0, std::ceil(192e6 / bytes))) : 1;
}

std::vector<Array> routed_ids(Session& s, int64_t experts, int64_t tokens, int64_t top_k, double expert_bytes) {
  const int64_t slots = tokens * top_k;
  const int64_t rotations =
      std::clamp<int64_t>(l2_rotation(s, double(slots) * expert_bytes), 1, std::max<int64_t>(1, experts / slots));
  std::vector<Array> out;
  std::vector<uint32_t> ids(static_cast<size_t>(slots));
  for (int64_t r = 0; r < rotations; ++r) {
    // slot q of routing r: expert r + rotations q (mod experts), distinct over all (r, q)
    // while rotations x slots <= experts
    for (int64_t q = 0; q < slots; ++q) ids[size_t(q)] = uint32_t((r + rotations * q) % experts);
    Array a = Array::empty({tokens, top_k}, DType::u32, s.device());
    s.upload(a, ids.data(), ids.size() * 4);
    out.push_back(a);
  }
  return out;
}

Array random_device_array(Session& s, Dims shape, DType dtype, uint64_t seed) {
  Array a = Array::empty(shape, dtype, s.device());
  const int64_t n = a->numel();
  std::vector<unsigned char> host(a->nbytes());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const double u = double(splitmix(seed * 0x100000001b3ull + uint64_t(i)) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
    switch (dtype) {
      case DType::f32:
        reinterpret_cast<float*>(host.data())[i] = float(u);
        break;
      case DType::f16:
        reinterpret_cast<Half*>(host.data())[i] = Half(float(u));
        break;
      case DType::bf16:
        reinterpret_cast<BFloat16*>(host.data())[i] = BFloat16(float(u));
        break;
      case DType::i32:
        reinterpret_cast<int32_t*>(host.data())[i] = int32_t(u * 1000);
        break;
      case DType::u32:
        reinterpret_cast<uint32_t*>(host.data())[i] = uint32_t((u + 1) * 1000);
        break;
      default:
        host[size_t(i) % host.size()] = uint8_t(u * 127);
    }
  }
  s.upload(a, host.data(), host.size());
  s.synchronize();
  return a;
}

namespace {

struct Measured {
  const Case* c;
  double us, graph_us, bytes, flops;
};

Measured measure(Session& s, const Case& c, bool quick) {
  Workload w = c.make(s);
  w.run();  // warm-up (also surfaces errors before timing)
  s.synchronize();
  const double us = time_ms(s, w.run, 1, quick) * 1e3;
  double graph_us = 0;
  if (s.device().is_cuda()) {
    // Also as a replayed graph of back-to-back launches, the way a model runner executes a
    // forward pass: ~4 ms of work per replay (100 launches at most, 4 at least). A call that
    // cannot be captured keeps its eager time only, and says so.
    const int kLaunches = int(std::clamp(4000.0 / us, 4.0, 100.0));
    try {
      s.begin_capture();
      for (int i = 0; i < kLaunches; ++i) w.run();
      Graph g = s.end_capture();
      g.replay();
      s.synchronize();
      graph_us = time_ms(
                     s, [&] { g.replay(); }, kLaunches, quick) *
                 1e3;
    } catch (const Error& e) {
      if (s.capturing()) {
        try {
          s.end_capture();
        } catch (const Error&) {  // the capture was invalidated: ending it is all that is left
        }
      }
      std::fprintf(stderr, "  %s: not timed as a graph (%s)\n", c.name.c_str(), e.what());
      graph_us = 0;
    }
  }
  return {&c, us, graph_us, w.bytes, w.flops};
}

}  // namespace

int run_benchmarks(const BenchOptions& opts) {
  Session s(opts.device);
  const DeviceInfo info = device_info(opts.device);
  const bool cuda = opts.device.is_cuda();
  // Ceilings are measured before and after the cases and the higher reading kept: a reading
  // taken first thing, before the clocks have settled, was seen 14% low.
  double copy_gbs = copy_bandwidth_gbs(s, opts.quick);
  double gemm_tflops = gemm_ceiling() ? gemm_ceiling()(s) / 1e12 : 0;

  std::vector<Measured> results;
  for (const Case& c : cases()) {
    if (!opts.filter.empty() && c.name.find(opts.filter) == std::string::npos) continue;
    if (c.cuda_only && !cuda) continue;
    std::fprintf(stderr, "  measuring %s\n", c.name.c_str());
    results.push_back(measure(s, c, opts.quick));
  }
  if (!results.empty()) {
    copy_gbs = std::max(copy_gbs, copy_bandwidth_gbs(s, opts.quick));
    if (gemm_ceiling()) gemm_tflops = std::max(gemm_tflops, gemm_ceiling()(s) / 1e12);
  }

  std::printf("mlxn bench on %s (%s): copy bandwidth %.0f GB/s (read + write)", opts.device.str().c_str(),
              info.name.c_str(), copy_gbs);
  if (gemm_tflops > 0) std::printf(", bf16 GEMM %.0f TFLOP/s", gemm_tflops);
  std::printf("\n%-44s %10s %10s %9s %7s %8s %7s %14s %5s\n", "case", "time us", "graph us", "GB/s", "%copy", "TFLOP/s",
              "%gemm", "goal", "ok");

  nlohmann::json out;
  out["device"] = opts.device.str();
  out["device_name"] = info.name;
  out["copy_gbs"] = copy_gbs;
  out["gemm_tflops"] = gemm_tflops;
  out["cases"] = nlohmann::json::array();
  int failures = 0;
  for (const Measured& m : results) {
    const Case& c = *m.c;
    const double best_us = m.graph_us > 0 ? m.graph_us : m.us;
    const double gbs = m.bytes / (best_us * 1e-6) / 1e9;
    const double pct = 100.0 * gbs / copy_gbs;
    const double tflops = m.flops / (best_us * 1e-6) / 1e12;
    const double pct_gemm = gemm_tflops > 0 ? 100.0 * tflops / gemm_tflops : 0;
    std::string goal = "-";
    bool pass = true;
    // Bars are stated for the GPU; on the CPU they are reported but not judged.
    if (c.goal_pct_copy > 0) {
      goal = ">=" + std::to_string(int(c.goal_pct_copy)) + "% copy";
      pass = pass && pct >= c.goal_pct_copy;
    }
    if (c.goal_pct_gemm > 0) {
      goal = ">=" + std::to_string(int(c.goal_pct_gemm)) + "% gemm";
      pass = pass && gemm_tflops > 0 && pct_gemm >= c.goal_pct_gemm;
    }
    if (c.goal_us > 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "<=%.1f us", c.goal_us);
      goal = buf;
      pass = pass && best_us <= c.goal_us;
    }
    const bool judged = cuda && (c.goal_pct_copy > 0 || c.goal_pct_gemm > 0 || c.goal_us > 0);
    if (judged && !pass) ++failures;
    char graph_col[16] = "-", tf_col[16] = "-", gemm_col[16] = "-";
    if (m.graph_us > 0) std::snprintf(graph_col, sizeof graph_col, "%.2f", m.graph_us);
    if (m.flops > 0) std::snprintf(tf_col, sizeof tf_col, "%.1f", tflops);
    if (m.flops > 0 && gemm_tflops > 0) std::snprintf(gemm_col, sizeof gemm_col, "%.1f%%", pct_gemm);
    std::printf("%-44s %10.2f %10s %9.1f %6.1f%% %8s %7s %14s %5s\n", c.name.c_str(), m.us, graph_col, gbs, pct, tf_col,
                gemm_col, goal.c_str(), judged ? (pass ? "yes" : "NO") : "-");
    out["cases"].push_back({{"name", c.name},
                            {"family", c.family},
                            {"us", m.us},
                            {"graph_us", m.graph_us},
                            {"bytes", m.bytes},
                            {"flops", m.flops},
                            {"gbs", gbs},
                            {"pct_copy", pct},
                            {"tflops", tflops},
                            {"pct_gemm", pct_gemm},
                            {"goal_pct_copy", c.goal_pct_copy},
                            {"goal_pct_gemm", c.goal_pct_gemm},
                            {"goal_us", c.goal_us},
                            {"judged", judged},
                            {"pass", judged && pass}});
  }
  if (!opts.json_path.empty()) {
    std::ofstream f(opts.json_path);
    if (!f) throw_error<InvalidArgument>("bench", "cannot write ", opts.json_path);
    f << out.dump(2) << "\n";
  }
  if (failures) std::printf("%d case(s) missed their bar\n", failures);
  return 0;
}

}  // namespace mlxn::bench
