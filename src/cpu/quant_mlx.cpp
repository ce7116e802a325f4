// CPU MLX affine quantization: quantize and dequantize follow MLX's arithmetic step by step
// (bit-exact); matmuls take, per group of a weight row, s * dot(q, x) + b * sum(x), each
// weight row unpacked once for every x row it meets (quant_mlx_dots.h), rows of W spread over
// the cores. Routed products group their (token, slot) pairs by expert.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/common.h"
#include "cpu/quant_mlx_dots.h"
#include "ops/quant_mlx_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::MlxQuantMatrix;
using detail::QuantMlxArgs;

namespace {

// Value i of a row stored as a little-endian bit stream of `bits`-bit values.
inline uint32_t extract(const uint32_t* words, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int64_t w = bit >> 5;
  const int sh = int(bit & 31);
  uint64_t v = words[w] >> sh;
  if (sh + bits > 32) v |= uint64_t(words[w + 1]) << (32 - sh);
  return uint32_t(v) & ((1u << bits) - 1u);
}

// round_S(round_S(q * s) + b), as MLX computes a dequantized value in the scales' dtype S.
template <class S>
inline float mlx_value(uint32_t q, float s, float b) {
  if constexpr (std::is_same_v<S, float>) {
    // q * s in double is exact (8 + 24 bits); one rounding to f32, then an f32 add. Written
    // so that no fused multiply-add can form.
    const float p = float(double(q) * double(s));
    return p + b;
  } else {
    // q * s is exact in f32 for 16-bit s (at most 8 + 11 bits); then rounded to S, added in
    // f32 and rounded to S again (f32 holds the exact sum's correct rounding to S).
    const float p = float(S(float(q) * s));
    return float(S(p + b));
  }
}

template <class S>
inline float load_scale(const void* p, int64_t i) {
  return float(static_cast<const S*>(p)[i]);
}

// Calls f.template operator()<S>() for the scales' dtype.
template <class F>
void dispatch_scale(DType t, F&& f) {
  dispatch_float(t, "quant_mlx", std::forward<F>(f));
}

// One row of W dequantized the MLX way (exact values of the dequantize op).
template <class S>
void dequant_row_mlx(const MlxQuantMatrix& m, int64_t e, int64_t n, float* dst) {
  const int64_t row = e * m.rows + n;
  const auto* words = static_cast<const uint32_t*>(m.packed) + row * m.words_per_row();
  const int64_t g0 = row * m.groups_per_row();
  for (int64_t g = 0; g < m.groups_per_row(); ++g) {
    const float s = load_scale<S>(m.scales, g0 + g), b = load_scale<S>(m.biases, g0 + g);
    for (int64_t i = g * m.group_size; i < (g + 1) * m.group_size; ++i)
      dst[i] = mlx_value<S>(extract(words, i, m.bits), s, b);
  }
}

// Sum of x over each group of every row: the bias term of a group is b * sum(x).
std::vector<float> group_sums(const std::vector<float>& xf, int64_t rows, int64_t K, int gs) {
  const int64_t groups = K / gs;
  std::vector<float> out(static_cast<size_t>(rows * groups));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) out[size_t(r * groups + g)] = float(row_sum(xf.data() + r * K + g * gs, gs));
  return out;
}

// ---- quantize -----------------------------------------------------------------------------

