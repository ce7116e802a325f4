// GGUF quant family: dequantization against the gguf package's own values (fixtures written
// by scripts/gguf_quant_fixtures.py), matmul / expert-routed matmul / embedding against
// float64 references computed from the dequantized weights.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "mlxn/ops/norm.h"
#include "mlxn/ops/quant_gguf.h"
#include "ops/quant_gguf_args.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

const std::vector<DType>& block_types() {
  static const std::vector<DType> v{DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                                    DType::q2_k, DType::q3_k, DType::q4_k, DType::q5_k, DType::q6_k};
  return v;
}

// Random valid blocks: random bytes, scale fields set to finite values of either sign sized so
// that the dequantized weights are O(1).
std::vector<uint8_t> random_blocks(std::mt19937_64& rng, DType t, int64_t rows, int64_t k) {
  const auto& tr = traits(t);
  const int64_t nblocks = rows * k / tr.block_elems;
  std::vector<uint8_t> bytes(static_cast<size_t>(nblocks * tr.block_bytes));
  for (auto& b : bytes) b = uint8_t(rng() & 0xff);
  const bool kquant = tr.block_elems == 256;
  // Q6_K's int8 scales times its codes reach 128 * 32: a tenth of the other K-quants' d keeps
  // its weights as large as theirs (and f16 outputs of the stress rows' outlier finite).
  const double kscale = t == DType::q6_k ? 0.1 : 1.0;
  std::uniform_real_distribution<double> mag(kquant ? 1e-3 * kscale : 0.02, kquant ? 2e-2 * kscale : 0.15);
  for (int64_t b = 0; b < nblocks; ++b)
    for (int off : detail::gguf_f16_scale_offsets(t)) {
      const double v = mag(rng) * ((rng() & 3) == 0 ? -1.0 : 1.0);
      const uint16_t h = Half(float(v)).bits;
      std::memcpy(bytes.data() + b * tr.block_bytes + off, &h, 2);
    }
  return bytes;
}

Array upload_blocks(Session& s, const std::vector<uint8_t>& bytes, Dims shape, DType t) {
  Array a = s.empty(shape, t);
  EXPECT_EQ(a->nbytes(), bytes.size());
  s.upload(a, bytes.data(), bytes.size());
  return a;
}

// The dequantized weights, computed by the CPU backend (checked bit-exact against gguf-py by
// the fixture test), as the reference operand of the matmul tests.
std::vector<double> dequantized(const std::vector<uint8_t>& bytes, Dims shape, DType t) {
  Session cpu;
  Array w = upload_blocks(cpu, bytes, shape, t);
  Array out = cpu.empty(shape, DType::f32);
  gguf_dequantize(cpu, w, out);
  return host_values(cpu, out);
}

// out[m, n] = sum_k x[m, k] * w[n, k] in float64.
std::vector<double> ref_matmul(const std::vector<double>& x, const std::vector<double>& w, int64_t m, int64_t n,
                               int64_t k) {
  std::vector<double> y(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < k; ++t) s += x[size_t(i * k + t)] * w[size_t(j * k + t)];
      y[size_t(i * n + j)] = s;
    }
  return y;
}

class QuantGgufTest : public BackendTest {
 protected:
  // CUDA multiplies on tensor cores with bf16 operands for f32 inputs (f16 for f16 inputs),
  // the block scales rounded to the operand type first: bf16's tolerance.
  double mm_tol(DType dt) const {
    if (device().is_cuda() && dt == DType::f32) return tolerance(DType::bf16);
    return tolerance(dt);
  }
};

std::string fixture_dir() { return std::string(MLXN_SOURCE_DIR) + "/tests/fixtures/quant_gguf/"; }

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST_P(QuantGgufTest, DequantizeMatchesGgufPyBitExactly) {
  std::ifstream idx(fixture_dir() + "index.json");
  ASSERT_TRUE(idx.good()) << "missing fixtures: run scripts/gguf_quant_fixtures.py";
  const nlohmann::json index = nlohmann::json::parse(idx);
  const int64_t rows = index["shape"][0], cols = index["shape"][1];
  for (DType t : block_types()) {
    const std::string nm(name(t));
    SCOPED_TRACE(nm);
    ASSERT_TRUE(index["types"].contains(nm));
    const auto& e = index["types"][nm];
    ASSERT_EQ(e["block_elems"].get<uint32_t>(), traits(t).block_elems);
    ASSERT_EQ(e["block_bytes"].get<uint32_t>(), traits(t).block_bytes);
    const auto blocks = read_file(fixture_dir() + e["blocks"].get<std::string>());
    const auto ref_bytes = read_file(fixture_dir() + e["reference"].get<std::string>());
    ASSERT_EQ(ref_bytes.size(), size_t(rows * cols * 4));
    std::vector<float> ref(static_cast<size_t>(rows * cols));
    std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());
    Array w = upload_blocks(session(), blocks, {rows, cols}, t);
    Array out = poisoned(session(), {rows, cols}, DType::f32);
    gguf_dequantize(session(), w, out);
    const auto got = host_values(session(), out);
    int64_t mismatches = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const float g = float(got[i]);
      if (std::memcmp(&g, &ref[i], 4) != 0 && mismatches++ < 5)
        ADD_FAILURE() << nm << " element " << i << ": got " << g << ", gguf-py " << ref[i];
    }
    EXPECT_EQ(mismatches, 0);
    // f16 / bf16 outputs are the f32 values rounded once.
    for (DType dt : {DType::f16, DType::bf16}) {
      Array o = poisoned(session(), {rows, cols}, dt);
      gguf_dequantize(session(), w, o);
      const auto v = host_values(session(), o);
      for (size_t i = 0; i < ref.size(); ++i)
        if (v[i] != round_to(dt, double(ref[i]))) {
          ADD_FAILURE() << nm << " " << name(dt) << " element " << i << ": " << v[i];
          break;
        }
    }
  }
}

