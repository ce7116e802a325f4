// Layout family against references written from the definitions in ops.md §3: copies must
// reproduce every element exactly; embedding scales and KV-cache conversions round once.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "mlxn/ops/layout.h"
#include "support/support.h"

namespace mlxn::test {
namespace {

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> v{DType::f32, DType::f16, DType::bf16, DType::i8,
                                    DType::u8,  DType::i32, DType::u32,  DType::i64};
  return v;
}

class LayoutTest : public BackendTest {
 protected:
  // Random values that span each dtype's bytes, never equal to the poison pattern.
  TestArray rand(Dims shape, DType dt) {
    switch (dt) {
      case DType::i8:
        return random_array(session(), rng(), shape, dt, -100, 100);
      case DType::u8:
        return random_array(session(), rng(), shape, dt, 0, 120);
      case DType::i32:
        return random_array(session(), rng(), shape, dt, -1e9, 1e9);
      case DType::u32:
        return random_array(session(), rng(), shape, dt, 0, 2e9);
      case DType::i64:
        return random_array(session(), rng(), shape, dt, -1e15, 1e15);
      default:
        return random_array(session(), rng(), shape, dt, -1, 1);
    }
  }
  std::vector<double> values(const Tensor& t) { return host_values(session(), t); }
  Array index_array(const std::vector<int64_t>& ids, DType dt) {
    std::vector<double> v(ids.begin(), ids.end());
    return from_values(session(), v, {int64_t(ids.size())}, dt);
  }
};

// Bit-exact: a copy must return exactly the values it was given.
#define EXPECT_SAME(actual, ref) MLXN_EXPECT_CLOSE((actual), (ref), 0.0)

// x: [batch, M, N] row-major -> [batch, N, M]
std::vector<double> ref_transpose(const std::vector<double>& x, int64_t batch, int64_t M, int64_t N) {
  std::vector<double> y(x.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[size_t((b * N + n) * M + m)] = x[size_t((b * M + m) * N + n)];
  return y;
}

TEST_P(LayoutTest, CopyContiguousEveryDtype) {
  for (DType dt : all_dtypes())
    for (int64_t n : {int64_t(1), int64_t(33), int64_t(1025), int64_t(4099), int64_t(70001)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " n=" << n);
      auto x = rand({n}, dt);
      Array y = poisoned(session(), {n}, dt);
      copy(session(), x, y);
      EXPECT_SAME(values(y), x.values);
    }
}

TEST_P(LayoutTest, CopyStridedSourcesAndDestinations) {
  for (DType dt : all_dtypes()) {
    SCOPED_TRACE(name(dt));
    auto parent = rand({7, 33, 40}, dt);
    const Tensor p = parent.tensor();
    const std::vector<Tensor> sources{
        p.slice(2, 3, 36),                  // column slice: rows 40 apart
        p.transpose(0, 2),                  // [40, 33, 7]
        p.select(1, 5),                     // [7, 40]
        p.transpose(1, 2).slice(0, 1, 6),   // [5, 40, 33]
        p.slice(1, 2, 30).transpose(0, 1),  // [28, 7, 40]
        p.select(2, 39),                    // [7, 33], innermost stride 40
    };
    for (const Tensor& src : sources) {
      SCOPED_TRACE(src.shape().str() + " strides " + src.strides().str());
      Array dst = poisoned(session(), src.shape(), dt);
      copy(session(), src, dst);
      EXPECT_SAME(values(dst), values(src));
      // the same source into a strided destination: a column slice of a wider buffer
      Dims wide = src.shape();
      wide[src.ndim() - 1] += 3;
      Array dst_parent = poisoned(session(), wide, dt);
      const Tensor dst_view = dst_parent.tensor().slice(-1, 1, 1 + src.dim(-1));
      copy(session(), src, dst_view);
      EXPECT_SAME(values(dst_view), values(src));
      // nothing outside the view was written
      const auto first = values(dst_parent.tensor().slice(-1, 0, 1));
      Array poison_ref = poisoned(session(), {int64_t(first.size())}, dt);
      EXPECT_SAME(first, values(poison_ref));
    }
    // negative strides: a reversed vector, rows in reverse order, and that transposed
    const int64_t es = int64_t(element_size(dt));
    auto grid = rand({16, 40}, dt);
    char* last_row = static_cast<char*>(grid.tensor().data()) + 15 * 40 * es;
    const std::vector<Tensor> reversed{
        Tensor(last_row + 39 * es, dt, {40}, device(), {-1}),
        Tensor(last_row, dt, {16, 40}, device(), {-40, 1}),
        Tensor(last_row, dt, {40, 16}, device(), {1, -40}),
    };
    for (const Tensor& src : reversed) {
      SCOPED_TRACE(src.shape().str() + " strides " + src.strides().str());
      Array dst = poisoned(session(), src.shape(), dt);
      copy(session(), src, dst);
      EXPECT_SAME(values(dst), values(src));
    }
    // broadcast source (stride 0): every row of dst is the same row of x
    auto row = rand({37}, dt);
    const Tensor bcast(row.tensor().data(), dt, {5, 37}, device(), {0, 1});
    Array dst = poisoned(session(), {5, 37}, dt);
    copy(session(), bcast, dst);
    std::vector<double> ref;
    for (int r = 0; r < 5; ++r) ref.insert(ref.end(), row.values.begin(), row.values.end());
    EXPECT_SAME(values(dst), ref);
  }
}

TEST_P(LayoutTest, CopyWideUnitsAndMisalignedRows) {
  // Rows of 512 bf16 (16-byte units), rows starting one element in (2-byte units), and an
  // 8-dim view with its first and last dims swapped.
  for (DType dt : {DType::bf16, DType::u8, DType::f32, DType::i64}) {
    SCOPED_TRACE(name(dt));
    auto parent = rand({64, 1030}, dt);
    for (int64_t start : {int64_t(0), int64_t(1), int64_t(6)}) {
      const Tensor src = parent.tensor().slice(1, start, start + 1024);
      Array dst = poisoned(session(), {64, 1024}, dt);
      copy(session(), src, dst);
      EXPECT_SAME(values(dst), values(src));
    }
    auto x8 = rand({2, 3, 2, 2, 3, 2, 2, 5}, dt);
    const Tensor src = x8.tensor().transpose(0, 7);
    Array dst = poisoned(session(), src.shape(), dt);
    copy(session(), src, dst);
    EXPECT_SAME(values(dst), values(src));
  }
}

TEST_P(LayoutTest, TransposeOddSizesEveryDtype) {
  const std::vector<std::pair<int64_t, int64_t>> sizes{{1, 4099}, {4099, 1}, {33, 1025}, {1025, 33}, {31, 33}};
  for (DType dt : all_dtypes())
    for (auto [M, N] : sizes) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " [" << M << ", " << N << "]");
      auto x = rand({M, N}, dt);
      Array y = poisoned(session(), {N, M}, dt);
      transpose(session(), x, y);
      EXPECT_SAME(values(y), ref_transpose(x.values, 1, M, N));
    }
}

