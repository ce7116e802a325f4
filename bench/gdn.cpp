// Gated DeltaNet benchmarks: the bars of the GDN issue (chunked prefill against FLA, decode
// step, conv prefill) and the CPU comparison of the chunked and recurrent paths.
// FLA's times for the same shapes come from bench/peers/fla_gdn.py run on the same GPU.
#include <cmath>
#include <memory>

#include "harness.h"
#include "mlxn/ops/gdn.h"

namespace mlxn::bench {
namespace {

struct Shape {
  int64_t B, T, Hk, H, K, V;
};

// Decays as Qwen3-Next produces them (g in about [-1.5, -0.01]), betas in (0, 1): the
// random device data in [-1, 1) is mapped once at set-up time by gdn_gate.
void make_gates(Session& s, const Shape& d, DType dt, Array& g, Array& beta) {
  Array a = random_device_array(s, {d.B, d.T, d.H}, dt, 11);
  Array b = random_device_array(s, {d.B, d.T, d.H}, dt, 12);
  Array A_log = random_device_array(s, {d.H}, DType::f32, 13);
  Array dt_bias = random_device_array(s, {d.H}, DType::f32, 14);
  g = Array::empty({d.B, d.T, d.H}, DType::f32, s.device());
  beta = Array::empty({d.B, d.T, d.H}, dt, s.device());
  gdn_gate(s, a, b, A_log, dt_bias, g, beta);
}

// Bytes every delta-rule call must move: q, k, v in, out, g and beta, plus the state read
// and written when there is one.
double delta_bytes(const Shape& d, DType dt, bool state) {
  const double e = double(element_size(dt)), tok = double(d.B * d.T);
  double b = tok * (2.0 * d.Hk * d.K + 2.0 * d.H * d.V) * e + tok * d.H * (4.0 + 2.0);
  if (state) b += 2.0 * double(d.B * d.H * d.K * d.V) * 4.0;
  return b;
}

// Multiply-adds x 2 of the chunked form per 64-token chunk and value head: the state
// products (w h, q h, k^T v_new: 3 C K V), k k^T, q k^T and w (1.5 C^2 K), u and the
// intra-chunk attention (C^2 V), and the triangular solve (C^3 / 6).
double chunk_flops(const Shape& d) {
  const double C = 64, chunks = std::ceil(double(d.T) / C) * double(d.B * d.H);
  return 2.0 * chunks * (3 * C * d.K * d.V + 1.5 * C * C * d.K + C * C * d.V + C * C * C / 6);
}

enum class Path { chunk, recurrent };

Workload delta_case(Session& s, const Shape& d, DType dt, Path path, bool state) {
  Array q = random_device_array(s, {d.B, d.T, d.Hk, d.K}, dt, 1);
  Array k = random_device_array(s, {d.B, d.T, d.Hk, d.K}, dt, 2);
  Array v = random_device_array(s, {d.B, d.T, d.H, d.V}, dt, 3);
  Array g, beta;
  make_gates(s, d, dt, g, beta);
  Array out = Array::empty({d.B, d.T, d.H, d.V}, dt, s.device());
  // The state is updated in place, as a decode step does; states rotate (l2_rotation) so that
  // no call finds its state in L2, as in a model, where a layer's state comes back one step later.
  auto states = std::make_shared<Rotation<Array>>();
  if (state) {
    const int copies = l2_rotation(s, 4.0 * double(d.B * d.H * d.K * d.V));
    for (int i = 0; i < copies; ++i)
      states->items.push_back(random_device_array(s, {d.B, d.H, d.K, d.V}, DType::f32, 4 + uint64_t(i)));
  }
  GdnOptions o;
  o.l2_norm_qk = true;  // keys of unit norm, as the model gives them
  auto run = [&s, q, k, v, g, beta, out, states, o, path]() mutable {
    if (!states->items.empty()) o.initial_state = o.final_state = states->next().tensor();
    if (path == Path::chunk)
      gdn_chunk(s, q, k, v, g, beta, out, o);
    else
      gdn_recurrent(s, q, k, v, g, beta, out, o);
  };
  return {run, delta_bytes(d, dt, state), path == Path::chunk ? chunk_flops(d) : 6.0 * d.B * d.T * d.H * d.K * d.V};
}

Workload conv_case(Session& s, int64_t T, int64_t C, int64_t W) {
  Array x = random_device_array(s, {1, T, C}, DType::bf16, 5);
  Array w = random_device_array(s, {C, W}, DType::bf16, 6);
  Array out = Array::empty({1, T, C}, DType::bf16, s.device());
  Array st = random_device_array(s, {1, W - 1, C}, DType::bf16, 7);
  SsmConvOptions o;
  o.state_in = st.tensor();
  o.state_out = st.tensor();
  return {[&s, x, w, out, o] { ssm_conv(s, x, w, out, o); }, 2.0 * double(T * C) * 2.0 + double(C * W) * 2.0, 0};
}

constexpr Shape kChunkT4096{1, 4096, 16, 32, 128, 128};
constexpr Shape kChunkT16384{1, 16384, 16, 32, 128, 128};
constexpr Shape kChunkB4{4, 2048, 8, 16, 128, 128};
constexpr Shape kDecodeB1{1, 1, 16, 32, 128, 128};
constexpr Shape kDecodeB32{32, 1, 16, 32, 128, 128};
// The CPU comparison of the two forms (the CPU bar: chunked beats recurrent, T >= 256).
constexpr Shape kCpuT256{1, 256, 2, 4, 128, 128};
constexpr Shape kCpuT1024{1, 1024, 2, 4, 128, 128};

// Bars: FLA's H200 times halved (0.270, 1.02, 0.239 ms), the decode step's 5 us, and the
// bandwidth bars; bench/peers/fla_gdn.py gives FLA's time in the same run.
MLXN_BENCH(Case{"gdn_chunk bf16 B1 T4096 Hk16 H32 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kChunkT4096, DType::bf16, Path::chunk, false); }, 0, 135.0,
                true});
MLXN_BENCH(Case{"gdn_chunk bf16 B1 T16384 Hk16 H32 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kChunkT16384, DType::bf16, Path::chunk, false); }, 0, 510.0,
                true});
MLXN_BENCH(Case{"gdn_chunk bf16 B4 T2048 Hk8 H16 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kChunkB4, DType::bf16, Path::chunk, false); }, 0, 119.5, true});
MLXN_BENCH(Case{"gdn_recurrent bf16 decode B1 Hk16 H32 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kDecodeB1, DType::bf16, Path::recurrent, true); }, 0, 5.0});
MLXN_BENCH(Case{"gdn_recurrent bf16 decode B32 Hk16 H32 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kDecodeB32, DType::bf16, Path::recurrent, true); }, 85});
MLXN_BENCH(Case{"ssm_conv bf16 C8192 T4096 W4", "gdn", [](Session& s) { return conv_case(s, 4096, 8192, 4); }, 80, 0,
                true});
MLXN_BENCH(Case{"gdn_chunk f32 B1 T256 Hk2 H4 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kCpuT256, DType::f32, Path::chunk, false); }});
MLXN_BENCH(Case{"gdn_recurrent f32 B1 T256 Hk2 H4 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kCpuT256, DType::f32, Path::recurrent, false); }});
MLXN_BENCH(Case{"gdn_chunk f32 B1 T1024 Hk2 H4 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kCpuT1024, DType::f32, Path::chunk, false); }});
MLXN_BENCH(Case{"gdn_recurrent f32 B1 T1024 Hk2 H4 K128 V128", "gdn",
                [](Session& s) { return delta_case(s, kCpuT1024, DType::f32, Path::recurrent, false); }});

}  // namespace
}  // namespace mlxn::bench