TEST_P(QuantGgufTest, DequantizeShapesAndStridedOutput) {
  for (DType t : block_types()) {
    SCOPED_TRACE(name(t));
    const int64_t k = traits(t).block_elems * 3;
    const auto bytes = random_blocks(rng(), t, 6, k);
    const auto ref = dequantized(bytes, {6, k}, t);
    Array w = upload_blocks(session(), bytes, {2, 3, k}, t);
    Array out = poisoned(session(), {2, 3, k}, DType::f32);
    gguf_dequantize(session(), w, out);
    MLXN_EXPECT_CLOSE(host_values(session(), out), ref, 0.0);
    // Output rows in a wider buffer: the padding stays untouched.
    Array parent = poisoned(session(), {6, k + 5}, DType::bf16);
    Tensor o = parent.tensor().slice(1, 0, k);
    gguf_dequantize(session(), w.tensor().reshape({6, k}), o);
    MLXN_EXPECT_CLOSE(host_values(session(), o), ref, tolerance(DType::bf16));
    for (double v : host_values(session(), parent.tensor().slice(1, k, k + 5))) ASSERT_TRUE(std::isnan(v));
  }
}

// Values of a float type over most of the f16 exponent range, its subnormals included (f16
// overflow aside): m * 2^e, m in [1, 2), e in [-18, 14], either sign, rounded to `dt`.
std::vector<double> wide_range_values(std::mt19937_64& rng, int64_t count, DType dt) {
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> ex(-18, 14);
  std::vector<double> v(static_cast<size_t>(count));
  for (double& x : v) x = round_to(dt, std::ldexp(mant(rng), ex(rng)) * ((rng() & 1) ? -1.0 : 1.0));
  return v;
}

// GGUF files keep some tensors unquantized (norms, often the embeddings): dequantizing one is
// a conversion, each value rounded once to the output type, for every pair of float types.
// Rows of any width (not whole 32-value units), leading dims, and rows written into a wider
// buffer whose padding stays untouched.
TEST_P(QuantGgufTest, DequantizeFloatTensorsConverts) {
  for (DType wt : float_dtypes())
    for (DType dt : float_dtypes())
      for (int64_t k : {int64_t(1), int64_t(37), int64_t(256)}) {
        SCOPED_TRACE(::testing::Message() << name(wt) << " -> " << name(dt) << " K=" << k);
        const auto wv = wide_range_values(rng(), 6 * k, wt);
        Array w = from_values(session(), wv, {2, 3, k}, wt);
        std::vector<double> want;
        for (double v : wv) want.push_back(round_to(dt, v));
        Array out = poisoned(session(), {2, 3, k}, dt);
        gguf_dequantize(session(), w, out);
        MLXN_EXPECT_CLOSE(host_values(session(), out), want, 0.0);
        Array parent = poisoned(session(), {6, k + 3}, dt);
        Tensor o = parent.tensor().slice(1, 0, k);
        gguf_dequantize(session(), w.tensor().reshape({6, k}), o);
        MLXN_EXPECT_CLOSE(host_values(session(), o), want, 0.0);
        for (double v : host_values(session(), parent.tensor().slice(1, k, k + 3))) ASSERT_TRUE(std::isnan(v));
      }
}

TEST_P(QuantGgufTest, MatmulEveryTypeAgainstFloat64) {
  for (DType t : block_types()) {
    const int64_t be = traits(t).block_elems;
    for (int64_t k : {be, be == 32 ? int64_t(96) : int64_t(512), int64_t(1024)}) {
      const int64_t n = 37;
      const auto bytes = random_blocks(rng(), t, n, k);
      const auto wref = dequantized(bytes, {n, k}, t);
      Array w = upload_blocks(session(), bytes, {n, k}, t);
      for (int64_t m : {1, 3, 8, 33}) {
        for (DType dt : float_dtypes()) {
          if (k == 1024 && dt != DType::bf16) continue;  // wide K: one dtype is enough
          SCOPED_TRACE(::testing::Message() << name(t) << " K=" << k << " M=" << m << " " << name(dt));
          auto x = random_array(session(), rng(), {m, k}, dt);
          Array out = poisoned(session(), {m, n}, dt);
          gguf_matmul(session(), x, w, out);
          MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(x.values, wref, m, n, k), mm_tol(dt));
        }
      }
    }
  }
}