TEST_P(LayoutTest, TransposeTilesBatchedAndStrided) {
  for (DType dt : all_dtypes()) {
    SCOPED_TRACE(name(dt));
    // tile-aligned (16-byte vectors for every element size), partial tiles, batches
    for (auto [B, M, N] :
         std::vector<std::array<int64_t, 3>>{{1, 256, 512}, {3, 64, 48}, {2, 272, 144}, {2, 100, 37}}) {
      SCOPED_TRACE(::testing::Message() << "[" << B << ", " << M << ", " << N << "]");
      auto x = rand({B, M, N}, dt);
      Array y = poisoned(session(), {B, N, M}, dt);
      transpose(session(), x, y);
      EXPECT_SAME(values(y), ref_transpose(x.values, B, M, N));
    }
    // a column slice as input (rows 160 apart), a row slice of a wider buffer as output
    auto parent = rand({96, 160}, dt);
    const Tensor x = parent.tensor().slice(1, 16, 144);  // [96, 128]
    Array out_parent = poisoned(session(), {128, 100}, dt);
    const Tensor out = out_parent.tensor().slice(1, 0, 96);
    transpose(session(), x, out);
    EXPECT_SAME(values(out), ref_transpose(values(x), 1, 96, 128));
  }
}

TEST_P(LayoutTest, Permute021) {
  for (DType dt : all_dtypes()) {
    SCOPED_TRACE(name(dt));
    for (auto [A, B, C] : std::vector<std::array<int64_t, 3>>{{5, 33, 70}, {4, 64, 128}, {1, 1, 9}}) {
      auto x = rand({A, B, C}, dt);
      Array y = poisoned(session(), {A, C, B}, dt);
      permute_021(session(), x, y);
      EXPECT_SAME(values(y), ref_transpose(x.values, A, B, C));
    }
  }
}

