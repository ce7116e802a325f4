// ssm_conv / ssm_conv_step and gdn_gate against float64 references from their definitions.
#include <cmath>
#include <optional>

#include "test_gdn_support.h"

namespace mlxn::test {
namespace {

using namespace gdn_test;

class GdnConvTest : public BackendTest {};

std::vector<double> rounded(std::vector<double> v, DType dt) {
  for (auto& x : v) x = round_to(dt, x);
  return v;
}

// Every element within tol (1 + |ref|): over 2^17 tokens a norm would hide a few wrong tokens
// at sequence starts.
::testing::AssertionResult all_close(const std::vector<double>& actual, const std::vector<double>& ref, double tol) {
  if (actual.size() != ref.size()) return ::testing::AssertionFailure() << "size " << actual.size();
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::abs(actual[i] - ref[i]) <= tol * (1 + std::abs(ref[i]))))
      return ::testing::AssertionFailure() << "element " << i << ": " << actual[i] << " vs " << ref[i];
  return ::testing::AssertionSuccess();
}

// ssm_conv over [B, T, C] with a bias, the initial state in and the new state out (varlen when
// cu is not empty), next to its float64 reference: random inputs of x's dtype dt, weights of
// w_dt and bias of b_dt.
struct ConvWithState {
  TestArray x, w, bias, st;
  Array out, st_out;
  gdn_ref::ConvResult ref;
};
ConvWithState conv_with_state(Session& s, std::mt19937_64& rng, DType dt, DType w_dt, DType b_dt, int64_t B, int64_t T,
                              int64_t C, int64_t W, const std::vector<int32_t>& cu) {
  const int64_t S = cu.empty() ? B : int64_t(cu.size()) - 1;
  ConvWithState r{random_array(s, rng, {B, T, C}, dt, -2, 2),
                  random_array(s, rng, {C, W}, w_dt, -1, 1),
                  random_array(s, rng, {C}, b_dt, -1, 1),
                  random_array(s, rng, {S, W - 1, C}, dt, -2, 2),
                  poisoned(s, {B, T, C}, dt),
                  poisoned(s, {S, W - 1, C}, dt),
                  {}};
  std::optional<TestArray> cua;
  SsmConvOptions o;
  o.bias = r.bias.tensor();
  o.state_in = r.st.tensor();
  o.state_out = r.st_out.tensor();
  if (!cu.empty()) {
    cua = cu_array(s, cu);
    o.cu_seqlens = cua->tensor();
  }
  ssm_conv(s, r.x, r.w, r.out, o);
  r.ref = gdn_ref::conv(r.x.values, B, T, C, r.w.values, W, &r.bias.values, &r.st.values, cu, true);
  return r;
}

TEST_P(GdnConvTest, PrefillMatchesReference) {
  Session& s = session();
  for (DType dt : float_dtypes())
    for (int64_t W = 2; W <= 8; ++W)  // every width the CUDA kernel is built for; C = 1, 33: scalar path
      for (int64_t C : {int64_t(1), int64_t(33), int64_t(520)})
        for (int mode = 0; mode < 3; ++mode) {  // 0: plain; 1: bias + state in/out; 2: f32 weight, no silu, state out
          const int64_t B = 2, T = mode == 1 ? 3 : 37;  // T < W - 1 reaches into the state
          SCOPED_TRACE(::testing::Message() << name(dt) << " W" << W << " C" << C << " mode" << mode);
          auto x = random_array(s, rng(), {B, T, C}, dt, -2, 2);
          auto w = random_array(s, rng(), {C, W}, mode == 2 ? DType::f32 : dt, -1, 1);
          auto bias = random_array(s, rng(), {C}, dt, -1, 1);
          auto st = random_array(s, rng(), {B, W - 1, C}, dt, -2, 2);
          Array out = poisoned(s, {B, T, C}, dt);
          Array st_out = poisoned(s, {B, W - 1, C}, dt);
          SsmConvOptions o;
          if (mode == 1) {
            o.bias = bias.tensor();
            o.state_in = st.tensor();
          }
          if (mode >= 1) o.state_out = st_out.tensor();
          o.silu = mode != 2;
          ssm_conv(s, x, w, out, o);
          const auto ref = gdn_ref::conv(x.values, B, T, C, w.values, W, mode == 1 ? &bias.values : nullptr,
                                         mode == 1 ? &st.values : nullptr, {}, o.silu);
          MLXN_EXPECT_CLOSE(host_values(s, out), ref.out, tolerance(dt));
          if (mode >= 1) {
            MLXN_EXPECT_CLOSE(host_values(s, st_out), ref.state, 0);
          }
        }
}

