// The delta rule (gdn_recurrent, gdn_chunk, gdn_forward) against the float64 token-by-token
// recurrence of ops.md §4, and against itself: chunked == recurrent, split prefill == whole,
// variable-length batch == sequences one by one.
#include <cmath>

#include "test_gdn_support.h"

namespace mlxn::test {
namespace {

using namespace gdn_test;

class GdnTest : public BackendTest {
 protected:
  // Shapes every backend runs; the CPU adds head dims CUDA does not build.
  std::vector<Dims> shapes() const {
    std::vector<Dims> v{
        {2, 5, 2, 4, 64, 64},      // GQA 2:1
        {1, 1, 1, 2, 128, 64},     // one token
        {1, 70, 2, 2, 64, 128},    // no GQA, T just past a chunk
        {1, 130, 1, 4, 128, 128},  // GQA 4:1
    };
    if (device().is_cpu()) {
      v.push_back({2, 9, 1, 3, 5, 7});
      v.push_back({1, 67, 2, 4, 48, 20});
    } else {
      v.push_back({1, 65, 1, 1, 256, 256});
      v.push_back({1, 40, 2, 2, 64, 256});
    }
    return v;
  }
};

using Op = void (*)(Session&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const GdnOptions&);

void check_against_reference(Session& s, std::mt19937_64& rng, Op op, const Dims& d, DType dt, bool l2,
                             bool with_state) {
  SCOPED_TRACE(::testing::Message() << name(dt) << " B" << d.B << " T" << d.T << " Hk" << d.Hk << " H" << d.H << " K"
                                    << d.K << " V" << d.V << " l2=" << l2 << " state=" << with_state);
  InputSpec spec;
  spec.unit_keys = !l2;
  spec.beta_dtype = with_state ? dt : DType::f32;
  Inputs in = make_inputs(s, rng, d, dt, spec);
  TestArray h0 = random_state(s, rng, d.B, d);
  Array out = poisoned(s, {d.B, d.T, d.H, d.V}, dt);
  Array ht = poisoned(s, {d.B, d.H, d.K, d.V}, DType::f32);
  GdnOptions o;
  o.l2_norm_qk = l2;
  o.scale = 0.7f;
  if (with_state) {
    o.initial_state = h0.tensor();
    o.final_state = ht.tensor();
  }
  op(s, in.q, in.k, in.v, in.g, in.beta, out, o);
  const auto ref = gdn_ref::delta_rule(d, {}, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 0.7,
                                       l2, 1e-6, with_state ? &h0.values : nullptr);
  // o's error keeps the scale of the terms it sums (|q| |k| |v|) while a draw with q.k near 0
  // (T = 1, no state) makes o itself arbitrarily small: the error is taken relative to at
  // least 1% of v's RMS.
  double v_ss = 0;
  for (double x : in.v.values) v_ss += x * x;
  const double v_rms = std::sqrt(v_ss / double(in.v.values.size()));
  EXPECT_TRUE(close(host_values(s, out), ref.o, out_tol(dt), 0.01 * v_rms));
  if (with_state) {
    MLXN_EXPECT_CLOSE(host_values(s, ht), ref.ht, state_tol(dt));
  }
}

TEST_P(GdnTest, RecurrentMatchesReference) {
  for (DType dt : float_dtypes())
    for (const Dims& d : shapes()) {
      if (d.T > 70) continue;  // long prompts are the chunked path's
      check_against_reference(session(), rng(), gdn_recurrent, d, dt, dt != DType::f16, dt != DType::bf16);
    }
}

TEST_P(GdnTest, ChunkMatchesReference) {
  for (DType dt : float_dtypes())
    for (const Dims& d : shapes())
      check_against_reference(session(), rng(), gdn_chunk, d, dt, dt == DType::f16, dt != DType::f32);
  // T around and between chunk boundaries, with a final state
  for (int64_t T : {1, 63, 64, 65, 129})
    check_against_reference(session(), rng(), gdn_chunk, {1, T, 1, 2, 64, 64}, DType::f32, false, true);
}

// A long prompt (18 chunks a sequence, the last partial, two sequences) in each dtype, with and
// without states, and with the final state written over the initial one.
TEST_P(GdnTest, LongPromptMatchesReference) {
  Session& s = session();
  const Dims d{2, 1100, 1, 2, 64, 64};
  for (DType dt : float_dtypes()) {
    check_against_reference(s, rng(), gdn_chunk, d, dt, true, true);
    check_against_reference(s, rng(), gdn_chunk, d, dt, false, false);
  }
  Inputs in = make_inputs(s, rng(), d, DType::bf16);
  TestArray h0 = random_state(s, rng(), d.B, d);
  Array st = from_values(s, h0.values, {d.B, d.H, d.K, d.V}, DType::f32);
  Array out = poisoned(s, {d.B, d.T, d.H, d.V}, DType::bf16);
  GdnOptions o;
  o.scale = 0.7f;
  o.initial_state = st.tensor();
  o.final_state = st.tensor();
  gdn_chunk(s, in.q, in.k, in.v, in.g, in.beta, out, o);
  const auto ref = gdn_ref::delta_rule(d, {}, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 0.7,
                                       false, 1e-6, &h0.values);
  MLXN_EXPECT_CLOSE(host_values(s, out), ref.o, out_tol(DType::bf16));
  MLXN_EXPECT_CLOSE(host_values(s, st), ref.ht, state_tol(DType::bf16));
}

TEST_P(GdnTest, ManyHeadsMatchReference) {
  // More (sequence, head, 32 columns) scan blocks than a Hopper GPU has SMs, so that the CUDA
  // chunked path takes its 64-column scan blocks (K = 64 and 128).
  Session& s = session();
  for (const Dims& d : {Dims{4, 130, 8, 16, 128, 128}, Dims{4, 70, 8, 32, 64, 64}})
    for (DType dt : float_dtypes()) {
      check_against_reference(s, rng(), gdn_chunk, d, dt, true, true);
      check_against_reference(s, rng(), gdn_chunk, d, dt, false, false);
    }
}

TEST_P(GdnTest, StrongDecayAndLongSequence) {
  // Decays down to e^-8 per token: chunk sums reach far below f32's exponent range for
  // exp(g_cum) alone, which the chunked form must not depend on.
  Session& s = session();
  const Dims d{1, 200, 1, 2, 64, 64};
  InputSpec spec;
  spec.g_lo = -8;
  spec.g_hi = -0.5;
  Inputs in = make_inputs(s, rng(), d, DType::f32, spec);
  Array out = poisoned(s, {1, 200, 2, 64}, DType::f32);
  gdn_chunk(s, in.q, in.k, in.v, in.g, in.beta, out);
  const auto ref =
      gdn_ref::delta_rule(d, {}, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 1.0 / 8, false);
  MLXN_EXPECT_CLOSE(host_values(s, out), ref.o, out_tol(DType::f32));
}

TEST_P(GdnTest, ChunkEqualsRecurrent) {
  Session& s = session();
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    const Dims d{2, 100, 2, 4, 64, 64};
    Inputs in = make_inputs(s, rng(), d, dt);
    TestArray h0 = random_state(s, rng(), 2, d);
    Array o1 = poisoned(s, {2, 100, 4, 64}, dt), o2 = poisoned(s, {2, 100, 4, 64}, dt);
    Array s1 = poisoned(s, {2, 4, 64, 64}, DType::f32), s2 = poisoned(s, {2, 4, 64, 64}, DType::f32);
    GdnOptions o;
    o.initial_state = h0.tensor();
    o.final_state = s1.tensor();
    gdn_recurrent(s, in.q, in.k, in.v, in.g, in.beta, o1, o);
    o.final_state = s2.tensor();
    gdn_chunk(s, in.q, in.k, in.v, in.g, in.beta, o2, o);
    MLXN_EXPECT_CLOSE(host_values(s, o2), host_values(s, o1), 2 * out_tol(dt));
    MLXN_EXPECT_CLOSE(host_values(s, s2), host_values(s, s1), 2 * state_tol(dt));
  }
}

// Decode steps with the state updated in place (as a serving loop runs them), several
// sequences and heads: each step == the reference's one-token step from the previous state.
TEST_P(GdnTest, DecodeStepsInPlaceMatchReference) {
  Session& s = session();
  const Dims d{6, 1, 2, 4, 128, 128};
  TestArray h0 = random_state(s, rng(), d.B, d);
  Array st = from_values(s, h0.values, {d.B, d.H, d.K, d.V}, DType::f32);
  std::vector<double> ref_state = h0.values;
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step);
    InputSpec spec;
    spec.unit_keys = false;
    spec.beta_dtype = DType::bf16;
    Inputs in = make_inputs(s, rng(), d, DType::bf16, spec);
    Array out = poisoned(s, {d.B, 1, d.H, d.V}, DType::bf16);
    GdnOptions o;
    o.l2_norm_qk = true;
    o.scale = 0.5f;
    o.initial_state = st.tensor();
    o.final_state = st.tensor();
    gdn_recurrent(s, in.q, in.k, in.v, in.g, in.beta, out, o);
    const auto ref = gdn_ref::delta_rule(d, {}, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 0.5,
                                         true, 1e-6, &ref_state);
    MLXN_EXPECT_CLOSE(host_values(s, out), ref.o, out_tol(DType::bf16));
    MLXN_EXPECT_CLOSE(host_values(s, st), ref.ht, state_tol(DType::f32));
    ref_state = ref.ht;
  }
}

