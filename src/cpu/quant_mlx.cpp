// CPU MLX affine quantization: quantize and dequantize follow MLX's arithmetic step by step
// (bit-exact); matmuls dequantize one weight row at a time into f32 and take dot products
// with every x row, rows of W spread over the cores.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/common.h"
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

// One row of W as s * q + b in f32 (the matmul's weights).
template <class S>
void dequant_row_fma(const MlxQuantMatrix& m, int64_t e, int64_t n, float* dst) {
  const int64_t row = e * m.rows + n;
  const auto* words = static_cast<const uint32_t*>(m.packed) + row * m.words_per_row();
  const int64_t g0 = row * m.groups_per_row();
  for (int64_t g = 0; g < m.groups_per_row(); ++g) {
    const float s = load_scale<S>(m.scales, g0 + g), b = load_scale<S>(m.biases, g0 + g);
    for (int64_t i = g * m.group_size; i < (g + 1) * m.group_size; ++i)
      dst[i] = std::fma(float(extract(words, i, m.bits)), s, b);
  }
}

inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
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

template <class T, class S>
void matmul_rows(const QuantMlxArgs& a) {
  const int64_t M = a.x.rows, K = a.w.cols, N = a.w.rows;
  std::vector<float> xf(static_cast<size_t>(M * K));
  for (int64_t r = 0; r < M; ++r) load_row(static_cast<const T*>(a.x.data) + r * a.x.row_stride, xf.data() + r * K, K);
  // Row blocks of W, with each x row reused from cache for every W row of the block.
  parallel_for(N, 2 * K * (M + 2), [&](int64_t n0, int64_t n1) {
    std::vector<float> w(static_cast<size_t>(K)), acc(static_cast<size_t>(n1 - n0));
    for (int64_t n = n0; n < n1; ++n) {
      dequant_row_fma<S>(a.w, 0, n, w.data());
      for (int64_t r = 0; r < M; ++r) {
        T* out = static_cast<T*>(a.out.data) + r * a.out.row_stride;
        out[n] = T(dot(xf.data() + r * K, w.data(), K));
      }
    }
  });
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

template <class T, class S>
void matmul_id_rows(const QuantMlxArgs& a) {
  const int64_t K = a.w.cols, N = a.w.rows, slots = a.tokens * a.top_k;
  std::vector<float> xf(static_cast<size_t>(a.x.rows * K));
  for (int64_t r = 0; r < a.x.rows; ++r)
    load_row(static_cast<const T*>(a.x.data) + r * a.x.row_stride, xf.data() + r * K, K);
  std::vector<int64_t> expert(static_cast<size_t>(slots));
  for (int64_t u = 0; u < slots; ++u) expert[size_t(u)] = id_at(a, u);
  parallel_for(N, 2 * K * (slots + 2), [&](int64_t n0, int64_t n1) {
    std::vector<float> w(static_cast<size_t>(K));
    for (int64_t n = n0; n < n1; ++n) {
      int64_t loaded = -1;
      for (int64_t u = 0; u < slots; ++u) {
        const int64_t e = expert[size_t(u)];
        if (e != loaded) {
          dequant_row_fma<S>(a.w, e, n, w.data());
          loaded = e;
        }
        const int64_t xr = a.x_per_slot ? u : u / a.top_k;
        static_cast<T*>(a.out.data)[u * a.out.row_stride + n] = T(dot(xf.data() + xr * K, w.data(), K));
      }
    }
  });
}

void matmul_cpu(Session&, const QuantMlxArgs& a) {
  dispatch_float(a.x.dtype, "quantized_matmul",
                 [&]<class T>() { dispatch_scale(a.w.scale_dtype, [&]<class S>() { matmul_rows<T, S>(a); }); });
}

void matmul_id_cpu(Session&, const QuantMlxArgs& a) {
  check_all_ids("quantized_matmul_id", a, a.tokens * a.top_k, a.w.experts);
  dispatch_float(a.x.dtype, "quantized_matmul_id",
                 [&]<class T>() { dispatch_scale(a.w.scale_dtype, [&]<class S>() { matmul_id_rows<T, S>(a); }); });
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
