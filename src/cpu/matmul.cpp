// CPU matrix products: a blocked GEMM. The output is cut into MC x NC tiles spread over
// threads; for each KC slice of the inner dim a thread packs its A rows into MR-row panels and
// its B columns into NR-column panels (converted to f32, zero-padded at the edges), then a
// register-blocked MR x NR micro-kernel accumulates into an f32 tile, which is written out
// once with alpha, beta and the conversion to the output dtype.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/common.h"
#include "ops/matmul_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::MatmulArgs;
using detail::MatmulIdArgs;

namespace {

constexpr int kMR = 6;        // micro-tile rows: 6 x 16 f32 accumulators = 12 AVX registers
constexpr int kNR = 16;       // micro-tile columns
constexpr int64_t kMC = 96;   // rows of A per tile (multiple of kMR)
constexpr int64_t kNC = 256;  // columns of B per tile (multiple of kNR)
constexpr int64_t kKC = 256;  // inner-dim slice packed at once

// acc[MR][NR] += A panel (kc x MR, k-major) . B panel (kc x NR, k-major), added into c.
inline void micro_kernel(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* __restrict c,
                         int64_t ldc) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* a = ap + p * kMR;
    const float* b = bp + p * kNR;
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const float av = a[i];
#pragma omp simd
      for (int j = 0; j < kNR; ++j) acc[i][j] += av * b[j];
    }
  }
  for (int i = 0; i < kMR; ++i)
#pragma omp simd
    for (int j = 0; j < kNR; ++j) c[i * ldc + j] += acc[i][j];
}

// A matrix seen through a row-pointer function: element (r, c) = row(r)[c * cs].
// Packs rows [r0, r0 + rows) (zero rows past `total`) x inner [k0, k0 + kc) into panels of
// P rows, each kc x P, k-major.
template <int P, class T, class RowFn>
void pack_panels(RowFn&& row, int64_t cs, int64_t r0, int64_t rows, int64_t total, int64_t k0, int64_t kc, float* dst) {
  std::vector<float> line(static_cast<size_t>(kc));
  for (int64_t ir = 0; ir < rows; ir += P) {
    float* panel = dst + ir * kc;
    for (int ii = 0; ii < P; ++ii) {
      const int64_t r = r0 + ir + ii;
      if (r >= total || ir + ii >= rows) {
        for (int64_t p = 0; p < kc; ++p) panel[p * P + ii] = 0.f;
        continue;
      }
      const T* src = row(r) + k0 * cs;
      if (cs == 1) {
        load_row(src, line.data(), kc);
      } else {
        for (int64_t p = 0; p < kc; ++p) line[size_t(p)] = to_float(src[p * cs]);
      }
      for (int64_t p = 0; p < kc; ++p) panel[p * P + ii] = line[size_t(p)];
    }
  }
}

// One output tile's job: rows [i0, i0 + mc) of matrix `batch`, columns [j0, j0 + nc).
struct Tile {
  int64_t batch, i0, j0;
};

// The blocked product over a list of tiles. Each problem (batch) has its own row count
// rows_of(b); A rows come from a_row(b, r) with column stride a_cs, B rows (logical [n, k])
// from b_row(b, n) with column stride b_cs; store(b, r, j0, nc, acc) writes one f32 row.
template <class T, class RowsOf, class ARow, class BRow, class Store>
void gemm_tiles(int64_t batches, int64_t n, int64_t k, RowsOf&& rows_of, ARow&& a_row, int64_t a_cs, BRow&& b_row,
                int64_t b_cs, Store&& store) {
  std::vector<Tile> tiles;
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t i0 = 0; i0 < rows_of(b); i0 += kMC)
      for (int64_t j0 = 0; j0 < n; j0 += kNC) tiles.push_back({b, i0, j0});
  const int64_t kc_max = std::min<int64_t>(std::max<int64_t>(k, 1), kKC);
  parallel_for(int64_t(tiles.size()), kMC * kNC * std::max<int64_t>(k, 1), [&](int64_t t0, int64_t t1) {
    std::vector<float> apack(static_cast<size_t>(kMC * kc_max)), bpack(static_cast<size_t>(kNC * kc_max));
    std::vector<float> acc(static_cast<size_t>(kMC * kNC));
    for (int64_t t = t0; t < t1; ++t) {
      const Tile& tile = tiles[size_t(t)];
      const int64_t m = rows_of(tile.batch);
      const int64_t mc = std::min(kMC, m - tile.i0), nc = std::min(kNC, n - tile.j0);
      const int64_t mc_pad = (mc + kMR - 1) / kMR * kMR, nc_pad = (nc + kNR - 1) / kNR * kNR;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t k0 = 0; k0 < k; k0 += kKC) {
        const int64_t kc = std::min(kKC, k - k0);
        pack_panels<kMR, T>([&](int64_t r) { return a_row(tile.batch, r); }, a_cs, tile.i0, mc_pad, m, k0, kc,
                            apack.data());
        pack_panels<kNR, T>([&](int64_t r) { return b_row(tile.batch, r); }, b_cs, tile.j0, nc_pad, n, k0, kc,
                            bpack.data());
        for (int64_t jr = 0; jr < nc_pad; jr += kNR)
          for (int64_t ir = 0; ir < mc_pad; ir += kMR)
            micro_kernel(kc, apack.data() + ir * kc, bpack.data() + jr * kc, acc.data() + ir * kNC + jr, kNC);
      }
      for (int64_t i = 0; i < mc; ++i) store(tile.batch, tile.i0 + i, tile.j0, nc, acc.data() + i * kNC);
    }
  });
}

