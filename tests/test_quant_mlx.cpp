// MLX affine quantization against data written by MLX itself (tests/fixtures/quant_mlx, made
// by scripts/mlx_fixtures.py) and against float64 references written from the format's
// definition (include/mlxn/ops/quant_mlx.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "mlxn/ops/norm.h"
#include "mlxn/ops/quant_mlx.h"
#include "support/mlx_quant_matrix.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

const int kBits[] = {2, 3, 4, 5, 6, 8};
const int kGroups[] = {32, 64, 128};

// out[r, n] = x[r] · W[e(r)][n] in float64.
std::vector<double> ref_matmul(const std::vector<double>& x, int64_t rows, const QMatrix& m,
                               const std::vector<int64_t>& expert_of_row, const std::vector<int64_t>& x_row) {
  std::vector<double> out(static_cast<size_t>(rows * m.n));
  std::map<int64_t, std::vector<double>> dense;  // expert -> W [n, k]
  for (int64_t e : expert_of_row) {
    if (dense.count(e)) continue;
    auto& d = dense[e];
    d.resize(static_cast<size_t>(m.n * m.k));
    for (int64_t n = 0; n < m.n; ++n)
      for (int64_t i = 0; i < m.k; ++i) d[size_t(n * m.k + i)] = m.exact(e, n, i);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x.data() + x_row[size_t(r)] * m.k;
    const std::vector<double>& d = dense[expert_of_row[size_t(r)]];
    for (int64_t n = 0; n < m.n; ++n) {
      double acc = 0;
      for (int64_t i = 0; i < m.k; ++i) acc += xr[i] * d[size_t(n * m.k + i)];
      out[size_t(r * m.n + n)] = acc;
    }
  }
  return out;
}

// Tolerance for a matmul whose output (and, on the tensor-core paths, weights) are rounded to dt.
double mm_tol(DType dt) { return dt == DType::f32 ? 2e-5 : 2 * tolerance(dt); }

class QuantMlxTest : public BackendTest {
 protected:
  // x [m_rows, k] (xdt) times a fresh random [n, k] quantized matrix (scales sdt) against the
  // float64 reference.
  void expect_plain_matmul(Session& s, int64_t m_rows, int64_t n, int64_t k, MlxQuant q, DType xdt, DType sdt) {
    QMatrix w = random_qmatrix(s, rng(), 1, n, k, q, sdt);
    auto x = random_array(s, rng(), {m_rows, k}, xdt);
    Array out = poisoned(s, {m_rows, n}, xdt);
    quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out);
    std::vector<int64_t> e(static_cast<size_t>(m_rows), 0), xr(static_cast<size_t>(m_rows));
    for (int64_t r = 0; r < m_rows; ++r) xr[size_t(r)] = r;
    MLXN_EXPECT_CLOSE(host_values(s, out), ref_matmul(x.values, m_rows, w, e, xr), mm_tol(xdt));
  }
};

// ---- fixtures written by MLX ----------------------------------------------------------------

struct FixtureArray {
  DType dtype;
  Dims shape;
  std::vector<unsigned char> bytes;
};

DType fixture_dtype(const std::string& s) { return parse_dtype(s); }

FixtureArray fixture_array(const nlohmann::json& c, const std::string& key, const std::vector<unsigned char>& blob) {
  const auto& a = c["arrays"][key];
  FixtureArray r;
  r.dtype = fixture_dtype(a["dtype"].get<std::string>());
  for (auto d : a["shape"]) r.shape.push_back(d.get<int64_t>());
  const size_t off = a["offset"].get<size_t>(), nb = a["nbytes"].get<size_t>();
  r.bytes.assign(blob.begin() + std::ptrdiff_t(off), blob.begin() + std::ptrdiff_t(off + nb));
  return r;
}

Array upload(Session& s, const FixtureArray& f) {
  Array a = Array::empty(f.shape, f.dtype, s.device());
  s.upload(a, f.bytes.data(), f.bytes.size());
  return a;
}

std::vector<double> values_of(const FixtureArray& f) {
  std::vector<double> v(f.bytes.size() / element_size(f.dtype));
  for (size_t i = 0; i < v.size(); ++i) v[i] = read_element(f.bytes.data(), f.dtype, int64_t(i));
  return v;
}

std::vector<unsigned char> download_bytes(Session& s, const Tensor& t) {
  std::vector<unsigned char> h(t.nbytes());
  s.download(h.data(), t, h.size());
  return h;
}