TEST_P(LayoutTest, SliceAlongEachAxis) {
  for (DType dt : all_dtypes()) {
    SCOPED_TRACE(name(dt));
    auto x = rand({6, 35, 20}, dt);
    struct Case {
      int axis;
      int64_t start, len;
    };
    for (Case c : {Case{0, 2, 3}, Case{1, 7, 28}, Case{-1, 19, 1}, Case{2, 0, 20}, Case{1, 35, 0}}) {
      SCOPED_TRACE(::testing::Message() << "axis " << c.axis << " start " << c.start);
      Dims shape = x.tensor().shape();
      const int a = c.axis < 0 ? c.axis + 3 : c.axis;
      shape[a] = c.len;
      // (Tensor::is_contiguous() is false for zero-extent shapes, so nothing is uploaded to those)
      Array y = c.len ? poisoned(session(), shape, dt) : Array::empty(shape, dt, device());
      slice(session(), x, y, c.axis, c.start);
      // reference: pick the elements by index
      std::vector<double> ref;
      for (int64_t i = 0; i < 6; ++i)
        for (int64_t j = 0; j < 35; ++j)
          for (int64_t k = 0; k < 20; ++k) {
            const int64_t idx[3] = {i, j, k};
            if (idx[a] >= c.start && idx[a] < c.start + c.len) ref.push_back(x.values[size_t((i * 35 + j) * 20 + k)]);
          }
      EXPECT_SAME(values(y), ref);
    }
  }
}

TEST_P(LayoutTest, ConcatAlongEachAxis) {
  for (DType dt : all_dtypes()) {
    SCOPED_TRACE(name(dt));
    // along axis 1 of [3, ., 17]: parts of 5, 0 and 33 columns
    auto a = rand({3, 5, 17}, dt), c = rand({3, 33, 17}, dt);
    Array b = Array::empty({3, 0, 17}, dt, device());
    Array out = poisoned(session(), {3, 38, 17}, dt);
    const std::vector<Tensor> parts{a.tensor(), b.tensor(), c.tensor()};
    concat(session(), parts, 1, out);
    std::vector<double> ref;
    for (int64_t i = 0; i < 3; ++i) {
      ref.insert(ref.end(), a.values.begin() + i * 5 * 17, a.values.begin() + (i + 1) * 5 * 17);
      ref.insert(ref.end(), c.values.begin() + i * 33 * 17, c.values.begin() + (i + 1) * 33 * 17);
    }
    EXPECT_SAME(values(out), ref);
    // along the last dim, with a strided (transposed) input, through the braced-list form
    auto d = rand({4, 3}, dt), e = rand({4, 4}, dt);
    Array out2 = poisoned(session(), {4, 7}, dt);
    concat(session(), {d.tensor(), e.tensor().transpose(0, 1)}, -1, out2);
    ref.clear();
    for (int64_t i = 0; i < 4; ++i) {
      for (int64_t j = 0; j < 3; ++j) ref.push_back(d.values[size_t(i * 3 + j)]);
      for (int64_t j = 0; j < 4; ++j) ref.push_back(e.values[size_t(j * 4 + i)]);
    }
    EXPECT_SAME(values(out2), ref);
    // along axis 0 (plain appends)
    auto f = rand({2, 1025}, dt), g = rand({1, 1025}, dt);
    Array out3 = poisoned(session(), {3, 1025}, dt);
    concat(session(), {f.tensor(), g.tensor()}, 0, out3);
    ref = f.values;
    ref.insert(ref.end(), g.values.begin(), g.values.end());
    EXPECT_SAME(values(out3), ref);
  }
}