// Decode-sized matmuls over 16-byte aligned weight rows (CUDA: the split-K kernel at M <= 8,
// the persistent kernel at M = 9): N odd (a partial 16-row tile); K spread unevenly over the
// 4 warps of a tile, with idle warps (K = 512 of a K-quant), a partial last stage (q4_1,
// q5_1) and misaligned input rows (the scalar input path).
TEST_P(QuantGgufTest, MatmulDecodeAlignedRows) {
  struct Shape {
    DType t;
    int64_t k;
  };
  std::vector<Shape> shapes;
  for (DType t : block_types()) shapes.push_back({t, 2048});
  shapes.insert(shapes.end(), {{DType::q4_k, 512},
                               {DType::q4_k, 1280},
                               {DType::q4_0, 768},
                               {DType::q4_1, 2176},
                               {DType::q5_1, 2112},
                               {DType::q8_0, 2304},
                               {DType::q6_k, 4096}});
  for (const Shape& sh : shapes) {
    const int64_t n = 37, k = sh.k;
    ASSERT_EQ(detail::gguf_row_bytes(sh.t, k) % 16, 0);
    const auto bytes = random_blocks(rng(), sh.t, n, k);
    const auto wref = dequantized(bytes, {n, k}, sh.t);
    Array w = upload_blocks(session(), bytes, {n, k}, sh.t);
    for (int64_t m : {1, 2, 8, 9})
      for (DType dt : float_dtypes()) {
        if ((m == 2 || m == 9) && dt != DType::bf16) continue;
        SCOPED_TRACE(::testing::Message() << name(sh.t) << " K=" << k << " M=" << m << " " << name(dt));
        auto x = random_array(session(), rng(), {m, k}, dt);
        Array out = poisoned(session(), {m, n}, dt);
        gguf_matmul(session(), x, w, out);
        MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(x.values, wref, m, n, k), mm_tol(dt));
      }
    // Input rows one element apart from 16-byte alignment.
    for (DType dt : float_dtypes()) {
      SCOPED_TRACE(::testing::Message() << name(sh.t) << " K=" << k << " misaligned x " << name(dt));
      const int64_t m = 3;
      auto xp = random_array(session(), rng(), {m, k + 1}, dt);
      Tensor x = xp.tensor().slice(1, 1, k + 1);
      Array out = poisoned(session(), {m, n}, dt);
      gguf_matmul(session(), x, w, out);
      MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(host_values(session(), x), wref, m, n, k), mm_tol(dt));
    }
  }
}

// Rows of bf16/f16 x by a Q4_0, Q4_K, Q5_K or Q6_K weight (CUDA: the integer mat-vecs, x as
// 15-bit fixed point per 64 or 32 values: one row, or 2..8 rows in the batch kernel; Q6_K
// batches whose rows are not whole 16-byte units take the split-K kernel), each row with an
// outlier, a zero group and a tiny group: each output within the fixed point's bound
// (support.h). K from one superblock of 256 (three warps idle) to 18,
// some warps taking one superblock more than others; Q6_K rows of 630, 1050 and 3780 bytes put
// superblocks at every even offset within a 16-byte unit, N = 1, K = 256 ends the weight
// mid-unit, and K = 6144 and 2048 make rows of whole units (CUDA: the kernels copying boxes of
// 16 rows: N = 3 has fewer; the batch kernel's odd warps take superblocks starting mid-word).
TEST_P(QuantGgufTest, MatvecFixedPointX) {
  Session& s = session();
  for (DType t : {DType::q4_0, DType::q4_k, DType::q5_k, DType::q6_k})
    for (DType xdt : {DType::bf16, DType::f16})
      for (auto [n, k] :
           {std::pair<int64_t, int64_t>{1, 256}, {17, 768}, {16, 1280}, {40, 4608}, {24, 6144}, {3, 2048}})
        for (int64_t m : {1, 3, 8}) {
          // (The split-K kernel's bf16 products are held to mm_tol, in MatmulDecodeAlignedRows.)
          if (m > 1 && t == DType::q6_k && k % 2048 != 0) continue;
          SCOPED_TRACE(::testing::Message() << name(t) << " x " << name(xdt) << " M=" << m << " N=" << n << " K=" << k);
          const auto bytes = random_blocks(rng(), t, n, k);
          const auto wref = dequantized(bytes, {n, k}, t);
          Array w = upload_blocks(s, bytes, {n, k}, t);
          const TestArray x = fixed_point_stress_rows(s, rng(), m, k, xdt);
          const std::vector<double>& xv = x.values;
          Array out = poisoned(s, {m, n}, xdt);
          gguf_matmul(s, x, w, out);
          const std::vector<double> got = host_values(s, out);
          for (int64_t r = 0; r < m; ++r) {
            SCOPED_TRACE(::testing::Message() << "row " << r);
            const std::vector<double> xr(xv.begin() + r * k, xv.begin() + (r + 1) * k);
            ASSERT_TRUE(fixed_point_matvec_close(
                std::vector<double>(got.begin() + r * n, got.begin() + (r + 1) * n), ref_matmul(xr, wref, 1, n, k), xr,
                [&](int64_t row, int64_t i) { return wref[size_t(row * k + i)]; }, xdt));
          }
        }
}

// Decode as a model runs it: x written by the kernel just before the matmul (rms_norm, which
// releases its dependents early), a new x each round into the same buffers. On CUDA the Q4_K
// and Q6_K mat-vecs start before that kernel ends (programmatic dependent launch) and must
// still read the new x; q8_0 takes the split-K kernel, for contrast.
TEST_P(QuantGgufTest, MatvecReadsTheXJustWritten) {
  Session& s = session();
  for (DType t : {DType::q4_k, DType::q6_k, DType::q8_0}) {
    SCOPED_TRACE(name(t));
    const int64_t n = 272, k = 1024;
    const auto bytes = random_blocks(rng(), t, n, k);
    const auto wref = dequantized(bytes, {n, k}, t);
    Array w = upload_blocks(s, bytes, {n, k}, t);
    Array x = Array::empty({1, k}, DType::bf16, s.device());
    Array out = poisoned(s, {1, n}, DType::bf16);
    for (int round = 0; round < 4; ++round) {
      auto raw = random_array(s, rng(), {1, k}, DType::bf16);
      rms_norm(s, raw.array, x);
      gguf_matmul(s, x, w, out);
      MLXN_EXPECT_CLOSE(host_values(s, out), ref_matmul(host_values(s, x.tensor()), wref, 1, n, k),
                        mm_tol(DType::bf16));
    }
  }
}

