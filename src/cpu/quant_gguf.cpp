// CPU GGUF quant family: matmuls by block weights decode each 32-value unit into vector
// registers and multiply it into the dot products there (quant_gguf_dots.h); float weights,
// dequantize and embedding decode rows through the quant-traits table. OpenMP over weight
// rows, simd inside a row.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/common.h"
#include "cpu/quant_gguf_dots.h"
#include "ops/quant_gguf_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::GgufDequantArgs;
using detail::GgufEmbeddingArgs;
using detail::GgufMatmulArgs;

namespace {

// Decodes one weight row of k elements to f32.
using RowDecoder = void (*)(const uint8_t* row, int64_t k, float* out);

template <class B>
void decode_blocks(const uint8_t* row, int64_t k, float* out) {
  for (int64_t u = 0; u < k / 32; ++u) gguf::decode_unit<B>(row, u, out + 32 * u);
}

template <class T>
void decode_floats(const uint8_t* row, int64_t k, float* out) {
  load_row(reinterpret_cast<const T*>(row), out, k);
}

RowDecoder row_decoder(DType t, const char* op) {
  switch (t) {
    case DType::f32:
      return &decode_floats<float>;
    case DType::f16:
      return &decode_floats<Half>;
    case DType::bf16:
      return &decode_floats<BFloat16>;
    default:
      return detail::dispatch_gguf_block(t, op, []<class B>() -> RowDecoder { return &decode_blocks<B>; });
  }
}

// dot(W row, x row r) for r < rows (1 or 2), W's units decoded in registers.
using RowDots = void (*)(const uint8_t* row, int64_t k, const float* const* x, int rows, float* out);

template <class B>
void vector_row_dots(const uint8_t* row, int64_t k, const float* const* x, int rows, float* out) {
  if (rows == 2)
    gdot::row_dots<B, 2>(row, k, x, out);
  else
    gdot::row_dots<B, 1>(row, k, x, out);
}

// The block types' RowDots; null for float weights.
RowDots row_dots_of(DType t) {
  return detail::dispatch_gguf_block(t, "gguf_matmul", []<class B>() -> RowDots {
    if constexpr (gdot::kBlockType<B>)
      return &vector_row_dots<B>;
    else
      return nullptr;
  });
}

int64_t read_id(const void* ids, DType dt, int64_t i) {
  return dt == DType::i32 ? int64_t(static_cast<const int32_t*>(ids)[i])
                          : int64_t(static_cast<const uint32_t*>(ids)[i]);
}

// Every id must address a row of [0, limit); the first one that does not is reported.
void check_ids_in_range(const char* op, const void* ids, DType dt, int64_t count, int64_t limit, const char* what) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t v = read_id(ids, dt, i);
    if (v < 0 || v >= limit)
      throw_error<InvalidArgument>(op, "ids[", i, "] = ", v, " is out of range for ", limit, " ", what);
  }
}

void dequantize_cpu(Session&, const GgufDequantArgs& a) {
  const RowDecoder decode = row_decoder(a.w_dtype, "gguf_dequantize");
  dispatch_float(a.out.dtype, "gguf_dequantize", [&]<class T>() {
    parallel_for(a.rows, 4 * a.k, [&](int64_t r0, int64_t r1) {
      std::vector<float> v(static_cast<size_t>(a.k));
      for (int64_t r = r0; r < r1; ++r) {
        decode(static_cast<const uint8_t*>(a.w) + r * a.w_row_bytes, a.k, v.data());
        store_row(v.data(), static_cast<T*>(a.out.data) + r * a.out.row_stride, a.k);
      }
    });
  });
}

// Weight rows are decoded kRowTile at a time and each routed input row is dotted with all of
// them, so an input row is read once per tile rather than once per weight row.
constexpr int64_t kRowTile = 8;

// Each weight row against its expert's input rows two at a time, through `dots`.
template <class T>
void vector_matmul(const GgufMatmulArgs& a, RowDots dots, const uint8_t* we, const std::vector<int64_t>& rows,
                   const std::vector<float>& xf) {
  const int64_t k = a.k, count = int64_t(rows.size());
  parallel_for(a.n, 2 * k * (count + 2), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* wrow = we + n * a.w_row_bytes;
      for (int64_t i = 0; i < count; i += 2) {
        const int take = count - i >= 2 ? 2 : 1;
        const float* xs[2];
        for (int j = 0; j < take; ++j) {
          const int64_t p = rows[size_t(i + j)];
          xs[j] = xf.data() + (a.x_per_slot || !a.ids ? p : p / a.top_k) * k;
        }
        float d[2];
        dots(wrow, k, xs, take, d);
        for (int j = 0; j < take; ++j)
          static_cast<T*>(a.out.data)[rows[size_t(i + j)] * a.out.row_stride + n] = from_float<T>(d[j]);
      }
    }
  });
}

