// The CPU backend's math helpers against double precision: simd_exp and the row sums.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu/common.h"
#include "ops/simd_exp.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

TEST(SimdExp, WithinTwoUlpOverTheNormalRange) {
  std::mt19937_64 rng(test_seed());
  std::uniform_real_distribution<float> dist(-87.3f, 88.7f);
  double worst = 0;
  for (int i = 0; i < 1000000; ++i) {
    const float x = dist(rng);
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::fabs(double(simd_exp(x)) - ref) / ref);
  }
  EXPECT_LT(worst, 2.4e-7) << "worst relative error";  // 2 ulp of f32
}

TEST(SimdExp, EdgeValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(simd_exp(0.f), 1.f);
  EXPECT_EQ(simd_exp(-inf), 0.f);
  EXPECT_EQ(simd_exp(-100.f), 0.f);
  EXPECT_EQ(simd_exp(inf), inf);
  EXPECT_EQ(simd_exp(100.f), inf);
  EXPECT_TRUE(std::isnan(simd_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_NEAR(simd_exp(88.7f) / std::exp(double(88.7f)), 1.0, 3e-7);  // 2^128 scale split in two
}

TEST(RowSums, MatchDoubleSums) {
  std::mt19937_64 rng(test_seed());
  for (int64_t n : {0, 1, 31, 32, 33, 4099, 70000}) {
    std::uniform_real_distribution<float> dist(3.f, 5.f);  // offset values: cancellation in sum_sq
    std::vector<float> v(static_cast<size_t>(n));
    double sum = 0, sq = 0;
    for (auto& x : v) sum += (x = dist(rng));
    const float center = n ? float(sum / double(n)) : 0.f;
    for (float x : v) sq += (double(x) - center) * (double(x) - center);
    EXPECT_NEAR(cpu::row_sum(v.data(), n), sum, 1e-6 * std::max(1.0, std::fabs(sum))) << n;
    EXPECT_NEAR(cpu::row_sum_sq(v.data(), n, center), sq, 1e-6 * std::max(1.0, sq)) << n;
  }
}

}  // namespace
}  // namespace mlxn::test