TEST_P(QuantGgufTest, MatmulLargeBatchAndWideRows) {
  // More rows than the mat-vec path takes (the prefill path on CUDA: every block type through
  // its packed half decoder, or exact f32 for f32 x, then the GEMM), and N not a multiple of
  // any tile.
  for (DType t : block_types()) {
    const int64_t n = 67, k = 512;
    const auto bytes = random_blocks(rng(), t, n, k);
    const auto wref = dequantized(bytes, {n, k}, t);
    Array w = upload_blocks(session(), bytes, {n, k}, t);
    for (int64_t m : {65, 130}) {
      for (DType dt : float_dtypes()) {
        SCOPED_TRACE(::testing::Message() << name(t) << " M=" << m << " " << name(dt));
        auto x = random_array(session(), rng(), {m, k}, dt);
        Array out = poisoned(session(), {m, n}, dt);
        gguf_matmul(session(), x, w, out);
        MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(x.values, wref, m, n, k), mm_tol(dt));
      }
    }
  }
}

TEST_P(QuantGgufTest, MatmulFloatWeights) {
  for (DType wt : float_dtypes())
    for (DType dt : float_dtypes())
      for (int64_t k : {int64_t(64), int64_t(100)})
        for (int64_t m : {int64_t(1), int64_t(5), int64_t(70)}) {
          SCOPED_TRACE(::testing::Message() << "w " << name(wt) << " x " << name(dt) << " K=" << k << " M=" << m);
          const int64_t n = 19;
          auto w = random_array(session(), rng(), {n, k}, wt);
          auto x = random_array(session(), rng(), {m, k}, dt);
          Array out = poisoned(session(), {m, n}, dt);
          gguf_matmul(session(), x, w, out);
          const double tol = device().is_cuda()
                                 ? std::max(mm_tol(dt), dt == DType::f16 && wt != DType::f16 ? 4e-3 : 0.0)
                                 : tolerance(dt);
          MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(x.values, w.values, m, n, k), tol);
        }
}

TEST_P(QuantGgufTest, MatmulStridedRows) {
  const DType t = DType::q4_k;
  const int64_t m = 5, n = 33, k = 256;
  const auto bytes = random_blocks(rng(), t, n, k);
  const auto wref = dequantized(bytes, {n, k}, t);
  Array w = upload_blocks(session(), bytes, {n, k}, t);
  for (DType dt : float_dtypes()) {
    SCOPED_TRACE(name(dt));
    auto xp = random_array(session(), rng(), {m, k + 8}, dt);
    Tensor x = xp.tensor().slice(1, 0, k);
    Array op = poisoned(session(), {m, n + 3}, dt);
    Tensor out = op.tensor().slice(1, 0, n);
    gguf_matmul(session(), x, w, out);
    MLXN_EXPECT_CLOSE(host_values(session(), out), ref_matmul(host_values(session(), x), wref, m, n, k), mm_tol(dt));
    for (double v : host_values(session(), op.tensor().slice(1, n, n + 3))) ASSERT_TRUE(std::isnan(v));
  }
}

// Each routed row equals the same row multiplied by its expert alone.
TEST_P(QuantGgufTest, MatmulIdMatchesEachExpertAlone) {
  for (DType t : {DType::q4_0, DType::q5_1, DType::q3_k, DType::q4_k, DType::q6_k, DType::bf16}) {
    // Q4_0 at K % 256 == 0, as its integer mat-vec takes it.
    const int64_t e = 5, n = 21, k = traits(t).block_elems == 256 || t == DType::q4_0 ? 512 : 128;
    std::vector<uint8_t> bytes;
    TestArray wf;
    Array w;
    if (is_quantized(t)) {
      bytes = random_blocks(rng(), t, e * n, k);
      w = upload_blocks(session(), bytes, {e, n, k}, t);
    } else {
      wf = random_array(session(), rng(), {e, n, k}, t);
      w = wf.array;
    }
    for (int64_t tokens : {int64_t(1), int64_t(4), int64_t(45)})
      for (int64_t top_k : {int64_t(1), int64_t(3)})
        for (bool per_slot : {false, true}) {
          {
            if (tokens == 45 && (top_k == 1 || per_slot)) continue;  // many rows per expert: one case
            const DType id_t = per_slot ? DType::u32 : DType::i32;
            const DType dt = tokens == 45 ? DType::f32 : DType::bf16;
            SCOPED_TRACE(::testing::Message() << name(t) << " T=" << tokens << " top_k=" << top_k
                                              << " per_slot=" << per_slot << " " << name(id_t));
            std::vector<double> idv;
            for (int64_t i = 0; i < tokens * top_k; ++i) idv.push_back(double(rng()() % uint64_t(e)));
            Array ids = from_values(session(), idv, {tokens, top_k}, id_t);
            auto x = per_slot ? random_array(session(), rng(), {tokens, top_k, k}, dt)
                              : random_array(session(), rng(), {tokens, k}, dt);
            Array out = poisoned(session(), {tokens, top_k, n}, dt);
            gguf_matmul_id(session(), x, w, ids, out);
            const auto got = host_values(session(), out);
            for (int64_t tk = 0; tk < tokens; ++tk)
              for (int64_t s = 0; s < top_k; ++s) {
                const int64_t ex = int64_t(idv[size_t(tk * top_k + s)]);
                Tensor xr = per_slot ? x.tensor().select(0, tk).slice(0, s, s + 1) : x.tensor().slice(0, tk, tk + 1);
                Array alone = poisoned(session(), {1, n}, dt);
                gguf_matmul(session(), xr, w.tensor().select(0, ex), alone);
                const auto av = host_values(session(), alone);
                const std::vector<double> row(got.begin() + (tk * top_k + s) * n,
                                              got.begin() + (tk * top_k + s + 1) * n);
                // The routed and the plain mat-vec may sum K in different orders (the plain
                // one splits K over 4 warps), so an element may round to the neighbouring
                // value of the output type: up to a unit in its last place, 2^-7 relative for
                // bf16. (On CUDA a decode-sized K-quant call takes the same integer kernel
                // either way, x as the same fixed point: equal.)
                const double tol = dt == DType::f32 ? 1e-6 : 1.0 / 128;
                if (!close(row, av, tol)) {
                  ADD_FAILURE() << "token " << tk << " slot " << s << " expert " << ex << ": "
                                << close(row, av, tol).message();
                  return;
                }
              }
          }
        }
  }
}