// Prefill in two parts, the state carried in place, == one prefill; then decode steps ==
// prefill of the same tokens.
TEST_P(GdnConvTest, SplitPrefillAndStepsEqualWhole) {
  Session& s = session();
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const int64_t B = 1, T = 50, C = 72, W = 4, T1 = 2, steps = 5;  // B = 1: time slices stay row views
    auto x = random_array(s, rng(), {B, T + steps, C}, dt, -2, 2);
    auto w = random_array(s, rng(), {C, W}, DType::f32, -1, 1);
    auto bias = random_array(s, rng(), {C}, DType::f32, -1, 1);
    Array whole = poisoned(s, {B, T + steps, C}, dt);
    SsmConvOptions o;
    o.bias = bias.tensor();
    ssm_conv(s, x, w, whole, o);
    Array state = from_values(s, std::vector<double>(static_cast<size_t>(B * (W - 1) * C), 0.0), {B, W - 1, C}, dt);
    Array parts = poisoned(s, {B, T + steps, C}, dt);
    o.state_in = state.tensor();
    o.state_out = state.tensor();
    ssm_conv(s, x.tensor().slice(1, 0, T1), w, parts.tensor().slice(1, 0, T1), o);
    ssm_conv(s, x.tensor().slice(1, T1, T), w, parts.tensor().slice(1, T1, T), o);
    for (int64_t t = T; t < T + steps; ++t)
      ssm_conv_step(s, x.tensor().slice(1, t, t + 1), w, state, parts.tensor().slice(1, t, t + 1), {bias.tensor()});
    MLXN_EXPECT_CLOSE(host_values(s, parts), host_values(s, whole), 1e-6);
    // the state holds the last W - 1 inputs
    const auto xs = host_values(s, x.tensor().slice(1, T + steps - (W - 1), T + steps));
    MLXN_EXPECT_CLOSE(host_values(s, state), xs, 0);
  }
}

// Several runs of tokens per block row and several blocks along the channels (the last one
// partly past C), with bias and the state in and out: the streaming path at scale.
TEST_P(GdnConvTest, LongRowsMatchReference) {
  Session& s = session();
  for (DType dt : {DType::bf16, DType::f32})
    for (int64_t W : {3, 4}) {
      const int64_t B = 2, T = 150, C = 1032;
      SCOPED_TRACE(::testing::Message() << name(dt) << " W" << W);
      auto x = random_array(s, rng(), {B, T, C}, dt, -2, 2);
      auto w = random_array(s, rng(), {C, W}, dt, -1, 1);
      auto bias = random_array(s, rng(), {C}, DType::f32, -1, 1);
      auto st = random_array(s, rng(), {B, W - 1, C}, dt, -2, 2);
      Array out = poisoned(s, {B, T, C}, dt);
      Array st_out = poisoned(s, {B, W - 1, C}, dt);
      SsmConvOptions o;
      o.bias = bias.tensor();
      o.state_in = st.tensor();
      o.state_out = st_out.tensor();
      ssm_conv(s, x, w, out, o);
      const auto ref = gdn_ref::conv(x.values, B, T, C, w.values, W, &bias.values, &st.values, {}, true);
      MLXN_EXPECT_CLOSE(host_values(s, out), ref.out, tolerance(dt));
      MLXN_EXPECT_CLOSE(host_values(s, st_out), ref.state, 0);
    }
}

TEST_P(GdnConvTest, VarlenEqualsOneByOne) {
  Session& s = session();
  const std::vector<int32_t> cu{0, 1, 20, 20, 45};
  const int64_t N = 4, T = 45, C = 40, W = 4;
  auto x = random_array(s, rng(), {1, T, C}, DType::bf16, -2, 2);
  auto w = random_array(s, rng(), {C, W}, DType::bf16, -1, 1);
  auto st = random_array(s, rng(), {N, W - 1, C}, DType::bf16, -2, 2);
  TestArray cua = cu_array(s, cu);
  Array out = poisoned(s, {1, T, C}, DType::bf16);
  SsmConvOptions o;
  o.state_in = st.tensor();
  o.state_out = st.tensor();  // in place
  o.cu_seqlens = cua.tensor();
  ssm_conv(s, x, w, out, o);
  const auto ref = gdn_ref::conv(x.values, 1, T, C, w.values, W, nullptr, &st.values, cu, true);
  MLXN_EXPECT_CLOSE(host_values(s, out), ref.out, tolerance(DType::bf16));
  MLXN_EXPECT_CLOSE(host_values(s, st), ref.state, 0);
}