TEST_P(QuantMlxTest, MatchesMlxFixtures) {
  Session& s = session();
  const std::string dir = std::string(MLXN_SOURCE_DIR) + "/tests/fixtures/quant_mlx/";
  std::ifstream f(dir + "index.json");
  ASSERT_TRUE(f.good()) << "missing " << dir << "index.json (run scripts/mlx_fixtures.py)";
  const auto index = nlohmann::json::parse(f);
  ASSERT_EQ(index["cases"].size(), 18u);
  int64_t words_total = 0, words_equal = 0, groups_total = 0, groups_equal = 0;
  for (const auto& c : index["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    std::ifstream bf(dir + c["file"].get<std::string>(), std::ios::binary);
    const std::vector<unsigned char> blob((std::istreambuf_iterator<char>(bf)), std::istreambuf_iterator<char>());
    const MlxQuant q{c["bits"].get<int>(), c["group_size"].get<int>()};
    const auto w = fixture_array(c, "w", blob), packed = fixture_array(c, "packed", blob),
               scales = fixture_array(c, "scales", blob), biases = fixture_array(c, "biases", blob),
               deq = fixture_array(c, "dequantized", blob), x = fixture_array(c, "x", blob),
               mm = fixture_array(c, "matmul", blob);
    const DType dt = w.dtype;
    Array dp = upload(s, packed), ds = upload(s, scales), db = upload(s, biases);

    // dequantize: bit-exact in MLX's dtype, and the same values converted to every dtype.
    for (DType odt : float_dtypes()) {
      Array out = poisoned(s, deq.shape, odt);
      dequantize(s, dp, ds, db, q, out);
      const auto got = host_values(s, out);
      const auto want = values_of(deq);
      if (odt == dt) {
        ASSERT_EQ(download_bytes(s, out), deq.bytes) << "dequantize is not bit-exact against MLX";
      } else {
        for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], round_to(odt, want[i])) << "element " << i;
      }
    }

    // quantize: the words, scales and biases MLX wrote.
    Array pw = upload(s, w);
    Array qp = Array::empty(packed.shape, DType::u32, device());
    Array qs = poisoned(s, scales.shape, dt), qb = poisoned(s, scales.shape, dt);
    quantize(s, pw, q, qp, qs, qb);
    const auto got_p = download_bytes(s, qp), got_s = download_bytes(s, qs), got_b = download_bytes(s, qb);
    const auto* gw = reinterpret_cast<const uint32_t*>(got_p.data());
    const auto* ww = reinterpret_cast<const uint32_t*>(packed.bytes.data());
    for (size_t i = 0; i < got_p.size() / 4; ++i) words_equal += gw[i] == ww[i];
    words_total += int64_t(got_p.size() / 4);
    const size_t es = element_size(dt);
    for (size_t g = 0; g < got_s.size() / es; ++g) {
      groups_equal += std::memcmp(&got_s[g * es], &scales.bytes[g * es], es) == 0 &&
                      std::memcmp(&got_b[g * es], &biases.bytes[g * es], es) == 0;
      ++groups_total;
    }

    // quantized_matmul: against MLX (whose CPU kernel accumulates in the input dtype) and
    // against float64 from the MLX-written weights.
    Array dx = upload(s, x);
    const int64_t M = x.shape[0], N = packed.shape[0];
    Array out = poisoned(s, {M, N}, dt);
    quantized_matmul(s, dx, dp, ds, db, q, out);
    const auto got = host_values(s, out);
    const double mlx_tol = dt == DType::f32 ? 1e-5 : dt == DType::f16 ? 1e-2 : 4e-2;
    MLXN_EXPECT_CLOSE(got, values_of(mm), mlx_tol);
    QMatrix m;
    m.n = N;
    m.k = x.shape[1];
    m.q = q;
    m.sdt = dt;
    m.words.resize(packed.bytes.size() / 4);
    std::memcpy(m.words.data(), packed.bytes.data(), packed.bytes.size());
    m.s = values_of(scales);
    m.b = values_of(biases);
    std::vector<int64_t> zeros(static_cast<size_t>(M), 0), rows(static_cast<size_t>(M));
    for (int64_t r = 0; r < M; ++r) rows[size_t(r)] = r;
    MLXN_EXPECT_CLOSE(got, ref_matmul(values_of(x), M, m, zeros, rows), mm_tol(dt));
  }
  const double word_rate = double(words_equal) / double(words_total);
  const double group_rate = double(groups_equal) / double(groups_total);
  std::printf("[quant_mlx] quantize vs MLX: %.4f%% of packed words, %.4f%% of (scale, bias) pairs identical\n",
              100 * word_rate, 100 * group_rate);
  RecordProperty("quantize_word_match", std::to_string(word_rate));
  EXPECT_EQ(words_equal, words_total);
  EXPECT_EQ(groups_equal, groups_total);
}

// ---- float64 references ------------------------------------------------------------------

TEST_P(QuantMlxTest, DequantizeEveryFormat) {
  Session& s = session();
  for (int bits : kBits)
    for (int gs : kGroups)
      for (DType sdt : float_dtypes()) {
        SCOPED_TRACE(::testing::Message() << "bits=" << bits << " gs=" << gs << " scales " << name(sdt));
        const MlxQuant q{bits, gs};
        const int64_t n = 5, k = 2 * gs + (bits == 8 ? 0 : gs);
        QMatrix m = random_qmatrix(s, rng(), 1, n, k, q, sdt);
        const DType odt = float_dtypes()[size_t(bits + gs / 32) % 3];
        Array out = poisoned(s, {n, k}, odt);
        dequantize(s, m.packed, m.scales, m.biases, q, out);
        const auto got = host_values(s, out);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t i = 0; i < k; ++i)
            ASSERT_EQ(got[size_t(r * k + i)], round_to(odt, m.mlx(0, r, i))) << "row " << r << " col " << i;
      }
}