TEST_P(QuantGgufTest, MatmulIdAgainstFloat64) {
  const DType t = DType::q4_k;
  const int64_t e = 3, n = 17, k = 256, tokens = 6, top_k = 2;
  const auto bytes = random_blocks(rng(), t, e * n, k);
  const auto wref = dequantized(bytes, {e * n, k}, t);
  Array w = upload_blocks(session(), bytes, {e, n, k}, t);
  std::vector<double> idv{2, 0, 1, 1, 0, 0, 2, 2, 1, 0, 2, 1};
  Array ids = from_values(session(), idv, {tokens, top_k}, DType::i32);
  auto x = random_array(session(), rng(), {tokens, k}, DType::f32);
  Array out = poisoned(session(), {tokens, top_k, n}, DType::f32);
  gguf_matmul_id(session(), x, w, ids, out);
  std::vector<double> ref;
  for (int64_t i = 0; i < tokens * top_k; ++i) {
    const int64_t ex = int64_t(idv[size_t(i)]);
    std::vector<double> xr(x.values.begin() + (i / top_k) * k, x.values.begin() + (i / top_k + 1) * k);
    std::vector<double> we(wref.begin() + ex * n * k, wref.begin() + (ex + 1) * n * k);
    const auto y = ref_matmul(xr, we, 1, n, k);
    ref.insert(ref.end(), y.begin(), y.end());
  }
  MLXN_EXPECT_CLOSE(host_values(session(), out), ref, mm_tol(DType::f32));
}

// Every weight type routed (block types and float experts), x of every float type, shared by
// a token's slots or one row per slot: against float64 with each slot's expert, and at a
// decode size each slot against the plain matmul of its expert alone. (At T = 11 the CUDA
// routed call of a Q4_0/Q4_K/Q5_K/Q6_K weight leaves the integer kernel the plain M = 1 call
// takes, so only the float64 check applies there.)
TEST_P(QuantGgufTest, MatmulIdEveryWeightTypeAndDtype) {
  std::vector<DType> types = block_types();
  types.insert(types.end(), float_dtypes().begin(), float_dtypes().end());
  const int64_t e = 6, n = 24, k = 256, top_k = 3;
  for (DType t : types) {
    std::vector<double> wref;
    Array w;
    if (is_quantized(t)) {
      const auto bytes = random_blocks(rng(), t, e * n, k);
      wref = dequantized(bytes, {e * n, k}, t);
      w = upload_blocks(session(), bytes, {e, n, k}, t);
    } else {
      auto wf = random_array(session(), rng(), {e, n, k}, t);
      wref = wf.values;
      w = wf.array;
    }
    for (DType dt : float_dtypes())
      for (bool per_slot : {false, true})
        for (int64_t tokens : {int64_t(2), int64_t(11)}) {
          SCOPED_TRACE(::testing::Message()
                       << name(t) << " x " << name(dt) << " T=" << tokens << " per_slot=" << per_slot);
          const int64_t pairs = tokens * top_k;
          std::vector<double> idv;
          for (int64_t i = 0; i < pairs; ++i) idv.push_back(double(rng()() % uint64_t(e)));
          Array ids = from_values(session(), idv, {tokens, top_k}, per_slot ? DType::u32 : DType::i32);
          auto x = per_slot ? random_array(session(), rng(), {tokens, top_k, k}, dt)
                            : random_array(session(), rng(), {tokens, k}, dt);
          Array out = poisoned(session(), {tokens, top_k, n}, dt);
          gguf_matmul_id(session(), x, w, ids, out);
          const auto got = host_values(session(), out);
          std::vector<double> ref;
          for (int64_t p = 0; p < pairs; ++p) {
            const int64_t ex = int64_t(idv[size_t(p)]), xr = per_slot ? p : p / top_k;
            const std::vector<double> xv(x.values.begin() + xr * k, x.values.begin() + (xr + 1) * k);
            const std::vector<double> we(wref.begin() + ex * n * k, wref.begin() + (ex + 1) * n * k);
            const auto y = ref_matmul(xv, we, 1, n, k);
            ref.insert(ref.end(), y.begin(), y.end());
          }
          // Float weights: MatmulFloatWeights' bound (f16 x rounds f32/bf16 weights to f16 on CUDA).
          const double tol = device().is_cuda() && !is_quantized(t)
                                 ? std::max(mm_tol(dt), dt == DType::f16 && t != DType::f16 ? 4e-3 : 0.0)
                                 : mm_tol(dt);
          MLXN_EXPECT_CLOSE(got, ref, tol);
          if (tokens > 2) continue;
          // The two calls may sum K in different orders: an element may round to the
          // neighbouring value of the output type (a unit in its last place: 2^-7 relative
          // for bf16, 2^-10 for f16).
          const double alone_tol = dt == DType::f32 ? 1e-6 : dt == DType::bf16 ? 1.0 / 128 : 1.0 / 1024;
          for (int64_t p = 0; p < pairs; ++p) {
            const int64_t ex = int64_t(idv[size_t(p)]);
            Tensor xr = per_slot ? x.tensor().select(0, p / top_k).slice(0, p % top_k, p % top_k + 1)
                                 : x.tensor().slice(0, p / top_k, p / top_k + 1);
            Array alone = poisoned(session(), {1, n}, dt);
            gguf_matmul(session(), xr, w.tensor().select(0, ex), alone);
            const std::vector<double> row(got.begin() + p * n, got.begin() + (p + 1) * n);
            EXPECT_TRUE(close(row, host_values(session(), alone), alone_tol)) << "slot " << p << " expert " << ex;
          }
        }
  }
}