// Edges: T not a multiple of a thread's batch of tokens, C not a multiple of a warp's 512
// bytes (264 = 256 + 8 bf16, 2 x 128 + 8 f32), several batch rows, and varlen batches of
// sequences shorter than the window and than a batch (one empty), so batches straddle
// sequence starts and reach into the initial state.
TEST_P(GdnConvTest, ChannelEdgesBatchesAndShortSequencesMatchReference) {
  Session& s = session();
  const std::vector<int32_t> cu{0, 2, 3, 40, 41, 75, 75, 110};
  const int64_t C = 264, total = cu.back();
  for (DType dt : {DType::bf16, DType::f32})
    for (int64_t W : {2, 4, 8})
      for (bool varlen : {false, true}) {
        SCOPED_TRACE(::testing::Message() << name(dt) << " W" << W << (varlen ? " varlen" : " batch"));
        const int64_t B = varlen ? 1 : 3, T = varlen ? total : 70;
        const auto r = conv_with_state(s, rng(), dt, DType::f32, dt, B, T, C, W, varlen ? cu : std::vector<int32_t>{});
        MLXN_EXPECT_CLOSE(host_values(s, r.out), r.ref.out, tolerance(dt));
        MLXN_EXPECT_CLOSE(host_values(s, r.st_out), r.ref.state, 0);
      }
}

// Runs of many batches: the CUDA kernel sizes each thread's run of tokens so that its grid is
// one wave, so only long inputs give runs of several batches (rows loaded a batch ahead, the
// window carried from batch to batch). Sequences of 1, 2, 0 and 7 tokens and long ones start
// inside batches and runs; bf16 at two widths, f32, and the scalar path (C = 20 bf16 is not
// a multiple of 8). 2^17 tokens keep runs several batches long with up to ~10k resident warps.
TEST_P(GdnConvTest, LongRunsAcrossSequencesMatchReference) {
  Session& s = session();
  const std::vector<int32_t> cu{0, 1, 3, 3, 5000, 5007, 40000, 40001, 97531, 131069};
  const int64_t total = cu.back();
  struct Case {
    DType dt;
    int64_t C, W;
  };
  for (const Case& k :
       {Case{DType::bf16, 16, 4}, Case{DType::bf16, 16, 7}, Case{DType::f32, 16, 4}, Case{DType::bf16, 20, 4}})
    for (bool varlen : {false, true}) {
      SCOPED_TRACE(::testing::Message() << name(k.dt) << " C" << k.C << " W" << k.W << (varlen ? " varlen" : " batch"));
      const int64_t B = varlen ? 1 : 2, T = varlen ? total : 65531;
      const auto r =
          conv_with_state(s, rng(), k.dt, k.dt, DType::f32, B, T, k.C, k.W, varlen ? cu : std::vector<int32_t>{});
      EXPECT_TRUE(all_close(host_values(s, r.out), r.ref.out, tolerance(k.dt)));
      MLXN_EXPECT_CLOSE(host_values(s, r.st_out), r.ref.state, 0);
    }
}

TEST_P(GdnConvTest, StridedRows) {
  // x is the first C channels of a wider projection (token rows C + 24 apart)
  Session& s = session();
  const int64_t T = 19, C = 64, P = C + 24, W = 3;
  auto parent = random_array(s, rng(), {1, T, P}, DType::f16, -2, 2);
  Tensor x = parent.tensor().slice(2, 0, C);
  auto w = random_array(s, rng(), {C, W}, DType::f16, -1, 1);
  Array out_parent = poisoned(s, {1, T, P}, DType::f16);
  Tensor out = out_parent.tensor().slice(2, 0, C);
  ssm_conv(s, x, w, out);
  const auto ref = gdn_ref::conv(host_values(s, x), 1, T, C, w.values, W, nullptr, nullptr, {}, true);
  MLXN_EXPECT_CLOSE(host_values(s, out), ref.out, tolerance(DType::f16));
  for (double v : host_values(s, out_parent.tensor().slice(2, C, P))) ASSERT_TRUE(std::isnan(v));
}