TEST_P(LayoutTest, RepeatHeadsBlockAndTiled) {
  for (DType dt : all_dtypes()) {
    SCOPED_TRACE(name(dt));
    for (int64_t D : {int64_t(33), int64_t(64)})
      for (int64_t n : {int64_t(1), int64_t(3)})
        for (RepeatMode mode : {RepeatMode::block, RepeatMode::tiled}) {
          SCOPED_TRACE(::testing::Message() << "D=" << D << " n=" << n << " tiled=" << (mode == RepeatMode::tiled));
          const int64_t B = 2, hkv = 2, T = 5, H = hkv * n;
          // x is a T-slice of a longer buffer, so it is strided
          auto parent = rand({B, hkv, T + 2, D}, dt);
          const Tensor x = parent.tensor().slice(2, 1, 1 + T);
          const std::vector<double> xv = values(x);
          Array out = poisoned(session(), {B, H, T, D}, dt);
          repeat_heads(session(), x, out, mode);
          std::vector<double> ref;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h) {
              const int64_t src_h = mode == RepeatMode::block ? h / n : h % hkv;
              const auto first = xv.begin() + (b * hkv + src_h) * T * D;
              ref.insert(ref.end(), first, first + T * D);
            }
          EXPECT_SAME(values(out), ref);
        }
  }
}

TEST_P(LayoutTest, EmbeddingEveryFloatDtype) {
  for (DType dt : float_dtypes())
    for (DType idt : {DType::i32, DType::u32})
      for (int64_t D : {int64_t(1), int64_t(33), int64_t(64), int64_t(4099)})
        for (float scale : {1.f, std::sqrt(float(D)) + 0.5f}) {
          SCOPED_TRACE(::testing::Message() << name(dt) << " " << name(idt) << " D=" << D << " scale=" << scale);
          const int64_t V = 50, T = 7;
          auto table = rand({V, D}, dt);
          std::vector<int64_t> ids(static_cast<size_t>(T));
          std::uniform_int_distribution<int64_t> pick(0, V - 1);
          for (auto& id : ids) id = pick(rng());
          ids[0] = V - 1;
          Array idx = index_array(ids, idt);
          Array out = poisoned(session(), {T, D}, dt);
          embedding(session(), table, idx, out, scale);
          std::vector<double> ref;
          for (int64_t id : ids)
            for (int64_t c = 0; c < D; ++c) ref.push_back(round_to(dt, table.values[size_t(id * D + c)] * scale));
          if (scale == 1.f) {
            EXPECT_SAME(values(out), ref);
          } else {
            MLXN_EXPECT_CLOSE(values(out), ref, tolerance(dt));
          }
        }
}

TEST_P(LayoutTest, EmbeddingOutOfRangeIds) {
  const int64_t V = 10, D = 40;
  for (DType idt : {DType::i32, DType::u32}) {
    SCOPED_TRACE(name(idt));
    auto table = rand({V, D}, DType::bf16);
    const int64_t bad = idt == DType::i32 ? -1 : V + 5;
    Array idx = index_array({3, bad, V - 1}, idt);
    Array out = poisoned(session(), {3, D}, DType::bf16);
    if (device().is_cpu()) {
      try {
        embedding(session(), table, idx, out);
        ADD_FAILURE() << "no error for id " << bad;
      } catch (const InvalidArgument& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("[embedding]"), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
        EXPECT_NE(msg.find("position 1"), std::string::npos) << msg;
      }
      // nothing was written
      for (double v : values(out)) ASSERT_TRUE(std::isnan(v));
    } else {
      embedding(session(), table, idx, out);
      std::vector<double> ref;
      for (int64_t id : {int64_t(3), int64_t(-1), V - 1})
        for (int64_t c = 0; c < D; ++c) ref.push_back(id < 0 ? 0.0 : table.values[size_t(id * D + c)]);
      EXPECT_SAME(values(out), ref);
    }
  }
}