// Prefill-sized routing by Q4_K and Q5_K experts (CUDA groups the rows by expert and runs one
// GEMM per expert, each superblock decoded in shared memory): rows per expert from ~15 to
// ~150 (each tile height), experts left without rows, N past a whole tile and odd, K of two and
// three superblocks (both superblock buffers, then the first again), x shared by a token's slots
// or one row per slot, and on CUDA ids outside [0, E) (their rows zeros). Against float64.
TEST_P(QuantGgufTest, MatmulIdManyTokensPerExpert) {
  struct Case {
    DType w, x;
    int64_t tokens, experts, n, k;
    bool per_slot;
  };
  for (const Case c :
       {Case{DType::q4_k, DType::bf16, 60, 4, 136, 512, false}, Case{DType::q5_k, DType::f16, 45, 5, 137, 768, true},
        Case{DType::q4_k, DType::f16, 300, 4, 72, 256, false}, Case{DType::q5_k, DType::bf16, 60, 8, 40, 512, false}}) {
    const int64_t top_k = 2, pairs = c.tokens * top_k;
    SCOPED_TRACE(::testing::Message() << name(c.w) << " x " << name(c.x) << " T=" << c.tokens << " E=" << c.experts
                                      << " N=" << c.n << " K=" << c.k);
    const auto bytes = random_blocks(rng(), c.w, c.experts * c.n, c.k);
    const auto wref = dequantized(bytes, {c.experts * c.n, c.k}, c.w);
    Array w = upload_blocks(session(), bytes, {c.experts, c.n, c.k}, c.w);
    // Experts 1 and E - 1 get no rows; on CUDA every 9th slot names an expert that does not exist.
    const bool bad_ids = device().is_cuda();
    std::vector<double> idv;
    for (int64_t p = 0; p < pairs; ++p) {
      int64_t ex = int64_t(rng()() % uint64_t(c.experts - 2));
      ex = ex >= 1 ? ex + 1 : ex;
      if (bad_ids && p % 9 == 4) ex = p % 2 ? -1 : c.experts + 3;
      idv.push_back(double(ex));
    }
    Array ids = from_values(session(), idv, {c.tokens, top_k}, DType::i32);
    auto x = c.per_slot ? random_array(session(), rng(), {c.tokens, top_k, c.k}, c.x)
                        : random_array(session(), rng(), {c.tokens, c.k}, c.x);
    Array out = poisoned(session(), {c.tokens, top_k, c.n}, c.x);
    gguf_matmul_id(session(), x, w, ids, out);
    std::vector<double> ref;
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t ex = int64_t(idv[size_t(p)]), xr = c.per_slot ? p : p / top_k;
      if (ex < 0 || ex >= c.experts) {
        ref.insert(ref.end(), size_t(c.n), 0.0);
        continue;
      }
      const std::vector<double> xv(x.values.begin() + xr * c.k, x.values.begin() + (xr + 1) * c.k);
      const std::vector<double> we(wref.begin() + ex * c.n * c.k, wref.begin() + (ex + 1) * c.n * c.k);
      const auto y = ref_matmul(xv, we, 1, c.n, c.k);
      ref.insert(ref.end(), y.begin(), y.end());
    }
    MLXN_EXPECT_CLOSE(host_values(session(), out), ref, mm_tol(c.x));
  }
}