// More work items (sequence x value head x 32 state columns: 32 x 32 x 4 = 4096) than the
// CUDA kernel has resident blocks (8 per SM), so the items run in several waves: varlen decode
// of 0 to 3 tokens per sequence (the empty ones hand their state back unchanged), GQA. The
// state is f32 arithmetic whatever the dtype, checked at f32 accuracy: one wrong item would
// be a ~2% error.
TEST_P(GdnTest, ManyItemsVarlenMatchReference) {
  Session& s = session();
  const int64_t N = 32;
  std::vector<int32_t> cu{0};
  for (int64_t n = 0; n < N; ++n) cu.push_back(cu.back() + (n % 7 == 5 ? 0 : 1 + int32_t(n % 3)));
  const Dims d{1, cu.back(), 16, 32, 128, 128};
  TestArray cua = cu_array(s, cu);
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(name(dt));
    InputSpec spec;
    spec.unit_keys = false;
    spec.beta_dtype = dt;
    Inputs in = make_inputs(s, rng(), d, dt, spec);
    TestArray h0 = random_state(s, rng(), N, d);
    Array out = poisoned(s, {1, d.T, d.H, d.V}, dt), ht = poisoned(s, {N, d.H, d.K, d.V}, DType::f32);
    GdnOptions o;
    o.initial_state = h0.tensor();
    o.final_state = ht.tensor();
    o.cu_seqlens = cua.tensor();
    o.l2_norm_qk = true;
    o.scale = 0.5f;
    gdn_recurrent(s, in.q, in.k, in.v, in.g, in.beta, out, o);
    const auto ref = gdn_ref::delta_rule(d, cu, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 0.5,
                                         true, 1e-6, &h0.values);
    MLXN_EXPECT_CLOSE(host_values(s, out), ref.o, out_tol(dt));
    MLXN_EXPECT_CLOSE(host_values(s, ht), ref.ht, state_tol(DType::f32));
  }
}

