// Runtime: dtypes, host half types, tensor views, buffers and the pool, sessions, graphs,
// the op registry.
#include <cmath>
#include <cstring>

#include "mlxn/ops/norm.h"
#include "mlxn/registry.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

// Reference rounding via double arithmetic: nearest representable value, ties to even.
double ref_round(double v, int mant_bits, int min_exp, double max_finite) {
  if (std::isnan(v) || v == 0) return v;
  const double a = std::fabs(v);
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const int exp = std::max(e - 1, min_exp);
  const double q = std::ldexp(1.0, exp - mant_bits);  // spacing at this magnitude
  double r = std::nearbyint(a / q) * q;               // default mode: ties to even
  if (r > max_finite) {
    // beyond max: rounds to max unless at/over the halfway point to the next binade step
    const double half_step = std::ldexp(1.0, int(std::log2(max_finite)) - mant_bits - 1);
    r = a >= max_finite + half_step ? INFINITY : max_finite;
  }
  return std::copysign(r, v);
}

TEST(DType, HalfRoundsToNearestEven) {
  std::mt19937_64 rng(test_seed());
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    float f = bits_float(bits(rng));
    if (std::isnan(f)) continue;
    f = std::ldexp(std::fmod(f, 1.f), int(bits(rng) % 50) - 30);  // spread over half's range
    const double want = ref_round(f, 10, -14, 65504.0);
    ASSERT_EQ(double(float(Half(f))), want) << "f=" << f;
    const double want_bf = ref_round(f, 7, -126, 3.3895313892515355e38);
    ASSERT_EQ(double(float(BFloat16(f))), want_bf) << "f=" << f;
  }
  EXPECT_TRUE(std::isnan(float(Half(NAN))));
  EXPECT_TRUE(std::isnan(float(BFloat16(NAN))));
  EXPECT_EQ(float(Half(65520.f)), INFINITY);
  EXPECT_EQ(float(Half(65519.f)), 65504.f);
  EXPECT_EQ(float(Half(-1e-8f)), -0.f);
  EXPECT_EQ(float(Half(5.9604645e-08f)), 5.9604645e-08f);  // smallest subnormal
  // Every half value converts back exactly.
  for (uint32_t h = 0; h < 65536; ++h) {
    Half x;
    x.bits = uint16_t(h);
    const float f = float(x);
    if (!std::isnan(f)) {
      ASSERT_EQ(Half(f).bits, h);
    }
  }
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(parse_dtype("bf16"), DType::bf16);
  EXPECT_EQ(element_size(DType::i64), 8u);
  EXPECT_EQ(traits(DType::q4_k).block_elems, 256u);
  EXPECT_TRUE(is_quantized(DType::q8_0));
  EXPECT_THROW(parse_dtype("f8"), InvalidArgument);
}

