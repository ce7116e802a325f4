#include "support/support.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace mlxn::test {

uint64_t test_seed() {
  if (const char* env = std::getenv("MLXN_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return uint64_t(std::chrono::high_resolution_clock::now().time_since_epoch().count());
}

void BackendTest::SetUp() {
  const Device d = GetParam();
  if (d.is_cuda()) {
    if (!built_with_cuda()) GTEST_SKIP() << "CUDA case skipped: mlxn was built without the CUDA backend";
    if (cuda_device_count() == 0) GTEST_SKIP() << "CUDA case skipped: no CUDA GPU on this machine";
  }
  session_ = std::make_unique<Session>(d);
  const uint64_t seed = test_seed();
  RecordProperty("seed", std::to_string(seed));
  ::testing::Test::RecordProperty("replay", "MLXN_TEST_SEED=" + std::to_string(seed));
  rng_.seed(seed);
}

std::string device_param_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param.is_cpu() ? "cpu" : "cuda";
}

double read_element(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::f32:
      return static_cast<const float*>(p)[i];
    case DType::f16:
      return float(static_cast<const Half*>(p)[i]);
    case DType::bf16:
      return float(static_cast<const BFloat16*>(p)[i]);
    case DType::i8:
      return static_cast<const int8_t*>(p)[i];
    case DType::u8:
      return static_cast<const uint8_t*>(p)[i];
    case DType::i32:
      return static_cast<const int32_t*>(p)[i];
    case DType::u32:
      return static_cast<const uint32_t*>(p)[i];
    case DType::i64:
      return double(static_cast<const int64_t*>(p)[i]);
    default:
      throw Unsupported("[test] read_element of a block type");
  }
}

void write_element(void* p, DType dtype, int64_t i, double v) {
  switch (dtype) {
    case DType::f32:
      static_cast<float*>(p)[i] = float(v);
      break;
    case DType::f16:
      static_cast<Half*>(p)[i] = Half(float(v));
      break;
    case DType::bf16:
      static_cast<BFloat16*>(p)[i] = BFloat16(float(v));
      break;
    case DType::i8:
      static_cast<int8_t*>(p)[i] = int8_t(v);
      break;
    case DType::u8:
      static_cast<uint8_t*>(p)[i] = uint8_t(v);
      break;
    case DType::i32:
      static_cast<int32_t*>(p)[i] = int32_t(v);
      break;
    case DType::u32:
      static_cast<uint32_t*>(p)[i] = uint32_t(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(p)[i] = int64_t(v);
      break;
    default:
      throw Unsupported("[test] write_element of a block type");
  }
}

double round_to(DType dtype, double v) {
  unsigned char buf[8];
  write_element(buf, dtype, 0, v);
  return read_element(buf, dtype, 0);
}

std::vector<double> host_values(Session& s, const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<double> out(static_cast<size_t>(n));
  if (n == 0) return out;
  // Download the span the view covers, then walk it by strides.
  int64_t lo = 0, hi = 0;
  for (int i = 0; i < t.ndim(); ++i) {
    const int64_t reach = (t.dim(i) - 1) * t.stride(i);
    (reach < 0 ? lo : hi) += reach;
  }
  const int64_t span = hi - lo + 1;
  const size_t es = element_size(t.dtype());
  std::vector<unsigned char> host(size_t(span) * es);
  Tensor flat(static_cast<char*>(t.data()) + lo * int64_t(es), t.dtype(), {span}, t.device());
  s.download(host.data(), flat, host.size());
  std::vector<int64_t> idx(size_t(t.ndim()), 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = -lo;
    for (int i = 0; i < t.ndim(); ++i) off += idx[size_t(i)] * t.stride(i);
    out[size_t(k)] = read_element(host.data(), t.dtype(), off);
    for (int i = t.ndim() - 1; i >= 0; --i) {
      if (++idx[size_t(i)] < t.dim(i)) break;
      idx[size_t(i)] = 0;
    }
  }
  return out;
}

Array from_values(Session& s, const std::vector<double>& values, Dims shape, DType dtype) {
  Array a = Array::empty(shape, dtype, s.device());
  if (int64_t(values.size()) != a->numel()) throw InvalidArgument("[test] from_values: size mismatch");
  std::vector<unsigned char> host(a->nbytes());
  for (size_t i = 0; i < values.size(); ++i) write_element(host.data(), dtype, int64_t(i), values[i]);
  s.upload(a, host.data(), host.size());
  return a;
}

TestArray random_array(Session& s, std::mt19937_64& rng, Dims shape, DType dtype, double lo, double hi) {
  const int64_t n = checked_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  std::uniform_real_distribution<double> dist(lo, hi);
  for (auto& x : v) {
    const double r = dist(rng);
    x = traits(dtype).is_float ? round_to(dtype, r) : std::floor(r);
  }
  Array a = from_values(s, v, shape, dtype);
  return {std::move(a), std::move(v)};
}

Array poisoned(Session& s, Dims shape, DType dtype) {
  Array a = Array::empty(shape, dtype, s.device());
  std::vector<unsigned char> host(a->nbytes(), 0x7f);
  if (is_float(dtype))
    for (int64_t i = 0; i < a->numel(); ++i)
      write_element(host.data(), dtype, i, std::numeric_limits<double>::quiet_NaN());
  s.upload(a, host.data(), host.size());
  return a;
}

double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 1e-5;
    case DType::f16:
      return 2e-3;
    case DType::bf16:
      return 1e-2;
    default:
      return 0.0;
  }
}