// Prefill of T1 tokens, then T2 more from the returned state == one prefill of T1 + T2.
TEST_P(GdnTest, SplitPrefillEqualsWhole) {
  Session& s = session();
  for (Op op : {Op(gdn_recurrent), Op(gdn_chunk), Op(gdn_forward)}) {
    // B = 1: a time slice of a batch of several rows is not one uniformly strided token axis
    const Dims d{1, 150, 1, 2, 64, 64};
    const int64_t T1 = 70;
    Inputs in = make_inputs(s, rng(), d, DType::f32);
    Array whole = poisoned(s, {1, 150, 2, 64}, DType::f32), st_whole = poisoned(s, {1, 2, 64, 64}, DType::f32);
    GdnOptions o;
    o.final_state = st_whole.tensor();
    op(s, in.q, in.k, in.v, in.g, in.beta, whole, o);
    Array parts = poisoned(s, {1, 150, 2, 64}, DType::f32), st = poisoned(s, {1, 2, 64, 64}, DType::f32);
    auto part = [&](const Tensor& t, int64_t b, int64_t e) { return t.slice(1, b, e); };
    o.final_state = st.tensor();
    op(s, part(in.q, 0, T1), part(in.k, 0, T1), part(in.v, 0, T1), part(in.g, 0, T1), part(in.beta, 0, T1),
       part(parts, 0, T1), o);
    o.initial_state = st.tensor();  // in place: the state goes on where it stopped
    op(s, part(in.q, T1, 150), part(in.k, T1, 150), part(in.v, T1, 150), part(in.g, T1, 150), part(in.beta, T1, 150),
       part(parts, T1, 150), o);
    MLXN_EXPECT_CLOSE(host_values(s, parts), host_values(s, whole), 1e-5);
    MLXN_EXPECT_CLOSE(host_values(s, st), host_values(s, st_whole), 1e-5);
  }
}