// Quantize as MLX specifies it, written from the algorithm, in f32 arithmetic.
struct RefQuant {
  std::vector<uint32_t> words;
  std::vector<float> scales, biases;
};
RefQuant ref_quantize(const std::vector<double>& w, int64_t n, int64_t k, MlxQuant q) {
  RefQuant r;
  r.words.assign(static_cast<size_t>(n * k * q.bits / 32), 0);
  const float n_bins = float((1 << q.bits) - 1);
  for (int64_t row = 0; row < n; ++row)
    for (int64_t g = 0; g < k / q.group_size; ++g) {
      float lo = INFINITY, hi = -INFINITY;
      for (int j = 0; j < q.group_size; ++j) {
        const float v = float(w[size_t(row * k + g * q.group_size + j)]);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      const bool neg_edge = std::fabs(lo) > std::fabs(hi);
      float scale = std::max((hi - lo) / n_bins, 1e-7f);
      if (!neg_edge) scale = -scale;
      const float edge = neg_edge ? lo : hi;
      const float q0 = std::nearbyint(edge / scale);
      float bias = 0;
      if (q0 != 0) {
        scale = edge / q0;
        bias = edge;
      }
      for (int j = 0; j < q.group_size; ++j) {
        const float v = float(w[size_t(row * k + g * q.group_size + j)]);
        const float d = v - bias;
        const float qq = std::min(std::max(std::nearbyint(d / scale), 0.f), n_bins);
        const uint64_t bit = uint64_t((row * k + g * q.group_size + j) * q.bits);
        const uint64_t val = uint64_t(qq) << (bit % 32);
        r.words[bit / 32] |= uint32_t(val);
        if (bit % 32 + uint64_t(q.bits) > 32) r.words[bit / 32 + 1] |= uint32_t(val >> 32);
      }
      r.scales.push_back(scale);
      r.biases.push_back(bias);
    }
  return r;
}

TEST_P(QuantMlxTest, QuantizeRoundTrip) {
  Session& s = session();
  for (int bits : kBits)
    for (int gs : kGroups) {
      const DType wdt = float_dtypes()[size_t(bits + gs / 32) % 3];
      const DType sdt = float_dtypes()[size_t(bits + gs / 64) % 3];
      SCOPED_TRACE(::testing::Message() << "bits=" << bits << " gs=" << gs << " w " << name(wdt) << " scales "
                                        << name(sdt));
      const MlxQuant q{bits, gs};
      const int64_t n = 7, k = 3 * gs;
      auto w = random_array(s, rng(), {n, k}, wdt, -2, 2);
      // A constant group, an all-zero group and an all-negative one.
      std::vector<double> wv = w.values;
      for (int j = 0; j < gs; ++j) {
        wv[size_t(j)] = round_to(wdt, 0.3);
        wv[size_t(k + gs + j)] = 0.0;
        wv[size_t(2 * k + j)] = -std::fabs(wv[size_t(2 * k + j)]);
      }
      Array wa = from_values(s, wv, {n, k}, wdt);
      Array packed = Array::empty({n, k * bits / 32}, DType::u32, device());
      Array sc = poisoned(s, {n, k / gs}, sdt), bi = poisoned(s, {n, k / gs}, sdt);
      quantize(s, wa, q, packed, sc, bi);
      const RefQuant ref = ref_quantize(wv, n, k, q);
      std::vector<uint32_t> got(ref.words.size());
      s.download(got.data(), packed, got.size() * 4);
      ASSERT_EQ(got, ref.words);
      const auto gs_v = host_values(s, sc), gb_v = host_values(s, bi);
      for (size_t g = 0; g < ref.scales.size(); ++g) {
        ASSERT_EQ(gs_v[g], round_to(sdt, ref.scales[g])) << "group " << g;
        ASSERT_EQ(gb_v[g], round_to(sdt, ref.biases[g])) << "group " << g;
      }
      // dequantize(quantize(w)) is within half a step of w where w lies inside the span the
      // group can represent ({b + s q}); MLX makes the edge of larger magnitude exact by
      // rounding the step, so values at the far edge may fall outside and be clamped: their
      // error is their distance to the span, plus half a step. Plus the rounding of the scale
      // and bias to their dtype (up to 2^bits - 1 times the scale's rounding).
      Array back = poisoned(s, {n, k}, DType::f32);
      dequantize(s, packed, sc, bi, q, back);
      const auto bv = host_values(s, back);
      const double ulp = sdt == DType::f32 ? 0x1p-23 : sdt == DType::f16 ? 0x1p-10 : 0x1p-7;
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < k; ++i) {
          const size_t gi = size_t(r * (k / gs) + i / gs);
          const double step = std::fabs(double(ref.scales[gi]));
          const double b0 = ref.biases[gi], b1 = b0 + double(ref.scales[gi]) * double((1 << bits) - 1);
          const double wv_i = wv[size_t(r * k + i)];
          const double outside = std::max({0.0, std::min(b0, b1) - wv_i, wv_i - std::max(b0, b1)});
          const double bound =
              outside + 0.5 * step * (1 + 1e-5) + 1e-6 +
              ulp * (std::fabs(ref.biases[gi]) + step * double((1 << bits) - 1) + std::fabs(wv[size_t(r * k + i)]));
          ASSERT_LE(std::fabs(bv[size_t(r * k + i)] - wv[size_t(r * k + i)]), bound) << "row " << r << " col " << i;
        }
    }
}

// Rows of x: decode (1, 2, 8 = one mat-vec unit, 9 = two), the CUDA mat-vec limit (64) and
// one past it (65, the dequantize + GEMM path), and a prefill size.
const int64_t kMatmulRows[] = {1, 2, 8, 9, 24, 25, 130};  // 24/25: the CUDA mat-vec limit

TEST_P(QuantMlxTest, MatmulEveryFormat) {
  Session& s = session();
  int combo = 0;
  for (int bits : kBits)
    for (int gs : kGroups) {
      const MlxQuant q{bits, gs};
      for (int64_t m_rows : kMatmulRows) {
        ++combo;
        const DType xdt = float_dtypes()[size_t(combo) % 3];
        const DType sdt = float_dtypes()[size_t(combo / 3) % 3];
        const int64_t n = m_rows >= 64 ? 130 : 33, k = gs * (m_rows == 1 ? 1 : 3);
        SCOPED_TRACE(::testing::Message() << "bits=" << bits << " gs=" << gs << " M=" << m_rows << " x " << name(xdt)
                                          << " scales " << name(sdt) << " K=" << k);
        expect_plain_matmul(s, m_rows, n, k, q, xdt, sdt);
      }
    }
}