template <class T>
void matmul_typed(const MatmulArgs& a) {
  const auto* A = static_cast<const T*>(a.a.data);
  const auto* B = static_cast<const T*>(a.b.data);
  auto* O = static_cast<T*>(a.out);
  // Element (r, c) of a row-major operand is row(r)[c]; of a column-major one, (A + r)[c * ld].
  const int64_t a_cs = a.a.col_major ? a.a.ld : 1, a_rs = a.a.col_major ? 1 : a.a.ld;
  const int64_t b_cs = a.b.col_major ? a.b.ld : 1, b_rs = a.b.col_major ? 1 : a.b.ld;
  const float alpha = a.alpha, beta = a.beta;
  gemm_tiles<T>(
      a.batch, a.n, a.k, [&](int64_t) { return a.m; },
      [&](int64_t b, int64_t r) { return A + b * a.a.batch_stride + r * a_rs; }, a_cs,
      [&](int64_t b, int64_t r) { return B + (b / a.group) * a.b.batch_stride + r * b_rs; }, b_cs,
      [&](int64_t b, int64_t r, int64_t j0, int64_t nc, const float* acc) {
        T* dst = O + b * a.out_batch_stride + r * a.ldo + j0;
        float row[kNC];
        if (beta != 0.f) {
          load_row(dst, row, nc);
          for (int64_t j = 0; j < nc; ++j) row[j] = alpha * acc[j] + beta * row[j];
        } else {
          for (int64_t j = 0; j < nc; ++j) row[j] = alpha * acc[j];
        }
        store_row(row, dst, nc);
      });
}

void matmul_cpu(Session&, const MatmulArgs& a) {
  dispatch_float(a.dtype, "matmul", [&]<class T>() { matmul_typed<T>(a); });
}

// Expert-routed product: pairs grouped by expert (stable counting sort), then one blocked
// GEMM problem per expert whose A rows are gathered through the pair list. Pairs with an id
// outside [0, E) get zero rows.
template <class T>
void matmul_id_typed(const MatmulIdArgs& a) {
  const int64_t pairs = a.tokens * a.top_k;
  const auto* ids = static_cast<const uint32_t*>(a.ids);
  std::vector<int64_t> offsets(static_cast<size_t>(a.experts + 1), 0), order(static_cast<size_t>(pairs));
  for (int64_t p = 0; p < pairs; ++p)
    if (ids[p] < uint64_t(a.experts)) ++offsets[ids[p] + 1];
  for (int64_t e = 0; e < a.experts; ++e) offsets[size_t(e + 1)] += offsets[size_t(e)];
  std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
  const auto* X = static_cast<const T*>(a.x);
  const auto* W = static_cast<const T*>(a.w);
  auto* O = static_cast<T*>(a.out);
  for (int64_t p = 0; p < pairs; ++p) {
    if (ids[p] < uint64_t(a.experts)) {
      order[size_t(fill[ids[p]]++)] = p;
    } else {
      std::memset(static_cast<void*>(O + p * a.n), 0, size_t(a.n) * sizeof(T));
    }
  }
  auto pair_of = [&](int64_t e, int64_t r) { return order[size_t(offsets[size_t(e)] + r)]; };
  gemm_tiles<T>(
      a.experts, a.n, a.k, [&](int64_t e) { return offsets[size_t(e + 1)] - offsets[size_t(e)]; },
      [&](int64_t e, int64_t r) {
        const int64_t p = pair_of(e, r);
        return X + (a.x_per_slot ? p : p / a.top_k) * a.x_row_stride;
      },
      1, [&](int64_t e, int64_t r) { return W + (e * a.n + r) * a.k; }, 1,
      [&](int64_t e, int64_t r, int64_t j0, int64_t nc, const float* acc) {
        store_row(acc, O + pair_of(e, r) * a.n + j0, nc);
      });
}

void matmul_id_cpu(Session&, const MatmulIdArgs& a) {
  dispatch_float(a.dtype, "matmul_id", [&]<class T>() { matmul_id_typed<T>(a); });
}

}  // namespace

MLXN_REGISTER_KERNEL(matmul, matmul, cpu, kFloatTypes, detail::MatmulArgs, matmul_cpu);
MLXN_REGISTER_KERNEL(matmul_id, matmul, cpu, kFloatTypes, detail::MatmulIdArgs, matmul_id_cpu);

}  // namespace mlxn::cpu