// A variable-length batch (cu_seqlens, B == 1) == each sequence alone.
TEST_P(GdnTest, VarlenEqualsOneByOne) {
  Session& s = session();
  const std::vector<int32_t> cu{0, 5, 70, 70, 200, 201};
  const int64_t N = int64_t(cu.size()) - 1;
  for (Op op : {Op(gdn_recurrent), Op(gdn_chunk)})
    for (DType dt : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(name(dt));
      const Dims d{1, 201, 1, 2, 64, 64};
      Inputs in = make_inputs(s, rng(), d, dt);
      TestArray h0 = random_state(s, rng(), N, d);
      TestArray cua = cu_array(s, cu);
      Array out = poisoned(s, {1, 201, 2, 64}, dt), ht = poisoned(s, {N, 2, 64, 64}, DType::f32);
      GdnOptions o;
      o.initial_state = h0.tensor();
      o.final_state = ht.tensor();
      o.cu_seqlens = cua.tensor();
      o.l2_norm_qk = true;
      op(s, in.q, in.k, in.v, in.g, in.beta, out, o);
      const auto ref = gdn_ref::delta_rule(d, cu, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values,
                                           1.0 / 8, true, 1e-6, &h0.values);
      MLXN_EXPECT_CLOSE(host_values(s, out), ref.o, out_tol(dt));
      MLXN_EXPECT_CLOSE(host_values(s, ht), ref.ht, state_tol(dt));
      // and each sequence run alone matches the batch
      const auto all = host_values(s, out), all_h = host_values(s, ht);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t b = cu[size_t(n)], e = cu[size_t(n) + 1];
        if (b == e) continue;
        Array o1 = poisoned(s, {1, e - b, 2, 64}, dt), h1 = poisoned(s, {1, 2, 64, 64}, DType::f32);
        GdnOptions o1opt;
        o1opt.initial_state = h0.tensor().slice(0, n, n + 1);
        o1opt.final_state = h1.tensor();
        o1opt.l2_norm_qk = true;
        op(s, in.q.tensor().slice(1, b, e), in.k.tensor().slice(1, b, e), in.v.tensor().slice(1, b, e),
           in.g.tensor().slice(1, b, e), in.beta.tensor().slice(1, b, e), o1, o1opt);
        MLXN_EXPECT_CLOSE(host_values(s, o1), gather_tokens(all, 2 * 64, b, e - b), out_tol(dt));
        MLXN_EXPECT_CLOSE(host_values(s, h1), gather_tokens(all_h, 2 * 64 * 64, n, 1), state_tol(dt));
      }
    }
}