// The CUDA mat-vec's register ring over long K: x and scales of one 16-bit type (the packed
// fma route; f16 takes it at 8 bits too), every width, K long enough for several steps per
// warp with a partial last round, up to 10240 values (x's image read through L1).
TEST_P(QuantMlxTest, MatvecRingAndLongK) {
  Session& s = session();
  int combo = 0;
  for (int bits : kBits)
    for (DType dt : {DType::bf16, DType::f16})
      for (auto [m_rows, n, extra_k] :
           {std::tuple<int64_t, int64_t, int64_t>{1, 40, 1024}, {8, 24, 2560}, {3, 17, 1280}, {1, 16, 10240}}) {
        const int gs = kGroups[size_t(combo++) % 3];
        const MlxQuant q{bits, gs};
        const int64_t k = extra_k + 2 * gs;
        SCOPED_TRACE(::testing::Message() << "bits=" << bits << " gs=" << gs << " " << name(dt) << " M=" << m_rows
                                          << " N=" << n << " K=" << k);
        expect_plain_matmul(s, m_rows, n, k, q, dt, dt);
      }
}

// The 4-bit mat-vec on fixed-point x (on CUDA x becomes 15-bit fixed point per 64 values, 32
// at group size 32, and the product runs on the integer tensor cores): one row at every group
// size, and 3 or 8 rows (the x rows as the mma's columns, 8 of them partly unused at 3) at
// group sizes 64 and 128; both 16-bit x types and every scale type, K of one step to many
// (warps without steps), N not a multiple of 16, each x row with an outlier 10^3 times its
// other values, a group of zeros and one of tiny values.
// Each output must be within the fixed point's bound (support.h; at group size 32 the fixed
// point is finer than the bound assumes): an 8-bit x would miss it by ~2^8.
TEST_P(QuantMlxTest, MatvecFixedPointX) {
  Session& s = session();
  int combo = 0;
  for (int gs : kGroups)
    for (DType xdt : {DType::bf16, DType::f16})
      for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 128}, {17, 384}, {40, 4096}})
        for (int64_t m_rows : {1, 3, 8}) {
          // Several rows take the integer path at group size 64, or 128 with K % 256 == 0.
          if (m_rows > 1 && (gs == 32 || (gs == 128 && k % 256 != 0))) continue;
          const DType sdt = float_dtypes()[size_t(combo++) % 3];
          const MlxQuant q{4, gs};
          SCOPED_TRACE(::testing::Message() << "gs=" << gs << " x " << name(xdt) << " scales " << name(sdt)
                                            << " M=" << m_rows << " N=" << n << " K=" << k);
          QMatrix w = random_qmatrix(s, rng(), 1, n, k, q, sdt);
          const TestArray x = fixed_point_stress_rows(s, rng(), m_rows, k, xdt);
          const std::vector<double>& xv = x.values;
          Array out = poisoned(s, {m_rows, n}, xdt);
          quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out);
          const std::vector<double> got = host_values(s, out);
          for (int64_t r = 0; r < m_rows; ++r) {
            SCOPED_TRACE(::testing::Message() << "row " << r);
            const std::vector<double> xr(xv.begin() + r * k, xv.begin() + (r + 1) * k);
            ASSERT_TRUE(fixed_point_matvec_close(
                std::vector<double>(got.begin() + r * n, got.begin() + (r + 1) * n), ref_matmul(xr, 1, w, {0}, {0}), xr,
                [&](int64_t row, int64_t i) { return w.exact(0, row, i); }, xdt));
          }
        }
}

// Decode as a model runs it: x written by the kernel just before the matmul (rms_norm, which
// releases its dependents early), a new x each round into the same buffers, out reused. On
// CUDA the mat-vecs start before that kernel ends (programmatic dependent launch) and must
// still read the new x, whatever the path (4-bit single row, 4-bit two rows, 8-bit).
TEST_P(QuantMlxTest, MatvecReadsTheXJustWritten) {
  Session& s = session();
  for (auto [bits, m_rows] : {std::pair<int, int64_t>{4, 1}, {4, 2}, {8, 1}}) {
    SCOPED_TRACE(::testing::Message() << "bits=" << bits << " M=" << m_rows);
    const MlxQuant q{bits, 64};
    const int64_t n = 272, k = 1024;
    QMatrix w = random_qmatrix(s, rng(), 1, n, k, q, DType::bf16);
    Array x = Array::empty({m_rows, k}, DType::bf16, s.device());
    Array out = poisoned(s, {m_rows, n}, DType::bf16);
    const std::vector<int64_t> e(static_cast<size_t>(m_rows), 0);
    std::vector<int64_t> xr;
    for (int64_t r = 0; r < m_rows; ++r) xr.push_back(r);
    for (int round = 0; round < 4; ++round) {
      auto raw = random_array(s, rng(), {m_rows, k}, DType::bf16);
      rms_norm(s, raw.array, x);
      quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out);
      MLXN_EXPECT_CLOSE(host_values(s, out), ref_matmul(host_values(s, x.tensor()), m_rows, w, e, xr),
                        mm_tol(DType::bf16));
    }
  }
}