template <class T>
void matmul_rows(const GgufMatmulArgs& a, RowDecoder decode, RowDots dots, const char* op) {
  const int64_t k = a.k, pairs = a.tokens * a.top_k;
  // Inputs converted to f32 once.
  std::vector<float> xf(static_cast<size_t>(a.x.rows * k));
  parallel_for(a.x.rows, k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      load_row(static_cast<const T*>(a.x.data) + r * a.x.row_stride, xf.data() + r * k, k);
  });
  // Pairs grouped by expert (a plain matmul is one expert holding every row).
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(a.experts));
  if (a.ids) {
    check_ids_in_range(op, a.ids, a.ids_dtype, pairs, a.experts, "experts");
    for (int64_t p = 0; p < pairs; ++p) groups[size_t(read_id(a.ids, a.ids_dtype, p))].push_back(p);
  } else {
    groups[0].resize(size_t(pairs));
    for (int64_t p = 0; p < pairs; ++p) groups[0][size_t(p)] = p;
  }
  const int64_t tiles = (a.n + kRowTile - 1) / kRowTile;
  for (int64_t e = 0; e < a.experts; ++e) {
    const std::vector<int64_t>& rows = groups[size_t(e)];
    if (rows.empty()) continue;
    const auto* we = static_cast<const uint8_t*>(a.w) + e * a.n * a.w_row_bytes;
    if (dots) {
      vector_matmul<T>(a, dots, we, rows, xf);
      continue;
    }
    parallel_for(tiles, kRowTile * k * (int64_t(rows.size()) + 4), [&](int64_t t0, int64_t t1) {
      std::vector<float> wt(static_cast<size_t>(kRowTile * k));
      float acc[kRowTile];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * kRowTile, nt = std::min(kRowTile, a.n - n0);
        for (int64_t j = 0; j < nt; ++j) decode(we + (n0 + j) * a.w_row_bytes, k, wt.data() + j * k);
        for (int64_t p : rows) {
          const int64_t xr = a.x_per_slot || !a.ids ? p : p / a.top_k;
          const float* xp = xf.data() + xr * k;
          for (int64_t j = 0; j < nt; ++j) {
            const float* wp = wt.data() + j * k;
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < k; ++i) s += xp[i] * wp[i];
            acc[j] = s;
          }
          T* op_row = static_cast<T*>(a.out.data) + p * a.out.row_stride + n0;
          for (int64_t j = 0; j < nt; ++j) op_row[j] = from_float<T>(acc[j]);
        }
      }
    });
  }
}

void matmul_cpu(Session&, const GgufMatmulArgs& a) {
  const char* op = a.ids ? "gguf_matmul_id" : "gguf_matmul";
  const RowDecoder decode = row_decoder(a.w_dtype, op);
  dispatch_float(a.x.dtype, op, [&]<class T>() { matmul_rows<T>(a, decode, row_dots_of(a.w_dtype), op); });
}

void embedding_cpu(Session&, const GgufEmbeddingArgs& a) {
  const char* op = "gguf_embedding";
  const RowDecoder decode = row_decoder(a.table_dtype, op);
  check_ids_in_range(op, a.ids, a.ids_dtype, a.count, a.vocab, "table rows");
  dispatch_float(a.out.dtype, op, [&]<class T>() {
    parallel_for(a.count, 4 * a.dim, [&](int64_t i0, int64_t i1) {
      std::vector<float> v(static_cast<size_t>(a.dim));
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t id = read_id(a.ids, a.ids_dtype, i);
        decode(static_cast<const uint8_t*>(a.table) + id * a.table_row_bytes, a.dim, v.data());
        if (a.scale != 1.f)
          for (float& x : v) x *= a.scale;
        store_row(v.data(), static_cast<T*>(a.out.data) + i * a.out.row_stride, a.dim);
      }
    });
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(gguf_dequantize, quant_gguf, cpu, detail::kGgufWeightTypes, detail::GgufDequantArgs,
                     dequantize_cpu);
MLXN_REGISTER_KERNEL(gguf_matmul, quant_gguf, cpu, detail::kGgufWeightTypes, detail::GgufMatmulArgs, matmul_cpu);
MLXN_REGISTER_KERNEL(gguf_matmul_id, quant_gguf, cpu, detail::kGgufWeightTypes, detail::GgufMatmulArgs, matmul_cpu);
MLXN_REGISTER_KERNEL(gguf_embedding, quant_gguf, cpu, detail::kGgufWeightTypes, detail::GgufEmbeddingArgs,
                     embedding_cpu);

}  // namespace mlxn::cpu
