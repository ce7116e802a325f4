// CPU reduce family: cumsum, argmax, argsort, top_k. Rows are spread over cores.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "cpu/common.h"
#include "ops/reduce_args.h"
#include "ops/registry.h"

namespace mlxn::cpu {

using detail::ArgmaxArgs;
using detail::ArgsortArgs;
using detail::CumsumArgs;
using detail::TopKArgs;

namespace {

// Maps a float to an unsigned key whose integer order is the library's float order: NaN
// (any payload or sign) above +inf, -0 equal to +0, otherwise numeric order.
inline uint32_t order_key(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0xffffffffu;
  if (u == 0x80000000u) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <class T>
void cumsum_rows(const CumsumArgs& a) {
  const int64_t cols = a.x.cols;
  parallel_for(a.x.rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = static_cast<const T*>(a.x.data) + r * a.x.row_stride;
      T* y = static_cast<T*>(a.out.data) + r * a.out.row_stride;
      double acc = 0;  // in place: x[i] is read before y[i] is written
      for (int64_t i = 0; i < cols; ++i) {
        acc += double(to_float(x[i]));
        y[i] = from_float<T>(float(acc));
      }
    }
  });
}

void cumsum_cpu(Session&, const CumsumArgs& a) {
  dispatch_float(a.x.dtype, "cumsum", [&]<class T>() { cumsum_rows<T>(a); });
}

template <class T>
void argmax_rows(const ArgmaxArgs& a) {
  const int64_t cols = a.x.cols;
  parallel_for(a.x.rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = static_cast<const T*>(a.x.data) + r * a.x.row_stride;
      uint32_t best = order_key(to_float(x[0]));
      int64_t at = 0;
      for (int64_t i = 1; i < cols; ++i) {
        const uint32_t k = order_key(to_float(x[i]));
        if (k > best) {
          best = k;
          at = i;
        }  // strict: the first of equal maxima stays
      }
      a.out[r] = int32_t(at);
    }
  });
}

void argmax_cpu(Session&, const ArgmaxArgs& a) {
  dispatch_float(a.x.dtype, "argmax", [&]<class T>() { argmax_rows<T>(a); });
}

// Sorts idx[0..n) by (key descending, index ascending): a strict total order, so the
// result is the stable descending order whatever the algorithm.
struct KeyOrder {
  const uint32_t* key;
  bool operator()(int32_t a, int32_t b) const { return key[a] != key[b] ? key[a] > key[b] : a < b; }
};

void argsort_cpu(Session&, const ArgsortArgs& a) {
  const int64_t cols = a.x.cols;
  parallel_for(a.x.rows, 16 * cols, [&](int64_t r0, int64_t r1) {
    std::vector<uint32_t> key(static_cast<size_t>(cols));
    std::vector<int32_t> idx(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = static_cast<const float*>(a.x.data) + r * a.x.row_stride;
      for (int64_t i = 0; i < cols; ++i) key[size_t(i)] = order_key(x[i]);
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(), KeyOrder{key.data()});
      int32_t* out = static_cast<int32_t*>(a.out.data) + r * a.out.row_stride;
      std::memcpy(out, idx.data(), idx.size() * sizeof(int32_t));
    }
  });
}

void top_k_cpu(Session&, const TopKArgs& a) {
  const int64_t cols = a.x.cols, k = a.k;
  parallel_for(a.x.rows, 4 * cols, [&](int64_t r0, int64_t r1) {
    std::vector<uint32_t> key(static_cast<size_t>(cols));
    std::vector<int32_t> idx(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = static_cast<const float*>(a.x.data) + r * a.x.row_stride;
      for (int64_t i = 0; i < cols; ++i) key[size_t(i)] = order_key(x[i]);
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), KeyOrder{key.data()});
      float* v = static_cast<float*>(a.values.data) + r * a.values.row_stride;
      int32_t* ix = static_cast<int32_t*>(a.indices.data) + r * a.indices.row_stride;
      for (int64_t j = 0; j < k; ++j) {
        ix[j] = idx[size_t(j)];
        v[j] = x[idx[size_t(j)]];
      }
    }
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(cumsum, reduce, cpu, kFloatTypes, detail::CumsumArgs, cumsum_cpu);
MLXN_REGISTER_KERNEL(argmax, reduce, cpu, kFloatTypes, detail::ArgmaxArgs, argmax_cpu);
MLXN_REGISTER_KERNEL(argsort, reduce, cpu, DTypeSet{DType::f32}, detail::ArgsortArgs, argsort_cpu);
MLXN_REGISTER_KERNEL(top_k, reduce, cpu, DTypeSet{DType::f32}, detail::TopKArgs, top_k_cpu);

}  // namespace mlxn::cpu
