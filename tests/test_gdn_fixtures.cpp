// Agreement with an implementation written elsewhere: fixtures produced by
// scripts/gdn_fixtures.py from transformers' Qwen3-Next reference functions
// (torch_chunk_gated_delta_rule, torch_recurrent_gated_delta_rule, torch_causal_conv1d_update).
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_gdn_support.h"

namespace mlxn::test {
namespace {

using namespace gdn_test;

class GdnFixtureTest : public BackendTest {};

struct Fixture {
  nlohmann::json params;
  std::map<std::string, Array> arrays;
  const Array& operator[](const std::string& n) const { return arrays.at(n); }
};

std::filesystem::path fixture_dir() { return std::filesystem::path(MLXN_SOURCE_DIR) / "tests" / "fixtures" / "gdn"; }

// Loads <case>.json and <case>.bin onto the session's device.
std::optional<Fixture> load(Session& s, const std::string& name) {
  const auto dir = fixture_dir();
  std::ifstream js(dir / (name + ".json"));
  std::ifstream bin(dir / (name + ".bin"), std::ios::binary);
  if (!js || !bin) return std::nullopt;
  const nlohmann::json m = nlohmann::json::parse(js);
  const std::vector<char> blob((std::istreambuf_iterator<char>(bin)), std::istreambuf_iterator<char>());
  Fixture f;
  f.params = m.at("params");
  for (const auto& a : m.at("arrays")) {
    mlxn::Dims shape;
    for (int64_t d : a.at("shape")) shape.push_back(d);
    Array arr = s.empty(shape, parse_dtype(a.at("dtype").get<std::string>()));
    const auto off = a.at("offset").get<size_t>(), bytes = a.at("bytes").get<size_t>();
    if (off + bytes > blob.size() || bytes != arr->nbytes())
      throw std::runtime_error("fixture " + name + " is truncated");
    s.upload(arr, blob.data() + off, bytes);
    f.arrays.emplace(a.at("name").get<std::string>(), std::move(arr));
  }
  return f;
}

#define MLXN_LOAD_FIXTURE(var, name)                                                                \
  std::optional<Fixture> var##_opt = load(session(), name);                                         \
  if (!var##_opt) GTEST_SKIP() << "fixture " << name << " not found in " << fixture_dir().string(); \
  const Fixture& var = *var##_opt

// Output tolerance against a reference that rounds to the same dtype: one rounding step
// apart per element at most, plus the half-precision products of the CUDA chunked path.
double fixture_tol(const Session& s, DType dt) {
  if (dt == DType::f32) return s.device().is_cuda() ? 1e-4 : 2e-5;
  return s.device().is_cuda() ? 3e-2 : 1e-2;
}

void check_delta_case(Session& s, const Fixture& f) {
  const Tensor &q = f["q"], &k = f["k"], &v = f["v"], &g = f["g"], &beta = f["beta"];
  const DType dt = q.dtype();
  const int64_t N = v.dim(0), H = v.dim(2), K = q.dim(3), V = v.dim(3);
  // the gates, from the projections
  Array g2 = poisoned(s, g.shape(), DType::f32), beta2 = poisoned(s, beta.shape(), beta.dtype());
  gdn_gate(s, f["a"], f["b"], f["A_log"], f["dt_bias"], g2, beta2);
  MLXN_EXPECT_CLOSE(host_values(s, g2), host_values(s, g), 1e-5);
  MLXN_EXPECT_CLOSE(host_values(s, beta2), host_values(s, beta), tolerance(beta.dtype()));
  using Op = void (*)(Session&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                      const Tensor&, const GdnOptions&);
  for (Op op : {Op(gdn_recurrent), Op(gdn_chunk), Op(gdn_forward)}) {
    Array out = poisoned(s, v.shape(), dt), ht = poisoned(s, {N, H, K, V}, DType::f32);
    GdnOptions o;
    o.l2_norm_qk = true;
    o.initial_state = f["initial_state"].tensor();
    o.final_state = ht.tensor();
    op(s, q, k, v, g, beta, out, o);
    MLXN_EXPECT_CLOSE(host_values(s, out), host_values(s, f["out"]), fixture_tol(s, dt));
    MLXN_EXPECT_CLOSE(host_values(s, ht), host_values(s, f["final_state"]), fixture_tol(s, dt));
  }
}

TEST_P(GdnFixtureTest, ChunkBf16Gqa) {
  MLXN_LOAD_FIXTURE(f, "chunk_bf16_gqa");
  check_delta_case(session(), f);
}

TEST_P(GdnFixtureTest, RecurrentF32) {
  MLXN_LOAD_FIXTURE(f, "recurrent_f32");
  check_delta_case(session(), f);
}

TEST_P(GdnFixtureTest, ChunkF32K128) {
  MLXN_LOAD_FIXTURE(f, "chunk_f32_k128");
  check_delta_case(session(), f);
}

TEST_P(GdnFixtureTest, ConvPrefillAndStep) {
  MLXN_LOAD_FIXTURE(f, "conv_f32");
  Session& s = session();
  const Tensor& x = f["x"];
  Array out = poisoned(s, x.shape(), x.dtype());
  Array state = s.empty(f["state_in"]->shape(), x.dtype());
  s.copy(state, f["state_in"]);
  SsmConvOptions o;
  o.bias = f["bias"].tensor();
  o.state_in = state.tensor();
  o.state_out = state.tensor();
  ssm_conv(s, x, f["weight"], out, o);
  MLXN_EXPECT_CLOSE(host_values(s, out), host_values(s, f["out"]), 1e-5);
  MLXN_EXPECT_CLOSE(host_values(s, state), host_values(s, f["state_out"]), 0);
  Array out1 = poisoned(s, f["x_step"]->shape(), x.dtype());
  ssm_conv_step(s, f["x_step"], f["weight"], state, out1, {f["bias"].tensor()});
  MLXN_EXPECT_CLOSE(host_values(s, out1), host_values(s, f["out_step"]), 1e-5);
  MLXN_EXPECT_CLOSE(host_values(s, state), host_values(s, f["state_step"]), 0);
}

MLXN_BACKEND_TESTS(GdnFixtureTest);

}  // namespace
}  // namespace mlxn::test
