// moe_experts (include/mlxn/ops/moe_experts.h) against a float64 reference written from the
// exact dequantized weights, against the four ops it replaces, and its errors.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <vector>

#include "mlxn/ops/moe_experts.h"
#include "support/moe_reference.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

// Distinct random experts per token; positive f32 weights from a shuffled, jittered ladder
// (1/k apart), so that swapping the largest and the smallest weight changes the output a lot.
Routing random_routing(std::mt19937_64& rng, int64_t tokens, int64_t experts, int64_t top_k) {
  Routing r;
  std::vector<int64_t> perm(static_cast<size_t>(experts));
  std::iota(perm.begin(), perm.end(), 0);
  std::uniform_real_distribution<double> jitter(0.9, 1.1);
  for (int64_t t = 0; t < tokens; ++t) {
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<double> ladder;
    for (int64_t j = 0; j < top_k; ++j)
      ladder.push_back(round_to(DType::f32, double(top_k - j) / double(top_k) * jitter(rng)));
    std::shuffle(ladder.begin(), ladder.end(), rng);
    for (int64_t j = 0; j < top_k; ++j) r.ids.push_back(double(perm[size_t(j)]));
    r.weights.insert(r.weights.end(), ladder.begin(), ladder.end());
  }
  return r;
}

struct Case {
  int64_t T, E, top_k, D, I;
  MlxQuant q;
  DType xdt, sdt, idt;
  GluKind act;
  Residual residual;
  bool strided_x;  // x a column slice of a wider array: rows a stride apart
};

class MoeExpertsTest : public BackendTest {
 protected:
  void expect_matches_reference(const Case& c) {
    Session& s = session();
    const auto [gate, up, down] = random_experts(s, rng(), c.E, c.D, c.I, c.q, c.sdt);
    auto xa = random_array(s, rng(), {c.T, c.D + (c.strided_x ? 64 : 0)}, c.xdt);
    const Tensor x = xa.tensor().slice(1, 0, c.D);
    const Routing r = random_routing(rng(), c.T, c.E, c.top_k);
    const std::vector<double> xv = host_values(s, x);
    const auto experts_only = ref_experts(xv, gate, up, down, c.act, r, c.top_k);
    Array ids = from_values(s, r.ids, {c.T, c.top_k}, c.idt);
    Array w = from_values(s, r.weights, {c.T, c.top_k}, DType::f32);
    Array out = poisoned(s, {c.T, c.D}, c.xdt);
    std::optional<TestArray> res;
    MoeExpertsParams p;
    p.act = c.act;
    if (c.residual != Residual::none) {
      // at the scale of the experts' sum, so that a dropped (or doubled) residual fails
      const double scale = rms(experts_only);
      res = random_array(s, rng(), {c.T, c.D}, c.xdt, -scale, scale);
      if (c.residual == Residual::in_place) out = res->array;  // out holds the residual on entry
      p.residual = c.residual == Residual::in_place ? out.tensor() : res->tensor();
    }
    moe_experts(s, x, view(gate), view(up), view(down), c.q, ids, w, out, p);
    const auto ref = res ? plus(experts_only, res->values) : experts_only;
    const double tol = experts_tol(c.xdt);
    MLXN_EXPECT_CLOSE(host_values(s, out), ref, tol);

    // Not vacuous: the reference with each token's largest and smallest weights swapped, and the
    // one without the residual, must be far outside the tolerance.
    Routing swapped = r;
    for (int64_t t = 0; t < c.T; ++t) {
      auto first = swapped.weights.begin() + t * c.top_k, last = first + c.top_k;
      std::iter_swap(std::max_element(first, last), std::min_element(first, last));
    }
    auto wrong = ref_experts(xv, gate, up, down, c.act, swapped, c.top_k);
    if (res) wrong = plus(wrong, res->values);
    EXPECT_GT(rel_err(wrong, ref), 10 * tol) << "the swapped-weights reference is within 10x the tolerance";
    if (res) {
      EXPECT_GT(rel_err(experts_only, ref), 10 * tol) << "the residual is within 10x the tolerance";
    }
  }
};