TEST_P(LayoutTest, GatherRowsEveryDtype) {
  for (DType dt : all_dtypes())
    for (int64_t D : {int64_t(1), int64_t(7), int64_t(64), int64_t(1025)}) {
      SCOPED_TRACE(::testing::Message() << name(dt) << " D=" << D);
      const int64_t N = 20, M = 9;
      // src is a column slice of a wider buffer
      auto parent = rand({N, D + 1}, dt);
      const Tensor src = parent.tensor().slice(1, 1, 1 + D);
      const std::vector<double> sv = values(src);
      std::vector<int64_t> idx(static_cast<size_t>(M));
      std::uniform_int_distribution<int64_t> pick(0, N - 1);
      for (auto& i : idx) i = pick(rng());
      Array ia = index_array(idx, M % 2 ? DType::u32 : DType::i32);
      Array out = poisoned(session(), {M, D}, dt);
      gather_rows(session(), src, ia, out);
      std::vector<double> ref;
      for (int64_t i : idx) ref.insert(ref.end(), sv.begin() + i * D, sv.begin() + (i + 1) * D);
      EXPECT_SAME(values(out), ref);
      // out of range: CPU raises before writing, CUDA writes a zero row
      Array bad = index_array({0, N}, DType::i32);
      Array out2 = poisoned(session(), {2, D}, dt);
      if (device().is_cpu()) {
        MLXN_EXPECT_RAISES(InvalidArgument, "gather_rows", gather_rows(session(), src, bad, out2));
      } else {
        gather_rows(session(), src, bad, out2);
        std::vector<double> ref2(sv.begin(), sv.begin() + D);
        ref2.resize(static_cast<size_t>(2 * D), 0.0);
        EXPECT_SAME(values(out2), ref2);
      }
    }
}

struct KvCase {
  int64_t T, start;
  bool ring;
  bool use_positions;
};

TEST_P(LayoutTest, KvCacheWriteEveryDtypePair) {
  const int64_t H = 3, cap = 16;
  const std::vector<KvCase> cases{
      {1, 0, false, false}, {5, 11, false, false},  // linear, last rows
      {5, 14, true, false},                         // ring, wrapping
      {20, 3, true, false},                         // ring, more tokens than rows
      {4, 0, false, true},  {6, 0, true, true},     // positions, linear and ring
  };
  for (DType cdt : float_dtypes())
    for (DType sdt : float_dtypes())
      for (int64_t D : {int64_t(1), int64_t(33), int64_t(64)})
        for (const KvCase& kc : cases) {
          SCOPED_TRACE(::testing::Message()
                       << "cache " << name(cdt) << " src " << name(sdt) << " D=" << D << " T=" << kc.T
                       << " start=" << kc.start << " ring=" << kc.ring << " positions=" << kc.use_positions);
          auto cache = rand({H, cap, D}, cdt);
          auto src = rand({kc.T, H, D}, sdt);
          KvWriteParams p;
          p.start = kc.start;
          p.ring = kc.ring;
          std::vector<int64_t> rows(static_cast<size_t>(kc.T));
          Array pos;
          if (kc.use_positions) {
            // distinct positions; in ring mode beyond the capacity too
            std::vector<int64_t> perm(static_cast<size_t>(kc.ring ? 2 * cap : cap));
            for (size_t i = 0; i < perm.size(); ++i) perm[i] = int64_t(i);
            std::shuffle(perm.begin(), perm.end(), rng());
            std::vector<int64_t> chosen;
            std::vector<bool> used(static_cast<size_t>(cap), false);
            for (int64_t v : perm)
              if (int64_t(chosen.size()) < kc.T && !used[size_t(v % cap)]) {
                used[size_t(v % cap)] = true;
                chosen.push_back(v);
              }
            pos = index_array(chosen, DType::i32);
            p.positions = pos.tensor();
            for (int64_t t = 0; t < kc.T; ++t) rows[size_t(t)] = chosen[size_t(t)] % cap;
          } else {
            for (int64_t t = 0; t < kc.T; ++t) rows[size_t(t)] = kc.ring ? (kc.start + t) % cap : kc.start + t;
          }
          kv_cache_write(session(), cache, src, p);
          std::vector<double> ref = cache.values;
          const int64_t first = kc.ring && kc.T > cap ? kc.T - cap : 0;
          for (int64_t t = first; t < kc.T; ++t)
            for (int64_t h = 0; h < H; ++h)
              for (int64_t c = 0; c < D; ++c)
                ref[size_t((h * cap + rows[size_t(t)]) * D + c)] =
                    round_to(cdt, src.values[size_t((t * H + h) * D + c)]);
          EXPECT_SAME(values(cache), ref);
        }
}