template <class T, class S>
void quantize_rows(const QuantMlxArgs& a) {
  const MlxQuantMatrix& m = a.w;
  const int bits = m.bits, gs = m.group_size;
  const float n_bins = float((1 << bits) - 1);
  const float eps = 1e-7f;
  const int64_t K = m.cols;
  parallel_for(m.rows, 4 * K, [&](int64_t r0, int64_t r1) {
    std::vector<float> w(static_cast<size_t>(K));
    for (int64_t n = r0; n < r1; ++n) {
      load_row(static_cast<const T*>(a.x.data) + n * a.x.row_stride, w.data(), K);
      auto* words = static_cast<uint32_t*>(m.packed) + n * m.words_per_row();
      for (int64_t i = 0; i < m.words_per_row(); ++i) words[i] = 0;
      for (int64_t g = 0; g < m.groups_per_row(); ++g) {
        const float* v = w.data() + g * gs;
        float w_min = std::numeric_limits<float>::infinity(), w_max = -w_min;
        for (int j = 0; j < gs; ++j) {
          w_max = std::max(w_max, v[j]);
          w_min = std::min(w_min, v[j]);
        }
        // The edge of larger magnitude becomes q = 0 or q = 2^bits - 1 exactly: the scale
        // is negative when that edge is the maximum.
        const bool mask = std::abs(w_min) > std::abs(w_max);
        float scale = std::max((w_max - w_min) / n_bins, eps);
        scale = mask ? scale : -scale;
        const float edge = mask ? w_min : w_max;
        const float q0 = std::rint(edge / scale);
        float bias = 0.f;
        if (q0 != 0.f) {
          scale = edge / q0;
          bias = edge;
        }
        for (int j = 0; j < gs; ++j) {
          float q = std::rint((v[j] - bias) / scale);
          q = std::min(std::max(q, 0.f), n_bins);
          const uint64_t bit = uint64_t(g * gs + j) * uint64_t(bits);
          const uint64_t val = uint64_t(q) << (bit & 31);
          words[bit >> 5] |= uint32_t(val);
          if ((bit & 31) + uint64_t(bits) > 32) words[(bit >> 5) + 1] |= uint32_t(val >> 32);
        }
        const int64_t gi = n * m.groups_per_row() + g;
        static_cast<S*>(m.scales)[gi] = S(scale);
        static_cast<S*>(m.biases)[gi] = S(bias);
      }
    }
  });
}

void quantize_cpu(Session&, const QuantMlxArgs& a) {
  dispatch_float(a.x.dtype, "quantize",
                 [&]<class T>() { dispatch_scale(a.w.scale_dtype, [&]<class S>() { quantize_rows<T, S>(a); }); });
}

// ---- dequantize ---------------------------------------------------------------------------

void dequantize_cpu(Session&, const QuantMlxArgs& a) {
  dispatch_float(a.out.dtype, "dequantize", [&]<class T>() {
    dispatch_scale(a.w.scale_dtype, [&]<class S>() {
      parallel_for(a.w.rows, 2 * a.w.cols, [&](int64_t r0, int64_t r1) {
        std::vector<float> row(static_cast<size_t>(a.w.cols));
        for (int64_t n = r0; n < r1; ++n) {
          dequant_row_mlx<S>(a.w, 0, n, row.data());
          store_row(row.data(), static_cast<T*>(a.out.data) + n * a.out.row_stride, a.w.cols);
        }
      });
    });
  });
}

// ---- matmuls ------------------------------------------------------------------------------

// What one expert's weight rows are dotted with: x rows and the out rows they fill. A plain
// matmul is one job (expert 0, every row); a routed one has a job per expert in use, holding
// the (token, slot) pairs routed to it, so each expert's rows are unpacked once for all of
// them.
struct DotJob {
  int64_t expert = 0;
  std::vector<int64_t> x_rows, out_rows;
};

// x as qdot::row_dots reads it: the rows in planes, and their per-group sums.
struct PreparedX {
  std::vector<float> planes, sums;
  int64_t k = 0, groups = 0;
  const float* row(int64_t r) const { return planes.data() + r * k; }
  const float* sum(int64_t r) const { return sums.data() + r * groups; }
};

template <class T, int BITS>
PreparedX prepare_x(const QuantMlxArgs& a) {
  PreparedX x;
  const int64_t M = a.x.rows, K = a.w.cols;
  const int gs = a.w.group_size;
  x.k = K, x.groups = K / gs;
  std::vector<float> f32(static_cast<size_t>(M * K));
  for (int64_t r = 0; r < M; ++r) load_row(static_cast<const T*>(a.x.data) + r * a.x.row_stride, f32.data() + r * K, K);
  x.sums = group_sums(f32, M, K, gs);
  x.planes.resize(f32.size());
  for (int64_t r = 0; r < M; ++r) qdot::to_planes<BITS>(f32.data() + r * K, K, gs, x.planes.data() + r * K);
  return x;
}