TEST_P(MoeExpertsTest, MatchesFloat64Reference) {
  using enum Residual;
  const DType bf = DType::bf16, f16 = DType::f16, f32 = DType::f32, i32 = DType::i32, u32 = DType::u32;
  const GluKind silu = GluKind::silu, gelu = GluKind::gelu_tanh;
  const Case cases[] = {
      // bits 4, groups 64 and 128, x bf16/f16: the CUDA fused path
      {1, 16, 4, 256, 128, {4, 64}, bf, bf, u32, silu, none, false},
      {1, 16, 4, 256, 128, {4, 128}, f16, f16, i32, gelu, separate, false},
      {3, 8, 2, 384, 256, {4, 64}, bf, f16, i32, gelu, in_place, false},
      {3, 8, 2, 384, 256, {4, 128}, f16, bf, u32, silu, separate, false},
      {1, 32, 8, 512, 384, {4, 64}, bf, bf, i32, silu, in_place, false},
      {1, 32, 8, 512, 384, {4, 128}, f16, f16, u32, gelu, none, false},
      {8, 16, 4, 256, 128, {4, 64}, bf, bf, u32, gelu, separate, true},
      {8, 16, 4, 256, 128, {4, 128}, f16, f16, i32, silu, none, false},
      // long enough for the kernels' rings to wrap (gate/up: 4 steps per warp; down: 6)
      {1, 16, 8, 2048, 1536, {4, 64}, bf, bf, u32, silu, separate, false},
      // group 32, 8 bits, x f32: the four ops
      {1, 16, 4, 256, 128, {4, 32}, bf, bf, i32, silu, separate, false},
      {3, 8, 2, 384, 256, {8, 64}, f16, f16, u32, gelu, none, true},
      {1, 16, 4, 256, 128, {4, 64}, f32, f32, i32, silu, in_place, false},
      {3, 8, 2, 384, 256, {8, 64}, f32, bf, u32, gelu, separate, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "T=" << c.T << " E=" << c.E << " k=" << c.top_k << " D=" << c.D << " I=" << c.I
                                      << " bits=" << c.q.bits << " gs=" << c.q.group_size << " x " << name(c.xdt)
                                      << " scales " << name(c.sdt) << " ids " << name(c.idt)
                                      << (c.act == silu ? " silu" : " gelu_tanh") << " residual " << int(c.residual)
                                      << (c.strided_x ? " strided x" : ""));
    expect_matches_reference(c);
  }
}

TEST_P(MoeExpertsTest, MatchesTheFourOpsComposed) {
  Session& s = session();
  const int64_t T = 2, E = 16, k = 4, D = 256, I = 128;
  const MlxQuant q{4, 64};
  const DType dt = DType::bf16;
  for (GluKind act : {GluKind::silu, GluKind::gelu_tanh}) {
    SCOPED_TRACE(act == GluKind::silu ? "silu" : "gelu_tanh");
    const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, dt);
    auto x = random_array(s, rng(), {T, D}, dt);
    auto res = random_array(s, rng(), {T, D}, dt, -64, 64);  // the experts' scale (rms ~60): a lost one shows
    const Routing r = random_routing(rng(), T, E, k);
    Array ids = from_values(s, r.ids, {T, k}, DType::u32), w = from_values(s, r.weights, {T, k}, DType::f32);
    Array out = poisoned(s, {T, D}, dt);
    MoeExpertsParams p;
    p.act = act;
    p.residual = res.tensor();
    moe_experts(s, x, view(gate), view(up), view(down), q, ids, w, out, p);

    // gate, up -> [T, k, 2I] (gate then up in each row) -> moe_glu -> down -> weighted sum.
    Array g = poisoned(s, {T, k, I}, dt), u = poisoned(s, {T, k, I}, dt);
    quantized_matmul_id(s, x, gate.packed, gate.scales, gate.biases, ids, q, g);
    quantized_matmul_id(s, x, up.packed, up.scales, up.biases, ids, q, u);
    const auto gv = host_values(s, g), uv = host_values(s, u);
    std::vector<double> gu;
    for (int64_t row = 0; row < T * k; ++row) {
      gu.insert(gu.end(), gv.begin() + row * I, gv.begin() + (row + 1) * I);
      gu.insert(gu.end(), uv.begin() + row * I, uv.begin() + (row + 1) * I);
    }
    Array gate_up = from_values(s, gu, {T, k, 2 * I}, dt), h = poisoned(s, {T, k, I}, dt);
    moe_glu(s, gate_up, h, act);
    Array y = poisoned(s, {T, k, D}, dt), composed = poisoned(s, {T, D}, dt);
    quantized_matmul_id(s, h, down.packed, down.scales, down.biases, ids, q, y);
    moe_weighted_sum(s, y, w, composed, {std::nullopt, std::nullopt, res.tensor()});
    // Each is within 2 tolerance(bf16) of float64 (MatchesFloat64Reference), so within 4 of each other.
    MLXN_EXPECT_CLOSE(host_values(s, out), host_values(s, composed), 4 * tolerance(dt));
  }
}