void make_fixed_point_stress_row(std::vector<double>& x) {
  const size_t k = x.size();
  if (k > 5) x[5] = 1000.0;
  for (size_t i = 64; i < std::min<size_t>(k, 128); ++i) x[i] = 0.0;
  for (size_t i = 128; i < std::min<size_t>(k, 192); ++i) x[i] *= 1e-6;
}

TestArray fixed_point_stress_rows(Session& s, std::mt19937_64& rng, int64_t m, int64_t k, DType dt) {
  std::vector<double> xv;
  for (int64_t r = 0; r < m; ++r) {
    std::vector<double> row = random_array(s, rng, {1, k}, dt).values;
    make_fixed_point_stress_row(row);
    xv.insert(xv.end(), row.begin(), row.end());
  }
  Array x = from_values(s, xv, {m, k}, dt);
  std::vector<double> stored = host_values(s, x.tensor());
  return {std::move(x), std::move(stored)};
}

::testing::AssertionResult fixed_point_matvec_close(const std::vector<double>& got, const std::vector<double>& ref,
                                                    const std::vector<double>& x,
                                                    const std::function<double(int64_t, int64_t)>& w, DType out_dtype) {
  const int64_t k = int64_t(x.size());
  const double out_eps = out_dtype == DType::bf16 ? 0x1p-8 : 0x1p-11;
  for (size_t r = 0; r < ref.size(); ++r) {
    double fixed = 0, mag = 0;
    for (int64_t g0 = 0; g0 < k; g0 += 64) {
      double amax = 0, wsum = 0;
      for (int64_t i = g0; i < std::min<int64_t>(k, g0 + 64); ++i) {
        const double wv = w(int64_t(r), i);
        amax = std::max(amax, std::fabs(x[size_t(i)]));
        wsum += std::fabs(wv);
        mag += std::fabs(x[size_t(i)] * wv);
      }
      fixed += 0x1p-15 * amax * wsum;
    }
    const double err = std::fabs(got[r] - ref[r]), bound = out_eps * std::fabs(ref[r]) + fixed + 1e-5 * mag;
    if (!(err <= bound))
      return ::testing::AssertionFailure()
             << "row " << r << ": " << got[r] << " vs " << ref[r] << ", error " << err << " > " << bound;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult close(const std::vector<double>& actual, const std::vector<double>& ref, double tol) {
  return close(actual, ref, tol, 0.0);
}

::testing::AssertionResult close(const std::vector<double>& actual, const std::vector<double>& ref, double tol,
                                 double min_rms) {
  if (actual.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << actual.size() << " != reference size " << ref.size();
  double num = 0, den = 0, worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = actual[i], r = ref[i];
    if (std::isnan(a) != std::isnan(r) || (std::isinf(r) && a != r) || (std::isinf(a) && a != r))
      return ::testing::AssertionFailure() << "element " << i << " is " << a << ", reference " << r;
    if (std::isnan(r) || std::isinf(r)) continue;
    const double d = a - r;
    num += d * d;
    den += r * r;
    if (std::abs(d) > worst) {
      worst = std::abs(d);
      worst_i = i;
    }
  }
  den = std::max(den, min_rms * min_rms * double(ref.size()));
  const double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num / double(ref.empty() ? 1 : ref.size()));
  if (err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << err << " > " << tol << "; worst element " << worst_i
                                       << ": " << actual[worst_i] << " vs " << ref[worst_i];
}

}  // namespace mlxn::test