TEST_P(QuantMlxTest, MatmulEveryDtypePairAndShape) {
  Session& s = session();
  const MlxQuant q{4, 64};
  for (DType xdt : float_dtypes())
    for (DType sdt : float_dtypes())
      for (auto [m_rows, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 33, 64},
                                  {2, 64, 4096},
                                  {5, 17, 320},
                                  {16, 40, 192},
                                  {17, 33, 128},
                                  {64, 40, 256},
                                  {65, 40, 256},
                                  {150, 72, 576}}) {
        SCOPED_TRACE(::testing::Message()
                     << "x " << name(xdt) << " scales " << name(sdt) << " M=" << m_rows << " N=" << n << " K=" << k);
        expect_plain_matmul(s, m_rows, n, k, q, xdt, sdt);
      }
}

TEST_P(QuantMlxTest, MatmulStridedRowsAndBatchDims) {
  Session& s = session();
  const MlxQuant q{4, 32};
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    QMatrix w = random_qmatrix(s, rng(), 1, 48, 256, q, DType::bf16);
    // x rows 264 and 261 apart (16-byte aligned, then not), out rows 56 apart.
    for (int64_t pitch : {int64_t(264), int64_t(261)})
      for (int64_t m_rows : {int64_t(4), int64_t(33), int64_t(70)}) {
        auto parent = random_array(s, rng(), {m_rows, pitch}, dt);
        Tensor x = parent.tensor().slice(1, 0, 256);
        Array out_parent = poisoned(s, {m_rows, 56}, dt);
        Tensor out = out_parent.tensor().slice(1, 0, 48);
        quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out);
        std::vector<double> xv = host_values(s, x);
        std::vector<int64_t> e(static_cast<size_t>(m_rows), 0), xr(static_cast<size_t>(m_rows));
        for (int64_t r = 0; r < m_rows; ++r) xr[size_t(r)] = r;
        MLXN_EXPECT_CLOSE(host_values(s, out), ref_matmul(xv, m_rows, w, e, xr), mm_tol(dt));
        for (double v : host_values(s, out_parent.tensor().slice(1, 48, 56))) ASSERT_TRUE(std::isnan(v));
      }
    // x [2, 3, K] -> out [2, 3, N]
    auto x3 = random_array(s, rng(), {2, 3, 256}, dt);
    Array o3 = poisoned(s, {2, 3, 48}, dt);
    quantized_matmul(s, x3, w.packed, w.scales, w.biases, q, o3);
    std::vector<int64_t> e(6, 0), xr{0, 1, 2, 3, 4, 5};
    MLXN_EXPECT_CLOSE(host_values(s, o3), ref_matmul(x3.values, 6, w, e, xr), mm_tol(dt));
  }
}

// ---- expert-routed ---------------------------------------------------------------------------

TEST_P(QuantMlxTest, MatmulIdMatchesEachExpertAlone) {
  Session& s = session();
  for (int bits : kBits)
    for (DType dt : float_dtypes())
      for (bool per_slot : {false, true})
        for (int64_t tokens : {int64_t(1), int64_t(6), int64_t(40)}) {
          const MlxQuant q{bits, kGroups[size_t(bits + tokens + per_slot) % 3]};  // 4 bits: every size
          const int64_t E = 5, top_k = 3, n = 40, k = 4 * q.group_size;
          const DType idt = per_slot ? DType::u32 : DType::i32;
          SCOPED_TRACE(::testing::Message()
                       << "bits=" << bits << " " << name(dt) << " per_slot=" << per_slot << " T=" << tokens);
          // Scales in x's 16-bit type take the packed fma route; bf16 ones with f16 x do not.
          const DType sdt = dt == DType::f32 || tokens == 6 ? DType::bf16 : dt;
          QMatrix w = random_qmatrix(s, rng(), E, n, k, q, sdt);
          auto x = per_slot ? random_array(s, rng(), {tokens, top_k, k}, dt) : random_array(s, rng(), {tokens, k}, dt);
          std::vector<double> idv;
          for (int64_t i = 0; i < tokens * top_k; ++i) idv.push_back(double((i * 7 + i / top_k) % E));
          Array ids = from_values(s, idv, {tokens, top_k}, idt);
          Array out = poisoned(s, {tokens, top_k, n}, dt);
          quantized_matmul_id(s, x, w.packed, w.scales, w.biases, ids, q, out);
          const auto got = host_values(s, out);
          std::vector<int64_t> er, xr;
          for (int64_t u = 0; u < tokens * top_k; ++u) {
            er.push_back(int64_t(idv[size_t(u)]));
            xr.push_back(per_slot ? u : u / top_k);
          }
          MLXN_EXPECT_CLOSE(got, ref_matmul(x.values, tokens * top_k, w, er, xr), mm_tol(dt));
          // Each slot against quantized_matmul on its expert alone.
          for (int64_t u = 0; u < tokens * top_k; u += 4) {
            const int64_t ex = er[size_t(u)];
            Tensor xrow = per_slot ? x.tensor().select(0, u / top_k).slice(0, u % top_k, u % top_k + 1)
                                   : x.tensor().slice(0, u / top_k, u / top_k + 1);
            Array one = poisoned(s, {1, n}, dt);
            quantized_matmul(s, xrow, w.packed.tensor().select(0, ex), w.scales.tensor().select(0, ex),
                             w.biases.tensor().select(0, ex), q, one);
            const auto alone = host_values(s, one);
            const std::vector<double> slot(got.begin() + u * n, got.begin() + (u + 1) * n);
            MLXN_EXPECT_CLOSE(slot, alone, dt == DType::f32 ? 1e-6 : tolerance(dt));
          }
        }
}