TEST_P(GdnConvTest, StepMatchesReference) {
  Session& s = session();
  for (DType dt : float_dtypes())
    for (int64_t W : {2, 4, 5}) {
      const int64_t B = 3, C = 130;
      auto x = random_array(s, rng(), {B, C}, dt, -2, 2);
      auto w = random_array(s, rng(), {C, W}, dt, -1, 1);
      auto st = random_array(s, rng(), {B, W - 1, C}, dt, -2, 2);
      Array out = poisoned(s, {B, C}, dt);
      ssm_conv_step(s, x, w, st, out);
      // the step is a prefill of one token from the state
      const auto ref = gdn_ref::conv(x.values, B, 1, C, w.values, W, nullptr, &st.values, {}, true);
      MLXN_EXPECT_CLOSE(host_values(s, out), ref.out, tolerance(dt));
      MLXN_EXPECT_CLOSE(host_values(s, st), ref.state, 0);
    }
}

TEST_P(GdnConvTest, GateMatchesReference) {
  Session& s = session();
  for (DType dt : float_dtypes())
    for (int64_t H : {int64_t(1), int64_t(32), int64_t(67)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " H" << H);
      const int64_t rows = 9;
      auto a = random_array(s, rng(), {3, 3, H}, dt, -30, 30);  // both sides of softplus' threshold
      auto b = random_array(s, rng(), {3, 3, H}, dt, -6, 6);
      auto A_log = random_array(s, rng(), {H}, DType::f32, -2, 2);
      auto dt_bias = random_array(s, rng(), {H}, dt, -1, 1);
      Array g = poisoned(s, {3, 3, H}, DType::f32);
      Array beta = poisoned(s, {3, 3, H}, dt);
      gdn_gate(s, a, b, A_log, dt_bias, g, beta);
      std::vector<double> rg, rb;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const double x = a.values[size_t(r * H + h)] + dt_bias.values[size_t(h)];
          const double sp = x > 20 ? x : std::log1p(std::exp(x));
          rg.push_back(-std::exp(A_log.values[size_t(h)]) * sp);
          rb.push_back(1.0 / (1.0 + std::exp(-b.values[size_t(r * H + h)])));
        }
      MLXN_EXPECT_CLOSE(host_values(s, g), rg, 1e-5);
      MLXN_EXPECT_CLOSE(host_values(s, beta), rounded(rb, dt), tolerance(dt));
    }
}

TEST_P(GdnConvTest, BadInputsRaise) {
  Session& s = session();
  auto x = random_array(s, rng(), {1, 8, 16}, DType::bf16);
  Array out = poisoned(s, {1, 8, 16}, DType::bf16);
  Array w9 = poisoned(s, {16, 9}, DType::bf16), w1 = poisoned(s, {16, 1}, DType::bf16);
  Array w_f16 = poisoned(s, {16, 4}, DType::f16), w_c = poisoned(s, {15, 4}, DType::bf16);
  Array w = poisoned(s, {16, 4}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w9, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w1, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w_f16, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w_c, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w, x));  // out aliases x
  Array st_bad = poisoned(s, {1, 4, 16}, DType::bf16), st_f32 = poisoned(s, {1, 3, 16}, DType::f32);
  SsmConvOptions o;
  o.state_in = st_bad.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w, out, o));
  o.state_in = st_f32.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv", ssm_conv(s, x, w, out, o));
  Array xs = poisoned(s, {2, 16}, DType::bf16), os = poisoned(s, {2, 16}, DType::bf16);
  Array st1 = poisoned(s, {1, 3, 16}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "ssm_conv_step", ssm_conv_step(s, xs, w, st1, os));
  Array a = poisoned(s, {4, 8}, DType::bf16), g16 = poisoned(s, {4, 8}, DType::bf16),
        g = poisoned(s, {4, 8}, DType::f32);
  Array A7 = poisoned(s, {7}, DType::f32), A8 = poisoned(s, {8}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_gate", gdn_gate(s, a, a, A8, A8, g16, g));
  MLXN_EXPECT_RAISES(InvalidArgument, "gdn_gate", gdn_gate(s, a, a, A7, A8, g, g16));
}

MLXN_BACKEND_TESTS(GdnConvTest);

}  // namespace
}  // namespace mlxn::test