TEST_P(LayoutTest, KvCacheWriteStridedAndOutOfRangePositions) {
  const int64_t H = 2, cap = 8, D = 32;
  // cache is one layer of a [layers, H, cap, D] buffer; src is K of a fused [T, 2, H, D] QK
  auto layers = rand({3, H, cap, D}, DType::bf16);
  const Tensor cache = layers.tensor().select(0, 1);
  auto qk = rand({4, 2, H, D}, DType::f32);
  const Tensor src = qk.tensor().select(1, 1);
  kv_cache_write(session(), cache, src, {2, std::nullopt, false});
  std::vector<double> ref = layers.values;
  const std::vector<double> sv = values(src);
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < D; ++c)
        ref[size_t(((1 * H + h) * cap + 2 + t) * D + c)] = round_to(DType::bf16, sv[size_t((t * H + h) * D + c)]);
  EXPECT_SAME(values(layers), ref);

  // positions out of range: the CPU raises before writing; CUDA skips those tokens
  auto c2 = rand({H, cap, D}, DType::f16);
  auto s2 = rand({3, H, D}, DType::f16);
  for (bool ring : {false, true}) {
    SCOPED_TRACE(ring);
    Array pos = index_array({1, ring ? -3 : cap, 5}, DType::i32);
    KvWriteParams p;
    p.positions = pos.tensor();
    p.ring = ring;
    if (device().is_cpu()) {
      MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(session(), c2, s2, p));
      EXPECT_SAME(values(c2), c2.values);
    } else {
      Array c3 = from_values(session(), c2.values, {H, cap, D}, DType::f16);
      kv_cache_write(session(), c3, s2, p);
      std::vector<double> r = c2.values;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t c = 0; c < D; ++c) {
          r[size_t((h * cap + 1) * D + c)] = s2.values[size_t((0 * H + h) * D + c)];
          r[size_t((h * cap + 5) * D + c)] = s2.values[size_t((2 * H + h) * D + c)];
        }
      EXPECT_SAME(values(c3), r);
    }
  }
}

TEST_P(LayoutTest, KvCacheWriteInCapturedGraph) {
  if (!device().is_cuda()) GTEST_SKIP() << "graph capture needs CUDA";
  const int64_t H = 8, cap = 32, D = 128;
  auto cache = rand({H, cap, D}, DType::bf16);
  Array pos = index_array({0}, DType::i32);
  Array step_src = poisoned(session(), {1, H, D}, DType::bf16);
  KvWriteParams p;
  p.positions = pos.tensor();
  session().begin_capture();
  kv_cache_write(session(), cache, step_src, p);
  Graph g = session().end_capture();
  std::vector<double> ref = cache.values;
  for (int64_t step : {int64_t(3), int64_t(4), int64_t(31)}) {
    auto src = rand({1, H, D}, DType::bf16);
    session().copy(step_src, src);
    const int32_t p32 = int32_t(step);
    session().upload(pos, &p32, sizeof p32);
    g.replay();
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < D; ++c) ref[size_t((h * cap + step) * D + c)] = src.values[size_t(h * D + c)];
  }
  EXPECT_SAME(values(cache), ref);
}