TEST_P(QuantMlxTest, OutOfRangeIds) {
  Session& s = session();
  const MlxQuant q{4, 64};
  QMatrix w = random_qmatrix(s, rng(), 3, 16, 128, q, DType::f16);
  auto x = random_array(s, rng(), {2, 128}, DType::bf16);
  Array ids = from_values(s, {0, 7, 2, -1}, {2, 2}, DType::i32);
  Array out = poisoned(s, {2, 2, 16}, DType::bf16);
  QMatrix table = random_qmatrix(s, rng(), 1, 10, 64, q, DType::bf16);
  Array tids = from_values(s, {3, 10, 9}, {3}, DType::u32);
  Array emb = poisoned(s, {3, 64}, DType::f32);
  if (device().is_cpu()) {
    MLXN_EXPECT_RAISES(InvalidArgument, "quantized_matmul_id",
                       quantized_matmul_id(s, x, w.packed, w.scales, w.biases, ids, q, out));
    MLXN_EXPECT_RAISES(InvalidArgument, "quantized_embedding",
                       quantized_embedding(s, table.packed, table.scales, table.biases, q, tids, emb));
    return;
  }
  // CUDA: rows selected by a bad id are zeros, the others are computed.
  quantized_matmul_id(s, x, w.packed, w.scales, w.biases, ids, q, out);
  const auto got = host_values(s, out);
  std::vector<int64_t> er{0, 0, 2, 0}, xr{0, 0, 1, 1};
  const auto ref = ref_matmul(x.values, 4, w, er, xr);
  for (int64_t u : {1, 3})
    for (int64_t n = 0; n < 16; ++n) ASSERT_EQ(got[size_t(u * 16 + n)], 0.0);
  for (int64_t u : {0, 2}) {
    MLXN_EXPECT_CLOSE(std::vector<double>(got.begin() + u * 16, got.begin() + (u + 1) * 16),
                      std::vector<double>(ref.begin() + u * 16, ref.begin() + (u + 1) * 16), mm_tol(DType::bf16));
  }
  quantized_embedding(s, table.packed, table.scales, table.biases, q, tids, emb);
  const auto ev = host_values(s, emb);
  for (int64_t d = 0; d < 64; ++d) {
    ASSERT_EQ(ev[size_t(d)], table.mlx(0, 3, d));
    ASSERT_EQ(ev[size_t(64 + d)], 0.0);
    ASSERT_EQ(ev[size_t(128 + d)], table.mlx(0, 9, d));
  }
}

// Prefill-sized routing (more routed rows than the mat-vec takes; CUDA groups them by expert
// and runs one GEMM per expert): rows per expert from ~10 to ~200 (each tile height), experts
// left without rows, N past a whole tile, K past several scale windows and K ending mid k-step
// (CUDA's grouped loader, quant_mlx_expert_tiles.cuh), rows of 16-bit scales that do not start
// on 4-byte boundaries (which CUDA leaves to the mat-vec), and on CUDA ids outside [0, E)
// (their rows zeros).
TEST_P(QuantMlxTest, MatmulIdManyTokensPerExpert) {
  Session& s = session();
  struct Case {
    int bits, gs;
    int64_t tokens, experts;
    DType x, scales, ids;
    int64_t n = 136, k = 0;  // k = 0: 2 groups + 128 columns
  };
  for (const Case c : {Case{4, 64, 40, 8, DType::bf16, DType::bf16, DType::i32},
                       Case{3, 32, 100, 4, DType::f16, DType::f32, DType::u32, 136, 544},
                       Case{8, 128, 400, 4, DType::bf16, DType::f16, DType::i32, 136, 512},
                       Case{4, 64, 90, 4, DType::bf16, DType::bf16, DType::i32, 136, 1152},
                       Case{6, 32, 60, 3, DType::f16, DType::f16, DType::u32, 72, 2112},
                       Case{2, 64, 70, 6, DType::f32, DType::bf16, DType::u32},
                       Case{4, 64, 120, 5, DType::bf16, DType::bf16, DType::i32, 137, 192}}) {
    const MlxQuant q{c.bits, c.gs};
    const int64_t top_k = 2, n = c.n, k = c.k ? c.k : 2 * c.gs + 128, pairs = c.tokens * top_k;
    SCOPED_TRACE(::testing::Message() << "bits=" << c.bits << " T=" << c.tokens << " E=" << c.experts << " x "
                                      << name(c.x));
    QMatrix w = random_qmatrix(s, rng(), c.experts, n, k, q, c.scales);
    auto x = random_array(s, rng(), {c.tokens, k}, c.x);
    // Experts 1 and E - 1 get no rows; on CUDA every 9th slot names an expert that does not exist.
    const bool bad_ids = !device().is_cpu();
    std::vector<double> idv;
    for (int64_t u = 0; u < pairs; ++u) {
      int64_t e = int64_t(rng()() % uint64_t(c.experts - 2));
      e = e >= 1 ? e + 1 : e;
      if (bad_ids && u % 9 == 4) e = c.ids == DType::i32 && u % 2 ? -1 : c.experts + 3;
      idv.push_back(double(e));
    }
    Array ids = from_values(s, idv, {c.tokens, top_k}, c.ids);
    Array out = poisoned(s, {c.tokens, top_k, n}, c.x);
    quantized_matmul_id(s, x, w.packed, w.scales, w.biases, ids, q, out);
    const auto got = host_values(s, out);
    std::vector<int64_t> er, xr;
    for (int64_t u = 0; u < pairs; ++u) {
      const int64_t e = int64_t(idv[size_t(u)]);
      er.push_back(e >= 0 && e < c.experts ? e : 0);
      xr.push_back(u / top_k);
    }
    auto ref = ref_matmul(x.values, pairs, w, er, xr);
    for (int64_t u = 0; u < pairs; ++u)
      if (er[size_t(u)] != int64_t(idv[size_t(u)])) std::fill_n(ref.begin() + u * n, n, 0.0);
    MLXN_EXPECT_CLOSE(got, ref, mm_tol(c.x));
  }
}