// q, k, v as head slices of one fused projection [B, T, 2 Hk K + H V] (the Qwen layout).
TEST_P(GdnTest, StridedHeadsFromOneProjection) {
  Session& s = session();
  const Dims d{2, 80, 2, 4, 64, 64};
  const int64_t C = 2 * d.Hk * d.K + d.H * d.V;
  for (Op op : {Op(gdn_recurrent), Op(gdn_chunk)}) {
    TestArray mixed = array_of(s, uniform(rng(), d.B * d.T * C, -1, 1), {d.B, d.T, C}, DType::bf16);
    const Tensor& m = mixed.tensor();
    auto view = [&](int64_t off, int64_t heads, int64_t dim) {
      return Tensor(m.base(), DType::bf16, {d.B, d.T, heads, dim}, s.device(), {d.T * C, C, dim, 1}, off);
    };
    Tensor q = view(0, d.Hk, d.K), k = view(d.Hk * d.K, d.Hk, d.K), v = view(2 * d.Hk * d.K, d.H, d.V);
    Inputs gb = make_inputs(s, rng(), d, DType::bf16);
    Array out = poisoned(s, {d.B, d.T, d.H, d.V}, DType::bf16);
    GdnOptions o;
    o.l2_norm_qk = true;
    op(s, q, k, v, gb.g, gb.beta, out, o);
    const auto ref = gdn_ref::delta_rule(d, {}, host_values(s, q), host_values(s, k), host_values(s, v), gb.g.values,
                                         gb.beta.values, 1.0 / 8, true);
    MLXN_EXPECT_CLOSE(host_values(s, out), ref.o, out_tol(DType::bf16));
  }
}

TEST_P(GdnTest, ForwardAllocatesAndPicks) {
  Session& s = session();
  for (int64_t T : {1, 3, 200}) {
    const Dims d{1, T, 1, 2, 64, 64};
    Inputs in = make_inputs(s, rng(), d, DType::f16);
    GdnOptions o;
    o.l2_norm_qk = false;
    GdnResult r = gdn_forward(s, in.q, in.k, in.v, in.g, in.beta, o);
    const auto ref =
        gdn_ref::delta_rule(d, {}, in.q.values, in.k.values, in.v.values, in.g.values, in.beta.values, 1.0 / 8, false);
    MLXN_EXPECT_CLOSE(host_values(s, r.out), ref.o, out_tol(DType::f16));
    MLXN_EXPECT_CLOSE(host_values(s, r.final_state), ref.ht, state_tol(DType::f16));
  }
}

TEST_P(GdnTest, EmptyPassesTheStateThrough) {
  Session& s = session();
  const Dims d{2, 0, 1, 2, 64, 64};
  Inputs in;
  for (auto [t, shape] : {std::pair<TestArray*, mlxn::Dims>{&in.q, {2, 0, 1, 64}},
                          {&in.k, {2, 0, 1, 64}},
                          {&in.v, {2, 0, 2, 64}},
                          {&in.g, {2, 0, 2}},
                          {&in.beta, {2, 0, 2}}})
    t->array = Array::empty(shape, DType::f32, device());
  TestArray h0 = random_state(s, rng(), 2, d);
  Array out = Array::empty({2, 0, 2, 64}, DType::f32, device());
  for (Op op : {Op(gdn_recurrent), Op(gdn_chunk)}) {
    Array ht = poisoned(s, {2, 2, 64, 64}, DType::f32);
    GdnOptions o;
    o.initial_state = h0.tensor();
    o.final_state = ht.tensor();
    op(s, in.q, in.k, in.v, in.g, in.beta, out, o);
    MLXN_EXPECT_CLOSE(host_values(s, ht), h0.values, 0);
    EXPECT_NO_THROW(op(s, in.q, in.k, in.v, in.g, in.beta, out, {}));
  }
}