// One routed token by Q4_0, Q4_K, Q5_K or Q6_K experts (CUDA: the integer mat-vecs, one slot per
// unit, no grouping), x shared by the slots or one row per slot: each slot within the fixed
// point's bound against float64 with its own expert, a repeated expert, and zeros for an id out
// of range.
TEST_P(QuantGgufTest, MatmulIdIntegerOneToken) {
  for (DType t : {DType::q4_0, DType::q4_k, DType::q5_k, DType::q6_k}) {
    SCOPED_TRACE(name(t));
    Session& s = session();
    const int64_t e = 9, n = 40, k = 768, top_k = 8;
    const auto bytes = random_blocks(rng(), t, e * n, k);
    const auto wref = dequantized(bytes, {e * n, k}, t);
    Array w = upload_blocks(s, bytes, {e, n, k}, t);
    // 9: out of range, which CUDA answers with zeros and the CPU refuses (OutOfRangeIds).
    const std::vector<double> idv{3, 0, 8, 3, device().is_cuda() ? 9.0 : 2.0, 5, 1, 7};
    for (DType xdt : {DType::bf16, DType::f16})
      for (bool per_slot : {false, true}) {
        SCOPED_TRACE(::testing::Message() << name(xdt) << " per_slot=" << per_slot);
        Array ids = from_values(s, idv, {1, top_k}, per_slot ? DType::u32 : DType::i32);
        const int64_t x_rows = per_slot ? top_k : 1;
        std::vector<double> xv = random_array(s, rng(), {x_rows, k}, xdt).values;
        std::vector<double> row0(xv.begin(), xv.begin() + k);
        make_fixed_point_stress_row(row0);
        std::copy(row0.begin(), row0.end(), xv.begin());
        Array x = from_values(s, xv, per_slot ? Dims{1, top_k, k} : Dims{1, k}, xdt);
        xv = host_values(s, x.tensor());
        Array out = poisoned(s, {1, top_k, n}, xdt);
        gguf_matmul_id(s, x, w, ids, out);
        const auto got = host_values(s, out);
        for (int64_t slot = 0; slot < top_k; ++slot) {
          const std::vector<double> gs(got.begin() + slot * n, got.begin() + (slot + 1) * n);
          const int64_t ex = int64_t(idv[size_t(slot)]);
          if (ex >= e) {
            for (double v : gs) EXPECT_EQ(v, 0.0) << "slot " << slot;
            continue;
          }
          const int64_t xr = per_slot ? slot : 0;
          const std::vector<double> xs(xv.begin() + xr * k, xv.begin() + (xr + 1) * k);
          const std::vector<double> we(wref.begin() + ex * n * k, wref.begin() + (ex + 1) * n * k);
          EXPECT_TRUE(fixed_point_matvec_close(
              gs, ref_matmul(xs, we, 1, n, k), xs, [&](int64_t r, int64_t i) { return we[size_t(r * k + i)]; }, xdt))
              << "slot " << slot;
        }
      }
  }
}

TEST_P(QuantGgufTest, OutOfRangeIds) {
  const DType t = DType::q8_0;
  const int64_t e = 2, n = 9, k = 64;
  const auto bytes = random_blocks(rng(), t, e * n, k);
  Array w = upload_blocks(session(), bytes, {e, n, k}, t);
  Array ids = from_values(session(), {1, 7, 0, -1}, {2, 2}, DType::i32);
  auto x = random_array(session(), rng(), {2, k}, DType::f32);
  Array out = poisoned(session(), {2, 2, n}, DType::f32);
  Array table = upload_blocks(session(), random_blocks(rng(), t, 4, k), {4, k}, t);
  Array eids = from_values(session(), {3, 4, 0}, {3}, DType::u32);
  Array emb = poisoned(session(), {3, k}, DType::f32);
  if (device().is_cpu()) {
    MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul_id", gguf_matmul_id(session(), x, w, ids, out));
    MLXN_EXPECT_RAISES(InvalidArgument, "gguf_embedding", gguf_embedding(session(), table, eids, emb));
    return;
  }
  // CUDA: rows selected by a bad id are zero, the others are right.
  gguf_matmul_id(session(), x, w, ids, out);
  const auto got = host_values(session(), out);
  for (int64_t slot : {1, 3})
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(got[size_t(slot * n + j)], 0.0);
  Array alone = poisoned(session(), {1, n}, DType::f32);
  gguf_matmul(session(), x.tensor().slice(0, 0, 1), w.tensor().select(0, 1), alone);
  const auto av = host_values(session(), alone);
  EXPECT_TRUE(close(std::vector<double>(got.begin(), got.begin() + n), av, 1e-6));
  gguf_embedding(session(), table, eids, emb);
  const auto ev = host_values(session(), emb);
  for (int64_t j = 0; j < k; ++j) EXPECT_EQ(ev[size_t(k + j)], 0.0);
}

TEST_P(QuantGgufTest, EmbeddingEveryType) {
  for (DType t : block_types()) {
    SCOPED_TRACE(name(t));
    const int64_t v = 7, d = traits(t).block_elems * 2;
    const auto bytes = random_blocks(rng(), t, v, d);
    const auto ref = dequantized(bytes, {v, d}, t);
    Array table = upload_blocks(session(), bytes, {v, d}, t);
    const std::vector<double> idv{3, 0, 6, 3, 1, 5};
    for (DType id_t : {DType::i32, DType::u32})
      for (DType dt : float_dtypes())
        for (float scale : {1.f, 0.5f, 3.f}) {
          Array ids = from_values(session(), idv, {2, 3}, id_t);
          Array out = poisoned(session(), {2, 3, d}, dt);
          gguf_embedding(session(), table, ids, out, scale);
          std::vector<double> want;
          for (double id : idv)
            for (int64_t j = 0; j < d; ++j)
              want.push_back(round_to(dt, double(float(ref[size_t(int64_t(id) * d + j)]) * scale)));
          MLXN_EXPECT_CLOSE(host_values(session(), out), want, 0.0);
        }
  }
}