// Routed experts with f32 scales and biases (the tests above use 16-bit ones): every width and
// group size, every x type, x shared by a token's slots or one row per slot, against float64
// and each slot against quantized_matmul on its expert alone.
TEST_P(QuantMlxTest, MatmulIdF32Scales) {
  Session& s = session();
  for (int bits : kBits)
    for (DType dt : float_dtypes())
      for (bool per_slot : {false, true})
        for (int64_t tokens : {int64_t(1), int64_t(5), int64_t(33)}) {
          const MlxQuant q{bits, kGroups[size_t(bits + tokens + per_slot) % 3]};
          const int64_t E = 4, top_k = 2, n = 24, k = 3 * q.group_size;
          SCOPED_TRACE(::testing::Message() << "bits=" << bits << " gs=" << q.group_size << " x " << name(dt)
                                            << " per_slot=" << per_slot << " T=" << tokens);
          QMatrix w = random_qmatrix(s, rng(), E, n, k, q, DType::f32);
          auto x = per_slot ? random_array(s, rng(), {tokens, top_k, k}, dt) : random_array(s, rng(), {tokens, k}, dt);
          std::vector<double> idv;
          for (int64_t i = 0; i < tokens * top_k; ++i) idv.push_back(double(rng()() % uint64_t(E)));
          Array ids = from_values(s, idv, {tokens, top_k}, per_slot ? DType::u32 : DType::i32);
          Array out = poisoned(s, {tokens, top_k, n}, dt);
          quantized_matmul_id(s, x, w.packed, w.scales, w.biases, ids, q, out);
          const auto got = host_values(s, out);
          std::vector<int64_t> er, xr;
          for (int64_t u = 0; u < tokens * top_k; ++u) {
            er.push_back(int64_t(idv[size_t(u)]));
            xr.push_back(per_slot ? u : u / top_k);
          }
          MLXN_EXPECT_CLOSE(got, ref_matmul(x.values, tokens * top_k, w, er, xr), mm_tol(dt));
          for (int64_t u = 0; u < tokens * top_k; u += 3) {
            const int64_t ex = er[size_t(u)];
            Tensor xrow = per_slot ? x.tensor().select(0, u / top_k).slice(0, u % top_k, u % top_k + 1)
                                   : x.tensor().slice(0, u / top_k, u / top_k + 1);
            Array one = poisoned(s, {1, n}, dt);
            quantized_matmul(s, xrow, w.packed.tensor().select(0, ex), w.scales.tensor().select(0, ex),
                             w.biases.tensor().select(0, ex), q, one);
            const std::vector<double> slot(got.begin() + u * n, got.begin() + (u + 1) * n);
            MLXN_EXPECT_CLOSE(slot, host_values(s, one), dt == DType::f32 ? 1e-6 : tolerance(dt));
          }
        }
}

// ---- embedding -----------------------------------------------------------------------------

TEST_P(QuantMlxTest, EmbeddingEveryFormat) {
  Session& s = session();
  for (int bits : kBits)
    for (int gs : kGroups) {
      const MlxQuant q{bits, gs};
      const DType sdt = float_dtypes()[size_t(bits + gs) % 3];
      const DType odt = float_dtypes()[size_t(bits + gs / 32) % 3];
      SCOPED_TRACE(::testing::Message() << "bits=" << bits << " gs=" << gs << " scales " << name(sdt) << " out "
                                        << name(odt));
      const int64_t V = 11, D = 2 * gs;
      QMatrix t = random_qmatrix(s, rng(), 1, V, D, q, sdt);
      std::vector<double> idv{3, 0, 10, 3, 7};
      Array ids = from_values(s, idv, {5}, bits % 2 ? DType::u32 : DType::i32);
      for (float scale : {1.f, 2.5f}) {
        Array out = poisoned(s, {5, D}, odt);
        quantized_embedding(s, t.packed, t.scales, t.biases, q, ids, out, scale);
        const auto got = host_values(s, out);
        for (size_t r = 0; r < idv.size(); ++r)
          for (int64_t d = 0; d < D; ++d) {
            const double want = round_to(odt, double(float(t.mlx(0, int64_t(idv[r]), d)) * scale));
            ASSERT_EQ(got[r * size_t(D) + size_t(d)], want) << "row " << r << " col " << d;
          }
      }
    }
}

// ---- empty and bad inputs ------------------------------------------------------------------

TEST_P(QuantMlxTest, EmptyIsANoOp) {
  Session& s = session();
  const MlxQuant q{4, 64};
  QMatrix w = random_qmatrix(s, rng(), 1, 8, 128, q, DType::bf16);
  Array x = Array::empty({0, 128}, DType::bf16, device());
  Array out = Array::empty({0, 8}, DType::bf16, device());
  EXPECT_NO_THROW(quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out));
  Array ids = Array::empty({0}, DType::i32, device());
  Array emb = Array::empty({0, 128}, DType::f32, device());
  EXPECT_NO_THROW(quantized_embedding(s, w.packed, w.scales, w.biases, q, ids, emb));
}