// Every job's rows of W against its x rows, (job, weight row) pairs spread over the cores.
template <class T, class S, int BITS>
void run_jobs(const QuantMlxArgs& a, const PreparedX& x, const std::vector<DotJob>& jobs) {
  const MlxQuantMatrix& m = a.w;
  const int64_t N = m.rows, K = m.cols, groups = m.groups_per_row();
  int64_t most = 0;
  for (const DotJob& j : jobs) most = std::max<int64_t>(most, int64_t(j.x_rows.size()));
  parallel_for(int64_t(jobs.size()) * N, 2 * K * (most + 2), [&](int64_t i0, int64_t i1) {
    std::vector<float> s(static_cast<size_t>(groups)), b(static_cast<size_t>(groups)), dots(static_cast<size_t>(most));
    std::vector<const float*> xs(static_cast<size_t>(most)), xsums(static_cast<size_t>(most));
    for (int64_t i = i0; i < i1; ++i) {
      const DotJob& job = jobs[size_t(i / N)];
      const int64_t n = i % N, count = int64_t(job.x_rows.size());
      for (int64_t r = 0; r < count; ++r) {
        xs[size_t(r)] = x.row(job.x_rows[size_t(r)]);
        xsums[size_t(r)] = x.sum(job.x_rows[size_t(r)]);
      }
      const int64_t row = job.expert * N + n, g0 = row * groups;
      for (int64_t g = 0; g < groups; ++g) s[size_t(g)] = load_scale<S>(m.scales, g0 + g);
      for (int64_t g = 0; g < groups; ++g) b[size_t(g)] = load_scale<S>(m.biases, g0 + g);
      const auto* codes =
          reinterpret_cast<const uint8_t*>(static_cast<const uint32_t*>(m.packed) + row * m.words_per_row());
      int64_t r = 0;
      for (; r + 2 <= count; r += 2)
        qdot::row_dots<BITS, 2>(codes, s.data(), b.data(), groups, m.group_size, &xs[size_t(r)], &xsums[size_t(r)],
                                &dots[size_t(r)]);
      if (r < count)
        qdot::row_dots<BITS, 1>(codes, s.data(), b.data(), groups, m.group_size, &xs[size_t(r)], &xsums[size_t(r)],
                                &dots[size_t(r)]);
      for (r = 0; r < count; ++r)
        static_cast<T*>(a.out.data)[job.out_rows[size_t(r)] * a.out.row_stride + n] = T(dots[size_t(r)]);
    }
  });
}

template <class T, class S, int BITS>
void matmul_rows(const QuantMlxArgs& a) {
  const PreparedX x = prepare_x<T, BITS>(a);
  std::vector<DotJob> jobs(1);
  for (int64_t r = 0; r < a.x.rows; ++r) {
    jobs[0].x_rows.push_back(r);
    jobs[0].out_rows.push_back(r);
  }
  run_jobs<T, S, BITS>(a, x, jobs);
}

template <class I>
void check_ids(const char* op, const void* ids, int64_t count, int64_t limit) {
  const auto* p = static_cast<const I*>(ids);
  for (int64_t i = 0; i < count; ++i)
    if (int64_t(p[i]) < 0 || int64_t(p[i]) >= limit)
      throw_error<InvalidArgument>(op, "ids[", i, "] is ", int64_t(p[i]), ", outside [0, ", limit, ")");
}

int64_t id_at(const QuantMlxArgs& a, int64_t i) {
  return a.ids_dtype == DType::u32 ? int64_t(static_cast<const uint32_t*>(a.ids)[i])
                                   : int64_t(static_cast<const int32_t*>(a.ids)[i]);
}