TEST_P(MoeExpertsTest, OutOfRangeIdsOnCpuRaise) {
  Session& s = session();
  const int64_t T = 2, E = 8, k = 3, D = 256, I = 128;
  for (MlxQuant q : {MlxQuant{4, 64}, MlxQuant{4, 32}})  // fused and four-op paths on CUDA
    for (DType idt : {DType::i32, DType::u32}) {
      SCOPED_TRACE(::testing::Message() << "gs=" << q.group_size << " ids " << name(idt));
      const DType dt = DType::bf16;
      const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, dt);
      auto x = random_array(s, rng(), {T, D}, dt);
      Routing r = random_routing(rng(), T, E, k);
      r.ids[1] = double(E);                                    // just past the end
      r.ids[5] = idt == DType::i32 ? -1.0 : double(E + 1000);  // negative, or far past
      Array ids = from_values(s, r.ids, {T, k}, idt), w = from_values(s, r.weights, {T, k}, DType::f32);
      Array out = poisoned(s, {T, D}, dt);
      if (device().type == DeviceType::cpu) {
        MLXN_EXPECT_RAISES(InvalidArgument, "moe_experts",
                           moe_experts(s, x, view(gate), view(up), view(down), q, ids, w, out));
        continue;
      }
      // CUDA: those slots contribute nothing: the reference with their weights 0.
      moe_experts(s, x, view(gate), view(up), view(down), q, ids, w, out);
      Routing zeroed = r;
      zeroed.weights[1] = zeroed.weights[5] = 0.0;
      MLXN_EXPECT_CLOSE(host_values(s, out), ref_experts(x.values, gate, up, down, GluKind::silu, zeroed, k),
                        experts_tol(dt));
    }
}

TEST_P(MoeExpertsTest, BadInputsRaise) {
  Session& s = session();
  const int64_t T = 2, E = 4, k = 2, D = 128, I = 64;
  const MlxQuant q{4, 64};
  const DType dt = DType::bf16;
  const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, dt);
  const QuantizedExperts G = view(gate), U = view(up), Dn = view(down);
  auto x = random_array(s, rng(), {T, D}, dt);
  Array ids = from_values(s, {0, 1, 3, 2}, {T, k}, DType::i32);
  Array w = from_values(s, {0.5, 0.5, 0.7, 0.3}, {T, k}, DType::f32);
  Array out = poisoned(s, {T, D}, dt);
  ASSERT_NO_THROW(moe_experts(s, x, G, U, Dn, q, ids, w, out));  // the baseline every case below breaks once

  const char* op = "moe_experts";
  auto x3 = random_array(s, rng(), {1, T, D}, dt);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x3, G, U, Dn, q, ids, w, out));
  auto x_k = random_array(s, rng(), {T, 2 * D}, dt);
  Array out_k = poisoned(s, {T, 2 * D}, dt);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x_k, G, U, Dn, q, ids, w, out_k));
  const QMatrix up_n = random_stack(s, rng(), E, 2 * I, D, q, dt);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, view(up_n), Dn, q, ids, w, out));
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, G, q, ids, w, out));  // down [E, I, D]
  const QMatrix down_e = random_stack(s, rng(), E + 1, D, I, q, dt);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, view(down_e), q, ids, w, out));
  const QMatrix up_f16 = random_stack(s, rng(), E, I, D, q, DType::f16);  // scales f16, gate's bf16
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, view(up_f16), Dn, q, ids, w, out));

  Array w_shape = from_values(s, {0.5, 0.5, 0.7, 0.3, 0.1, 0.1}, {T, k + 1}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids, w_shape, out));
  Array w_bf = from_values(s, {0.5, 0.5, 0.7, 0.3}, {T, k}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids, w_bf, out));
  Array ids_f = from_values(s, {0, 1, 3, 2}, {T, k}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids_f, w, out));
  Array ids_t = from_values(s, {0, 1, 3, 2, 1, 0}, {T + 1, k}, DType::i32);
  Array w_t = from_values(s, {0.5, 0.5, 0.7, 0.3, 0.1, 0.1}, {T + 1, k}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids_t, w_t, out));  // T != x's

  Array out_shape = poisoned(s, {T, D / 2}, dt), out_f16 = poisoned(s, {T, D}, DType::f16);
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids, w, out_shape));
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids, w, out_f16));
  auto res_shape = random_array(s, rng(), {1, D}, dt);
  MoeExpertsParams p;
  p.residual = res_shape.tensor();
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, q, ids, w, out, p));

  // packed read with 8 bits (K = 64) or group 32: the scales no longer fit; 7 bits: no such format
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, {8, 64}, ids, w, out));
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, {4, 32}, ids, w, out));
  MLXN_EXPECT_RAISES(InvalidArgument, op, moe_experts(s, x, G, U, Dn, {7, 64}, ids, w, out));
}

TEST_P(MoeExpertsTest, EmptyTokensIsANoOp) {
  Session& s = session();
  const int64_t E = 4, k = 2, D = 128, I = 64;
  const MlxQuant q{4, 64};
  const auto [gate, up, down] = random_experts(s, rng(), E, D, I, q, DType::bf16);
  Array x = Array::empty({0, D}, DType::bf16, device()), out = Array::empty({0, D}, DType::bf16, device());
  Array ids = Array::empty({0, k}, DType::i32, device()), w = Array::empty({0, k}, DType::f32, device());
  EXPECT_NO_THROW(moe_experts(s, x, view(gate), view(up), view(down), q, ids, w, out));
  MoeExpertsParams p;
  p.residual = out.tensor();
  EXPECT_NO_THROW(moe_experts(s, x, view(gate), view(up), view(down), q, ids, w, out, p));
}

MLXN_BACKEND_TESTS(MoeExpertsTest);

}  // namespace
}  // namespace mlxn::test