// Unquantized tables (tied embeddings stored as f32/f16/bf16): rows copied, each value times
// scale in f32, rounded once to the output type.
TEST_P(QuantGgufTest, EmbeddingFloatTables) {
  const std::vector<double> idv{4, 0, 6, 4, 1, 5, 2};
  for (DType t : float_dtypes())
    for (int64_t d : {int64_t(32), int64_t(96)}) {
      const int64_t v = 7;
      auto table = random_array(session(), rng(), {v, d}, t, -4.0, 4.0);
      for (DType id_t : {DType::i32, DType::u32})
        for (DType dt : float_dtypes())
          for (float scale : {1.f, 0.5f, 3.f}) {
            SCOPED_TRACE(::testing::Message() << "table " << name(t) << " D=" << d << " " << name(id_t) << " -> "
                                              << name(dt) << " scale=" << scale);
            Array ids = from_values(session(), idv, {int64_t(idv.size())}, id_t);
            Array out = poisoned(session(), {int64_t(idv.size()), d}, dt);
            gguf_embedding(session(), table, ids, out, scale);
            std::vector<double> want;
            for (double id : idv)
              for (int64_t j = 0; j < d; ++j)
                want.push_back(round_to(dt, double(float(table.values[size_t(int64_t(id) * d + j)]) * scale)));
            MLXN_EXPECT_CLOSE(host_values(session(), out), want, 0.0);
          }
    }
}

TEST_P(QuantGgufTest, EmptyInputsAreNoOps) {
  const DType t = DType::q4_0;
  Array w = upload_blocks(session(), random_blocks(rng(), t, 4, 64), {4, 64}, t);
  Array x = session().empty({0, 64}, DType::f32);
  Array out = session().empty({0, 4}, DType::f32);
  gguf_matmul(session(), x, w, out);
  Array ids = session().empty({0, 2}, DType::i32);
  Array we = upload_blocks(session(), random_blocks(rng(), t, 8, 64), {2, 4, 64}, t);
  Array out3 = session().empty({0, 2, 4}, DType::f32);
  gguf_matmul_id(session(), x, we, ids, out3);
  Array eids = session().empty({0}, DType::i32);
  Array eo = session().empty({0, 64}, DType::f32);
  gguf_embedding(session(), w, eids, eo);
  session().synchronize();
}

TEST_P(QuantGgufTest, BadInputs) {
  Session& s = session();
  const DType t = DType::q4_k;
  Array w = upload_blocks(s, random_blocks(rng(), t, 4, 256), {4, 256}, t);
  Array x = s.empty({2, 256}, DType::f32);
  Array out = s.empty({2, 4}, DType::f32);
  // K not a whole number of blocks: 512 elements of q4_k seen as [4, 128].
  Tensor w128 = w.tensor().reshape({8, 128});
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul",
                     gguf_matmul(s, s.empty({2, 128}, DType::f32), w128, s.empty({2, 8}, DType::f32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_dequantize", gguf_dequantize(s, w128, s.empty({8, 128}, DType::f32)));
  // Wrong dtypes.
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, s.empty({2, 256}, DType::i32), w, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, x, w, s.empty({2, 4}, DType::bf16)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, x, s.empty({4, 256}, DType::i8), out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_dequantize", gguf_dequantize(s, w, s.empty({4, 256}, DType::i32)));
  // Integer tensors are neither blocks nor floats.
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_dequantize",
                     gguf_dequantize(s, s.empty({4, 256}, DType::i32), s.empty({4, 256}, DType::f32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_dequantize",
                     gguf_dequantize(s, s.empty({4, 256}, DType::u8), s.empty({4, 256}, DType::f32)));
  // A float tensor converted onto itself.
  Array wf = s.empty({4, 256}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_dequantize", gguf_dequantize(s, wf, wf));
  // Wrong shapes.
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, s.empty({2, 512}, DType::f32), w, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, x, w, s.empty({2, 5}, DType::f32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, s.empty({2, 1, 256}, DType::f32), w, out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_dequantize", gguf_dequantize(s, w, s.empty({4, 255}, DType::f32)));
  // Non-contiguous weight (a column slice).
  Array w2 = upload_blocks(s, random_blocks(rng(), t, 4, 512), {4, 512}, t);
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul", gguf_matmul(s, x, w2.tensor().slice(1, 0, 256), out));
  // Output overlapping the input.
  Array xo = s.empty({2, 260}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul",
                     gguf_matmul(s, xo.tensor().slice(1, 0, 256), w, xo.tensor().slice(1, 0, 4)));
  // Expert-routed: ids dtype and shape, x and out shapes, w rank.
  Array we = upload_blocks(s, random_blocks(rng(), t, 8, 256), {2, 4, 256}, t);
  Array ids = from_values(s, {0, 1, 1, 0}, {2, 2}, DType::i32);
  Array out3 = s.empty({2, 2, 4}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul_id",
                     gguf_matmul_id(s, x, we, from_values(s, {0, 1, 1, 0}, {2, 2}, DType::f32), out3));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul_id", gguf_matmul_id(s, x, we, s.empty({2, 3}, DType::i32), out3));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul_id", gguf_matmul_id(s, x, we, ids, s.empty({2, 4}, DType::f32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul_id",
                     gguf_matmul_id(s, s.empty({2, 3, 256}, DType::f32), we, ids, out3));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_matmul_id", gguf_matmul_id(s, x, w, ids, out3));
  // Embedding: output shape, ids dtype, scale.
  Array eids = from_values(s, {0, 3}, {2}, DType::i32);
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_embedding", gguf_embedding(s, w, eids, s.empty({2, 255}, DType::f32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_embedding",
                     gguf_embedding(s, w, s.empty({2}, DType::i64), s.empty({2, 256}, DType::f32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "gguf_embedding",
                     gguf_embedding(s, w, eids, s.empty({2, 256}, DType::f32), std::nanf("")));
}

MLXN_BACKEND_TESTS(QuantGgufTest);

}  // namespace
}  // namespace mlxn::test
