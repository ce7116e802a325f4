// The mlxn command line: info, ops, bench.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "mlxn/device.h"
#include "mlxn/error.h"
#include "mlxn/registry.h"
#include "harness.h"

using namespace mlxn;

namespace {

void print_info() {
  std::printf("mlxn %s, CUDA backend: %s\n", "0.1.0", built_with_cuda() ? "built" : "not built");
  for (const DeviceInfo& d : list_devices()) {
    if (d.device.is_cpu()) {
      std::printf("  %-8s %s, %d hardware threads\n", d.device.str().c_str(), d.name.c_str(), d.multiprocessors);
    } else {
      std::printf("  %-8s %s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f GiB free), L2 %.0f MiB\n",
                  d.device.str().c_str(), d.name.c_str(), d.compute_major, d.compute_minor, d.multiprocessors,
                  double(d.total_memory) / (1 << 30), double(d.free_memory) / (1 << 30),
                  double(d.l2_bytes) / (1 << 20));
    }
  }
}

std::string dtype_list(DTypeSet set) {
  std::string out;
  for (int i = 0; i < int(DType::count_); ++i)
    if (set.contains(DType(i))) out += (out.empty() ? "" : ",") + std::string(name(DType(i)));
  return out.empty() ? "-" : out;
}

void print_ops() {
  std::printf("%-12s %-22s %-28s %s\n", "family", "op", "cpu", "cuda");
  for (const OpListing& op : list_ops())
    std::printf("%-12s %-22s %-28s %s\n", op.family.c_str(), op.name.c_str(),
                dtype_list(op.dtypes[int(DeviceType::cpu)]).c_str(),
                dtype_list(op.dtypes[int(DeviceType::cuda)]).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mlxn: GPU compute kernels for LLM inference"};
  app.require_subcommand(1);
  app.add_subcommand("info", "list devices with memory and compute capability");
  app.add_subcommand("ops", "list every op with its backends and dtypes");
  auto* bench = app.add_subcommand("bench", "run the benchmarks on the best device (or --device)");
  bench::BenchOptions opts;
  std::string device;
  bench->add_option("--device", device, "cpu, cuda or cuda:N (default: the best present)");
  bench->add_option("--filter", opts.filter, "run only cases whose name contains this text");
  bench->add_option("--json", opts.json_path, "also write results as JSON to this file");
  bench->add_flag("--quick", opts.quick, "fewer repetitions");
  CLI11_PARSE(app, argc, argv);
  try {
    if (app.got_subcommand("info")) print_info();
    if (app.got_subcommand("ops")) print_ops();
    if (app.got_subcommand("bench")) {
      opts.device = device.empty() ? best_device() : Device::parse(device);
      return bench::run_benchmarks(opts);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