void check_all_ids(const char* op, const QuantMlxArgs& a, int64_t count, int64_t limit) {
  if (a.ids_dtype == DType::u32)
    check_ids<uint32_t>(op, a.ids, count, limit);
  else
    check_ids<int32_t>(op, a.ids, count, limit);
}

// Routed pairs grouped by expert (pairs in order within one): one job per expert in use.
template <class T, class S, int BITS>
void matmul_id_rows(const QuantMlxArgs& a) {
  const PreparedX x = prepare_x<T, BITS>(a);
  std::vector<DotJob> by_expert(static_cast<size_t>(a.w.experts));
  for (int64_t u = 0; u < a.tokens * a.top_k; ++u) {
    DotJob& job = by_expert[size_t(id_at(a, u))];
    job.x_rows.push_back(a.x_per_slot ? u : u / a.top_k);
    job.out_rows.push_back(u);
  }
  std::vector<DotJob> jobs;
  for (int64_t e = 0; e < a.w.experts; ++e) {
    if (by_expert[size_t(e)].x_rows.empty()) continue;
    by_expert[size_t(e)].expert = e;
    jobs.push_back(std::move(by_expert[size_t(e)]));
  }
  run_jobs<T, S, BITS>(a, x, jobs);
}

void matmul_cpu(Session&, const QuantMlxArgs& a) {
  dispatch_float(a.x.dtype, "quantized_matmul",
                 [&]<class T>() {
    dispatch_scale(a.w.scale_dtype, [&]<class S>() {
      detail::dispatch_bits(a.w.bits, [&]<int B>() { matmul_rows<T, S, B>(a); });
    });
  });
}

void matmul_id_cpu(Session&, const QuantMlxArgs& a) {
  check_all_ids("quantized_matmul_id", a, a.tokens * a.top_k, a.w.experts);
  dispatch_float(a.x.dtype, "quantized_matmul_id",
                 [&]<class T>() {
    dispatch_scale(a.w.scale_dtype, [&]<class S>() {
      detail::dispatch_bits(a.w.bits, [&]<int B>() { matmul_id_rows<T, S, B>(a); });
    });
  });
}

// ---- embedding ----------------------------------------------------------------------------

void embedding_cpu(Session&, const QuantMlxArgs& a) {
  check_all_ids("quantized_embedding", a, a.tokens, a.w.rows);
  dispatch_float(a.out.dtype, "quantized_embedding", [&]<class T>() {
    dispatch_scale(a.w.scale_dtype, [&]<class S>() {
      const int64_t D = a.w.cols;
      parallel_for(a.tokens, 2 * D, [&](int64_t t0, int64_t t1) {
        std::vector<float> row(static_cast<size_t>(D));
        for (int64_t t = t0; t < t1; ++t) {
          dequant_row_mlx<S>(a.w, 0, id_at(a, t), row.data());
          if (a.scale != 1.f)
            for (auto& v : row) v *= a.scale;
          store_row(row.data(), static_cast<T*>(a.out.data) + t * a.out.row_stride, D);
        }
      });
    });
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(mlx_quantize, quant_mlx, cpu, kFloatTypes, detail::QuantMlxArgs, quantize_cpu);
MLXN_REGISTER_KERNEL(mlx_dequantize, quant_mlx, cpu, kFloatTypes, detail::QuantMlxArgs, dequantize_cpu);
MLXN_REGISTER_KERNEL(quantized_matmul, quant_mlx, cpu, kFloatTypes, detail::QuantMlxArgs, matmul_cpu);
MLXN_REGISTER_KERNEL(quantized_matmul_id, quant_mlx, cpu, kFloatTypes, detail::QuantMlxArgs, matmul_id_cpu);
MLXN_REGISTER_KERNEL(quantized_embedding, quant_mlx, cpu, kFloatTypes, detail::QuantMlxArgs, embedding_cpu);

}  // namespace mlxn::cpu