TEST_P(GdnTest, BadInputsRaise) {
  Session& s = session();
  const Dims d{1, 8, 2, 4, 64, 64};
  Inputs in = make_inputs(s, rng(), d, DType::bf16);
  Array out = poisoned(s, {1, 8, 4, 64}, DType::bf16);
  for (const char* op : {"gdn_recurrent", "gdn_chunk", "gdn_forward"}) {
    Op f = std::string(op) == "gdn_recurrent" ? Op(gdn_recurrent)
           : std::string(op) == "gdn_chunk"   ? Op(gdn_chunk)
                                              : Op(gdn_forward);
    // value heads not a multiple of key heads
    Inputs odd = make_inputs(s, rng(), {1, 8, 3, 4, 64, 64}, DType::bf16);
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, odd.q, odd.k, in.v, in.g, in.beta, out, {}));
    // mismatched T
    Inputs t9 = make_inputs(s, rng(), {1, 9, 2, 4, 64, 64}, DType::bf16);
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, t9.v, in.g, in.beta, out, {}));
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, t9.g, in.beta, out, {}));
    // g must be f32
    Array g16 = poisoned(s, {1, 8, 4}, DType::bf16);
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, g16, in.beta, out, {}));
    // beta f16 for bf16 q
    Array b16 = poisoned(s, {1, 8, 4}, DType::f16);
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, b16, out, {}));
    // q and v dtypes differ
    Inputs f32in = make_inputs(s, rng(), d, DType::f32);
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, f32in.v, in.g, in.beta, out, {}));
    // state of the wrong shape / dtype
    GdnOptions o;
    Array bad_state = poisoned(s, {1, 4, 64, 32}, DType::f32);
    o.initial_state = bad_state.tensor();
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, in.beta, out, o));
    Array bf_state = poisoned(s, {1, 4, 64, 64}, DType::bf16);
    o.initial_state = bf_state.tensor();
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, in.beta, out, o));
    o.initial_state.reset();
    o.final_state = bad_state.tensor();
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, in.beta, out, o));
    // cu_seqlens with B > 1, and of the wrong dtype
    Inputs b2 = make_inputs(s, rng(), {2, 8, 2, 4, 64, 64}, DType::bf16);
    Array out2 = poisoned(s, {2, 8, 4, 64}, DType::bf16);
    TestArray cu = cu_array(s, {0, 3, 8});
    GdnOptions ov;
    ov.cu_seqlens = cu.tensor();
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, b2.q, b2.k, b2.v, b2.g, b2.beta, out2, ov));
    Array cuf = poisoned(s, {3}, DType::f32);
    ov.cu_seqlens = cuf.tensor();
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, in.beta, out, ov));
    if (device().is_cpu()) {
      TestArray cu_bad = cu_array(s, {0, 5, 7});  // does not end at T
      ov.cu_seqlens = cu_bad.tensor();
      MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, in.beta, out, ov));
    }
    // out aliasing v
    MLXN_EXPECT_RAISES(InvalidArgument, op, f(s, in.q, in.k, in.v, in.g, in.beta, in.v, {}));
  }
  // Head dims CUDA does not build are refused there, and run on the CPU.
  Inputs k96 = make_inputs(s, rng(), {1, 4, 1, 1, 96, 64}, DType::f32);
  Array o96 = poisoned(s, {1, 4, 1, 64}, DType::f32);
  if (device().is_cuda()) {
    MLXN_EXPECT_RAISES(Unsupported, "gdn_forward", gdn_forward(s, k96.q, k96.k, k96.v, k96.g, k96.beta, o96, {}));
  } else {
    EXPECT_NO_THROW(gdn_forward(s, k96.q, k96.k, k96.v, k96.g, k96.beta, o96, {}));
  }
}

MLXN_BACKEND_TESTS(GdnTest);

}  // namespace
}  // namespace mlxn::test