TEST(Tensor, ViewsAndErrors) {
  Array a = Array::empty({4, 6}, DType::f32);
  EXPECT_TRUE(a->is_contiguous());
  Tensor t = a->transpose(0, 1);
  EXPECT_EQ(t.shape(), (Dims{6, 4}));
  EXPECT_FALSE(t.is_contiguous());
  Tensor s = a->slice(1, 2, 5);
  EXPECT_EQ(s.data(), static_cast<void*>(a.data_as<float>() + 2));
  EXPECT_EQ(a->select(0, 3).data(), static_cast<void*>(a.data_as<float>() + 18));
  EXPECT_THROW(a->reshape({5, 5}), InvalidArgument);
  EXPECT_THROW(t.reshape({24}), InvalidArgument);
  EXPECT_THROW(a->slice(1, 4, 7), InvalidArgument);
  EXPECT_THROW(Array::empty({-1, 3}, DType::f32), InvalidArgument);
  EXPECT_THROW(Array::empty({int64_t(1) << 40, int64_t(1) << 40}, DType::f32), InvalidArgument);
  EXPECT_THROW(Array::empty({int64_t(1) << 50}, DType::f32), OutOfMemory);
  EXPECT_THROW(Array::empty({0, int64_t(1) << 40, int64_t(1) << 40}, DType::f32), InvalidArgument);
  EXPECT_THROW(Device::parse("tpu:0"), InvalidArgument);
  // Empty tensors are contiguous whatever their strides, so they copy like any other.
  Array e = Array::empty({3, 0, 17}, DType::f32);
  EXPECT_TRUE(e->is_contiguous());
  Session cpu;
  EXPECT_NO_THROW(cpu.upload(e, nullptr, 0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
}

TEST(Pool, ReusesScratchBuffers) {
  ScratchPool pool(Device::cpu());
  void* first;
  {
    ScratchBuffer a = pool.acquire(1000);
    first = a.data();
  }
  ScratchBuffer b = pool.acquire(900);  // fits in the returned 1000-byte buffer
  EXPECT_EQ(b.data(), first);
  ScratchBuffer c = pool.acquire(5000);  // does not
  EXPECT_NE(c.data(), first);
  EXPECT_EQ(pool.allocations(), 2u);
}

TEST(Registry, ListsNormsWithBackends) {
  bool found = false;
  for (const auto& op : list_ops()) {
    if (op.name != "rms_norm") continue;
    found = true;
    EXPECT_EQ(op.family, "norm");
    EXPECT_TRUE(op.dtypes[int(DeviceType::cpu)].contains(DType::bf16));
    EXPECT_EQ(op.dtypes[int(DeviceType::cuda)].contains(DType::bf16), built_with_cuda());
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(supports("rms_norm", Device::cpu(), DType::f16));
  EXPECT_FALSE(supports("rms_norm", Device::cpu(), DType::i32));
  EXPECT_FALSE(supports("no_such_op", Device::cpu(), DType::f32));
}

TEST(Session, CpuCannotCaptureAndMissingGpuIsAnError) {
  Session s(Device::cpu());
  EXPECT_THROW(s.begin_capture(), Unsupported);
  if (!built_with_cuda()) {
    EXPECT_THROW(Session(Device::cuda(0)), Unsupported);
  } else {
    EXPECT_THROW(Session(Device::cuda(cuda_device_count() + 5)), InvalidArgument);
  }
}

class SessionTest : public BackendTest {};

TEST_P(SessionTest, CopiesRoundTrip) {
  auto a = random_array(session(), rng(), {257}, DType::bf16);
  Array b = poisoned(session(), {257}, DType::bf16);
  session().copy(b, a);
  EXPECT_EQ(host_values(session(), b), a.values);
  Array host = Array::empty({257}, DType::bf16, Device::cpu());
  session().copy(host, b);
  EXPECT_EQ(host_values(session(), host), a.values);
  Array wrong = Array::empty({256}, DType::bf16, device());
  EXPECT_THROW(session().copy(wrong, a), InvalidArgument);
  std::vector<char> small(10);
  EXPECT_THROW(session().download(small.data(), a, small.size()), InvalidArgument);
}

TEST_P(SessionTest, GraphReplayGivesEagerResultsExactly) {
  if (device().is_cpu()) GTEST_SKIP() << "graphs are a CUDA feature; the CPU refusal is tested above";
  Session& s = session();
  // A small chain: h = rms_norm_residual(x, r) -> rms_norm_mul(h, g) -> ssm_norm_gate(.., z)
  auto x = random_array(s, rng(), {8, 1024}, DType::bf16);
  auto r = random_array(s, rng(), {8, 1024}, DType::bf16);
  auto g = random_array(s, rng(), {8, 1024}, DType::bf16);
  auto w = random_array(s, rng(), {1024}, DType::f32, 0.5, 1.5);
  Array h = poisoned(s, {8, 1024}, DType::bf16), sum = poisoned(s, {8, 1024}, DType::bf16);
  Array y = poisoned(s, {8, 1024}, DType::bf16), o = poisoned(s, {8, 1024}, DType::bf16);
  auto step = [&] {
    rms_norm_residual(s, x, r, h, {w.tensor()}, sum.tensor());
    rms_norm_mul(s, h, g, y, {w.tensor()});
    ssm_norm_gate(s, y, g, o, {w.tensor()});
  };
  step();
  const auto eager = host_values(s, o);
  Array o2 = poisoned(s, {8, 1024}, DType::bf16);
  s.copy(o, o2);  // poison again: replay must rewrite it
  s.begin_capture();
  step();
  Graph graph = s.end_capture();
  for (int i = 0; i < 100; ++i) graph.replay();
  s.synchronize();
  EXPECT_EQ(host_values(s, o), eager);
}

MLXN_BACKEND_TESTS(SessionTest);

}  // namespace
}  // namespace mlxn::test
