#pragma once
// Test toolkit: every op test runs on every backend ("cpu", "cuda"), with fresh random
// inputs from a seeded generator, outputs poisoned before the run, and results compared in
// float64 against a reference written from the math.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mlxn/error.h"
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn::test {

// ---- backends ----------------------------------------------------------------------------
// Fixture parameterised by device. CUDA cases skip visibly (with the reason) when this
// machine has no GPU or the library was built without CUDA.
class BackendTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override;
  Session& session() { return *session_; }
  Device device() const { return GetParam(); }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::unique_ptr<Session> session_;
  std::mt19937_64 rng_;
};

std::string device_param_name(const ::testing::TestParamInfo<Device>& info);

#define MLXN_BACKEND_TESTS(Suite)                                                                              \
  INSTANTIATE_TEST_SUITE_P(Backends, Suite, ::testing::Values(::mlxn::Device::cpu(), ::mlxn::Device::cuda(0)), \
                           ::mlxn::test::device_param_name)

// Seed for the current test: MLXN_TEST_SEED if set, else drawn from the clock (printed in
// the test log so a failure can be replayed).
uint64_t test_seed();

// ---- host <-> device -----------------------------------------------------------------------
// Element i of a host buffer of `dtype`, as double, and the reverse (rounding to the dtype).
double read_element(const void* p, DType dtype, int64_t i);
void write_element(void* p, DType dtype, int64_t i, double v);
// Rounds v to what the dtype can hold (float types).
double round_to(DType dtype, double v);

// The values of any view (strided, offset), in row-major order of its shape.
std::vector<double> host_values(Session& s, const Tensor& t);
// A new contiguous array holding `values` (rounded to the dtype).
Array from_values(Session& s, const std::vector<double>& values, Dims shape, DType dtype);

struct TestArray {
  Array array;
  std::vector<double> values;  // exactly what the device holds, row-major
  const Tensor& tensor() const { return array.tensor(); }
  operator const Tensor&() const { return array.tensor(); }  // NOLINT
};
// Uniform random values in [lo, hi), rounded to the dtype; integers for integer dtypes.
TestArray random_array(Session& s, std::mt19937_64& rng, Dims shape, DType dtype, double lo = -1.0, double hi = 1.0);
// An output buffer full of NaN (float types) or 0x7f.. bytes, so unwritten elements fail.
Array poisoned(Session& s, Dims shape, DType dtype);

// ---- comparison ----------------------------------------------------------------------------
// Relative-norm tolerance for results stored in `dtype`: f32 1e-5, f16 2e-3, bf16 1e-2.
double tolerance(DType dtype);
// ||actual - ref|| / ||ref|| <= tol (absolute when ref is all zeros); any NaN/Inf mismatch
// fails; shapes must match. `what` labels the failure.
::testing::AssertionResult close(const std::vector<double>& actual, const std::vector<double>& ref, double tol);
// The same, relative to an RMS of at least min_rms: for results that cancel towards zero while
// their error keeps the scale of the terms that cancel.
::testing::AssertionResult close(const std::vector<double>& actual, const std::vector<double>& ref, double tol,
                                 double min_rms);
#define MLXN_EXPECT_CLOSE(actual, ref, tol) EXPECT_TRUE(::mlxn::test::close((actual), (ref), (tol)))

// ---- single-row quantized mat-vecs with x as fixed point -----------------------------------
// CUDA multiplies one bf16/f16 row by a 4-bit weight with x as 15-bit fixed point per group of
// 64 values. A row of x that stresses that: value 5 an outlier of 1000, values 64..127 zero,
// 128..191 scaled by 1e-6 (when present).
void make_fixed_point_stress_row(std::vector<double>& x);
// m such rows of k random values of dtype dt (2..8 rows: the batch mat-vecs), on the device.
TestArray fixed_point_stress_rows(Session& s, std::mt19937_64& rng, int64_t m, int64_t k, DType dt);
// Each output within its rounding in out_dtype, plus the fixed point's resolution (2^-15 of each
// group's largest |x| times the group's sum of |w|: twice the rounding, for slack), plus f32
// accumulation (1e-5 of the sum of |x w|). x: [k]; w(r, i): the exact weight; got, ref: [n].
::testing::AssertionResult fixed_point_matvec_close(const std::vector<double>& got, const std::vector<double>& ref,
                                                    const std::vector<double>& x,
                                                    const std::function<double(int64_t, int64_t)>& w, DType out_dtype);

// Runs f, expecting an mlxn error of type E whose message names `op`.
template <class E = Error, class F>
::testing::AssertionResult raises(const char* op, F&& f) {
  try {
    f();
  } catch (const E& e) {
    const std::string tag = std::string("[") + op + "]";
    if (std::string(e.what()).find(tag) == std::string::npos)
      return ::testing::AssertionFailure() << "error does not name " << tag << ": " << e.what();
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "wrong exception type: " << e.what();
  }
  return ::testing::AssertionFailure() << "no error raised";
}
#define MLXN_EXPECT_RAISES(E, op, stmt) EXPECT_TRUE(::mlxn::test::raises<E>(op, [&] { stmt; }))

inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> v{DType::f32, DType::f16, DType::bf16};
  return v;
}

// Row widths worth testing: 1, around a warp, just over a power of two, odd, and wider
// than one block's register cache.
inline const std::vector<int64_t>& edge_widths() {
  static const std::vector<int64_t> v{1, 31, 32, 33, 1025, 4099, 70000};
  return v;
}

}  // namespace mlxn::test
