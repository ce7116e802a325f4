#pragma once
// MLX affine-quantized matrices for the tests: random codes, scales and biases on the device
// (a stack of experts when e > 1) with their host values, and the exact weights s * q + b.
// Shared by the quant_mlx and moe_experts tests.
#include <random>
#include <vector>

#include "mlxn/ops/quant_mlx.h"
#include "support/support.h"

namespace mlxn::test {

// Value i of a row stored as a little-endian stream of `bits`-bit values.
inline uint32_t stream_value(const std::vector<uint32_t>& words, int64_t row_words, int64_t row, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const uint32_t* w = words.data() + row * row_words;
  uint64_t v = w[bit / 32] >> (bit % 32);
  if (bit % 32 + bits > 32) v |= uint64_t(w[bit / 32 + 1]) << (32 - bit % 32);
  return uint32_t(v & ((1u << bits) - 1));
}

// A quantized matrix on the device plus its host values.
struct QMatrix {
  int64_t experts = 1, n = 0, k = 0;
  MlxQuant q;
  DType sdt = DType::bf16;
  Array packed, scales, biases;
  std::vector<uint32_t> words;
  std::vector<double> s, b;  // as stored (rounded to sdt)
  int64_t row_words() const { return k * q.bits / 32; }
  int64_t groups() const { return k / q.group_size; }
  uint32_t qv(int64_t e, int64_t row, int64_t i) const {
    return stream_value(words, row_words(), e * n + row, i, q.bits);
  }
  // s * q + b exactly: the weights the matmuls use.
  double exact(int64_t e, int64_t row, int64_t i) const {
    const size_t g = size_t((e * n + row) * groups() + i / q.group_size);
    return s[g] * double(qv(e, row, i)) + b[g];
  }
  // MLX's dequantized value: round_S(round_S(q * s) + b).
  double mlx(int64_t e, int64_t row, int64_t i) const {
    const size_t g = size_t((e * n + row) * groups() + i / q.group_size);
    return round_to(sdt, round_to(sdt, double(qv(e, row, i)) * s[g]) + b[g]);
  }
};

// How random_qmatrix draws the biases: independent in [-1, 1], or placed so that each group's
// weights span zero, as in real checkpoints (an O(1) bias per group drives activations into
// the range where silu and gelu_tanh both look like relu).
enum class Biases { uniform, centred };

// Random codes, scales of both signs (MLX writes negative scales) and biases.
inline QMatrix random_qmatrix(Session& ses, std::mt19937_64& rng, int64_t e, int64_t n, int64_t k, MlxQuant q,
                              DType sdt, Biases biases = Biases::uniform) {
  QMatrix m;
  m.experts = e;
  m.n = n;
  m.k = k;
  m.q = q;
  m.sdt = sdt;
  const int64_t rw = k * q.bits / 32, g = k / q.group_size;
  m.words.resize(static_cast<size_t>(e * n * rw));
  for (auto& w : m.words) w = uint32_t(rng());
  const Dims pshape = e > 1 ? Dims{e, n, rw} : Dims{n, rw};
  const Dims sshape = e > 1 ? Dims{e, n, g} : Dims{n, g};
  m.packed = Array::empty(pshape, DType::u32, ses.device());
  ses.upload(m.packed, m.words.data(), m.words.size() * 4);
  const double levels = double((1 << q.bits) - 1);
  auto sc = random_array(ses, rng, sshape, sdt, -2.0 / levels, 2.0 / levels);
  m.scales = sc.array;
  m.s = sc.values;
  if (biases == Biases::uniform) {
    auto bi = random_array(ses, rng, sshape, sdt, -1.0, 1.0);
    m.biases = bi.array;
    m.b = bi.values;
  } else {
    std::uniform_real_distribution<double> mid(0.3, 0.7);
    for (double sv : m.s) m.b.push_back(round_to(sdt, -sv * levels * mid(rng)));
    m.biases = from_values(ses, m.b, sshape, sdt);
  }
  return m;
}

}  // namespace mlxn::test