TEST_P(LayoutTest, EmptyIsANoOp) {
  Session& s = session();
  Array x = Array::empty({0, 5}, DType::bf16, device());
  Array y = Array::empty({0, 5}, DType::bf16, device());
  Array yt = Array::empty({5, 0}, DType::bf16, device());
  EXPECT_NO_THROW(copy(s, x, y));
  EXPECT_NO_THROW(transpose(s, x, yt));
  Array table = Array::empty({4, 8}, DType::f32, device());
  Array ids = Array::empty({0}, DType::i32, device());
  Array out = Array::empty({0, 8}, DType::f32, device());
  EXPECT_NO_THROW(embedding(s, table, ids, out));
  EXPECT_NO_THROW(gather_rows(s, table, ids, out));
  Array cache = Array::empty({2, 4, 8}, DType::f32, device());
  Array none = Array::empty({0, 2, 8}, DType::f32, device());
  EXPECT_NO_THROW(kv_cache_write(s, cache, none));
  Array heads = Array::empty({1, 2, 0, 8}, DType::f32, device());
  Array heads_out = Array::empty({1, 4, 0, 8}, DType::f32, device());
  EXPECT_NO_THROW(repeat_heads(s, heads, heads_out));
}

TEST_P(LayoutTest, BadInputsRaise) {
  Session& s = session();
  auto x = rand({4, 64}, DType::f32);
  Array y = poisoned(s, {4, 64}, DType::f32);
  Array y_bf = poisoned(s, {4, 64}, DType::bf16);
  Array y_shape = poisoned(s, {4, 63}, DType::f32);
  Array q = Array::empty({4, 64}, DType::q4_0, device());
  Array q_out = Array::empty({4, 64}, DType::q4_0, device());
  // copy: shape, dtype, block dtype, partial aliasing, self-overlapping dst
  MLXN_EXPECT_RAISES(InvalidArgument, "copy", copy(s, x, y_shape));
  MLXN_EXPECT_RAISES(InvalidArgument, "copy", copy(s, x, y_bf));
  MLXN_EXPECT_RAISES(InvalidArgument, "copy", copy(s, q, q_out));
  MLXN_EXPECT_RAISES(InvalidArgument, "copy", copy(s, x.tensor().slice(0, 0, 3), x.tensor().slice(0, 1, 4)));
  const Tensor overlapping(y.tensor().data(), DType::f32, {4, 64}, device(), {0, 1});
  MLXN_EXPECT_RAISES(InvalidArgument, "copy", copy(s, x, overlapping));
  EXPECT_NO_THROW(copy(s, x, x));  // the same view: a no-op
  // transpose / permute_021
  Array yt = poisoned(s, {64, 4}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "transpose", transpose(s, x, y));
  MLXN_EXPECT_RAISES(InvalidArgument, "transpose", transpose(s, x.tensor().select(0, 0), yt));
  auto sq = rand({8, 8}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "transpose", transpose(s, sq, sq));  // in place
  MLXN_EXPECT_RAISES(InvalidArgument, "permute_021", permute_021(s, x, yt));
  auto x3 = rand({2, 4, 8}, DType::f32);
  Array y3 = poisoned(s, {2, 4, 8}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "permute_021", permute_021(s, x3, y3));
  // slice
  Array ys = poisoned(s, {4, 10}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "slice", slice(s, x, ys, 1, 55));
  MLXN_EXPECT_RAISES(InvalidArgument, "slice", slice(s, x, ys, 1, -1));
  MLXN_EXPECT_RAISES(InvalidArgument, "slice", slice(s, x, ys, 2, 0));
  MLXN_EXPECT_RAISES(InvalidArgument, "slice", slice(s, x, ys, 0, 0));  // dim 1 differs
  // concat
  auto c1 = rand({4, 30}, DType::f32), c2 = rand({4, 34}, DType::f32), c3 = rand({4, 30}, DType::bf16);
  MLXN_EXPECT_RAISES(InvalidArgument, "concat", concat(s, {c1.tensor(), c1.tensor()}, 1, y));  // 60 != 64
  MLXN_EXPECT_RAISES(InvalidArgument, "concat", concat(s, {c3.tensor(), c2.tensor()}, 1, y));  // dtype
  MLXN_EXPECT_RAISES(InvalidArgument, "concat", concat(s, {c1.tensor(), c2.tensor()}, 0, y));  // other dims
  MLXN_EXPECT_RAISES(InvalidArgument, "concat", concat(s, std::span<const Tensor>(), 1, y));   // no inputs
  MLXN_EXPECT_RAISES(InvalidArgument, "concat",
                     concat(s, {x.tensor().slice(1, 0, 30), c2.tensor()}, 1, x));  // aliasing
  // repeat_heads
  auto kv = rand({1, 3, 4, 8}, DType::f32);
  Array kv_out = poisoned(s, {1, 8, 4, 8}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "repeat_heads", repeat_heads(s, kv, kv_out));  // 8 % 3
  Array kv_out2 = poisoned(s, {1, 6, 4, 9}, DType::f32);
  MLXN_EXPECT_RAISES(InvalidArgument, "repeat_heads", repeat_heads(s, kv, kv_out2));
  MLXN_EXPECT_RAISES(InvalidArgument, "repeat_heads", repeat_heads(s, x, y));  // not 4-D
  // embedding / gather_rows
  auto table = rand({10, 64}, DType::bf16);
  Array ids = index_array({1, 2, 3, 4}, DType::i32);
  Array ids_f = Array::empty({4}, DType::f32, device());
  Array ids_64 = Array::empty({4}, DType::i64, device());
  Array emb = poisoned(s, {4, 64}, DType::bf16);
  auto itable = rand({10, 64}, DType::i32);
  Array iemb = poisoned(s, {4, 64}, DType::i32);
  MLXN_EXPECT_RAISES(InvalidArgument, "embedding", embedding(s, table, ids, y));         // out dtype
  MLXN_EXPECT_RAISES(InvalidArgument, "embedding", embedding(s, table, ids_f, emb));     // ids dtype
  MLXN_EXPECT_RAISES(InvalidArgument, "embedding", embedding(s, itable, ids, iemb));     // int table
  MLXN_EXPECT_RAISES(InvalidArgument, "embedding", embedding(s, table, ids, emb, NAN));  // scale
  MLXN_EXPECT_RAISES(InvalidArgument, "embedding", embedding(s, table, ids, y_bf.tensor().slice(1, 0, 32)));
  MLXN_EXPECT_RAISES(InvalidArgument, "embedding", embedding(s, table, ids.tensor().slice(0, 0, 3), emb));
  MLXN_EXPECT_RAISES(InvalidArgument, "gather_rows", gather_rows(s, itable, ids_64, iemb));
  MLXN_EXPECT_RAISES(InvalidArgument, "gather_rows", gather_rows(s, q, ids, q_out));
  MLXN_EXPECT_RAISES(InvalidArgument, "gather_rows", gather_rows(s, itable, ids, itable.tensor().slice(0, 2, 6)));
  // kv_cache_write
  auto cache = rand({2, 8, 16}, DType::bf16);
  auto src = rand({3, 2, 16}, DType::f32);
  auto src_bad = rand({3, 4, 16}, DType::f32);
  auto src_int = rand({3, 2, 16}, DType::i32);
  auto icache = rand({2, 8, 16}, DType::i32);
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, cache, src, {6, std::nullopt, false}));
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, cache, src, {-1, std::nullopt, true}));
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, cache, src_bad));
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, cache, src_int));
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, icache, src));
  Array pos_u = index_array({0, 1, 2}, DType::u32);
  Array pos_short = index_array({0, 1}, DType::i32);
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, cache, src, {0, pos_u.tensor(), false}));
  MLXN_EXPECT_RAISES(InvalidArgument, "kv_cache_write", kv_cache_write(s, cache, src, {0, pos_short.tensor(), false}));
  EXPECT_NO_THROW(kv_cache_write(s, cache, src, {5, std::nullopt, false}));  // exactly fills the cache
  // a tensor on another device
  const Device other = device().is_cpu() ? Device::cuda(0) : Device::cpu();
  if (other.is_cpu() || cuda_device_count() > 0) {
    Array elsewhere = Array::empty({4, 64}, DType::f32, other);
    MLXN_EXPECT_RAISES(InvalidArgument, "copy", copy(s, elsewhere, y));
  }
}

MLXN_BACKEND_TESTS(LayoutTest);

}  // namespace
}  // namespace mlxn::test