TEST_P(QuantMlxTest, BadInputsRaise) {
  Session& s = session();
  const MlxQuant q{4, 64};
  QMatrix w = random_qmatrix(s, rng(), 1, 8, 128, q, DType::bf16);
  auto x = random_array(s, rng(), {2, 128}, DType::bf16);
  Array out = poisoned(s, {2, 8}, DType::bf16);
  const char* mm = "quantized_matmul";
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, w.scales, w.biases, {7, 64}, out));
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, w.scales, w.biases, {4, 16}, out));
  // packed read with the wrong bits: K changes and no longer matches x
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, w.scales, w.biases, {8, 64}, out));
  Array out_f32 = poisoned(s, {2, 8}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out_f32));
  Array out_shape = poisoned(s, {2, 9}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, w.scales, w.biases, q, out_shape));
  Array b16 = poisoned(s, {8, 2}, DType::f16);
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, w.scales, b16, q, out));
  Array s_shape = poisoned(s, {8, 3}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, w.packed, s_shape, w.biases, q, out));
  Array p_i32 = Array::empty({8, 16}, DType::i32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x, p_i32, w.scales, w.biases, q, out));
  auto x_k = random_array(s, rng(), {2, 96}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, x_k, w.packed, w.scales, w.biases, q, out));
  Array xi = Array::empty({2, 128}, DType::i32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, xi, w.packed, w.scales, w.biases, q, out));
  // a transposed (non-contiguous) packed matrix
  MLXN_EXPECT_RAISES(InvalidArgument, mm,
                     quantized_matmul(s, x, w.packed.tensor().transpose(0, 1), w.scales, w.biases, q, out));
  // out overlapping x
  auto xo = random_array(s, rng(), {2, 128}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, mm,
                     quantized_matmul(s, xo, w.packed, w.scales, w.biases, q, xo.tensor().slice(1, 0, 8)));

  // quantize: K not a multiple of the group, outputs of the wrong shape or dtype
  auto wq = random_array(s, rng(), {8, 96}, DType::f32);
  Array pk = Array::empty({8, 12}, DType::u32, device());
  Array sc = poisoned(s, {8, 1}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "quantize", quantize(s, wq, q, pk, sc, sc));
  auto wq2 = random_array(s, rng(), {8, 128}, DType::f32);
  Array sc2 = poisoned(s, {8, 2}, DType::f32), bi2 = poisoned(s, {8, 2}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "quantize", quantize(s, wq2, q, pk, sc2, bi2));  // packed [8, 12]
  Array pk2 = Array::empty({8, 16}, DType::u32, device());
  Array bi_f16 = poisoned(s, {8, 2}, DType::f16);
  MLXN_EXPECT_RAISES(InvalidArgument, "quantize", quantize(s, wq2, q, pk2, sc2, bi_f16));
  MLXN_EXPECT_RAISES(InvalidArgument, "quantize", quantize(s, wq2, q, pk2, sc2, sc2));  // scales is biases

  // dequantize: out of the wrong shape, integer out
  Array dq_bad = poisoned(s, {8, 64}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "dequantize", dequantize(s, w.packed, w.scales, w.biases, q, dq_bad));
  Array dq_int = Array::empty({8, 128}, DType::i32, device());
  MLXN_EXPECT_RAISES(InvalidArgument, "dequantize", dequantize(s, w.packed, w.scales, w.biases, q, dq_int));

  // matmul_id: ids dtype and shape, packed without an expert dim, out shape
  QMatrix we = random_qmatrix(s, rng(), 2, 8, 128, q, DType::bf16);
  Array ids = from_values(s, {0, 1, 1, 0}, {2, 2}, DType::i32);
  Array ids_f = from_values(s, {0, 1, 1, 0}, {2, 2}, DType::f32);
  Array ids_shape = from_values(s, {0, 1, 1}, {1, 3}, DType::i32);
  Array oid = poisoned(s, {2, 2, 8}, DType::bf16);
  const char* mid = "quantized_matmul_id";
  MLXN_EXPECT_RAISES(InvalidArgument, mid, quantized_matmul_id(s, x, we.packed, we.scales, we.biases, ids_f, q, oid));
  MLXN_EXPECT_RAISES(InvalidArgument, mid,
                     quantized_matmul_id(s, x, we.packed, we.scales, we.biases, ids_shape, q, oid));
  MLXN_EXPECT_RAISES(InvalidArgument, mid, quantized_matmul_id(s, x, w.packed, w.scales, w.biases, ids, q, oid));
  Array oid_bad = poisoned(s, {2, 8}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, mid, quantized_matmul_id(s, x, we.packed, we.scales, we.biases, ids, q, oid_bad));

  // embedding: ids of the wrong rank, out width
  Array emb_ids = from_values(s, {0, 1}, {1, 2}, DType::i32);
  Array emb = poisoned(s, {2, 128}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "quantized_embedding",
                     quantized_embedding(s, w.packed, w.scales, w.biases, q, emb_ids, emb));
  Array emb_ids1 = from_values(s, {0, 1}, {2}, DType::i32);
  Array emb_w = poisoned(s, {2, 100}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "quantized_embedding",
                     quantized_embedding(s, w.packed, w.scales, w.biases, q, emb_ids1, emb_w));
  MLXN_EXPECT_RAISES(InvalidArgument, "quantized_embedding",
                     quantized_embedding(s, w.packed, w.scales, w.biases, q, emb_ids1, emb, NAN));

  // a tensor on another device
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({2, 128}, DType::bf16, other);
    MLXN_EXPECT_RAISES(InvalidArgument, mm, quantized_matmul(s, elsewhere, w.packed, w.scales, w.biases, q, out));
  }
}

MLXN_BACKEND_TESTS(QuantMlxTest);

}  // namespace
}  // namespace mlxn::test
