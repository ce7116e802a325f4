// CUDA entry points of the GGUF quant family.
//   dequantize / embedding: one thread per 32-value unit, decoded through the traits table
//     (a float tensor's dequantize: an element-wise conversion).
//   one token by a Q4_0 (K % 256 == 0), Q4_K or Q5_K weight (plain or routed; x bf16/f16),
//     and 2..8 rows by Q4_K: the integer tensor-core mat-vecs (quant_gguf_matvec.cu);
//   more routed rows than 13 per expert by Q4_K or Q5_K experts (an MoE prefill, x bf16/f16):
//     the rows grouped by expert, then the grouped tensor-core GEMM with each expert's
//     superblocks decoded in shared memory (quant_gguf_expert_tiles.cuh);
//   matmul, M <= 64, and every other expert-routed matmul: the tensor-core mat-vec
//     (quant_gguf_matvec.cu), routed rows grouped by expert on the device first.
//   matmul, M > 64: the weight dequantized once into a pooled scratch buffer in x's dtype,
//     then one cuBLASLt GEMM (f32 compute), the prefill path.
#include <cublasLt.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/grouped_gemm.h"
#include "cuda/kernels/quant_gguf.cuh"
#include "cuda/kernels/quant_gguf_expert_tiles.cuh"
#include "cuda/quant_gguf.h"
#include "ops/quant_gguf_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::GgufDequantArgs;
using detail::GgufEmbeddingArgs;
using detail::GgufMatmulArgs;
namespace k = kernels;

namespace {

// Rows above which a plain matmul dequantizes the weight and runs a GEMM.
constexpr int64_t kMatvecMaxRows = 64;
// Largest expert count the on-device grouping handles (its counters live in shared memory).
constexpr int64_t kMaxExperts = 6000;

unsigned unit_grid(int64_t units) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((units + 255) / 256, int64_t(1) << 20)));
}

bool rows_vectorizable(const detail::RowView& v, size_t elem) {
  return aligned16(v.data) && (v.row_stride * int64_t(elem)) % 16 == 0;  // units are 32 elements
}

// packed: the weight feeds a GEMM with half operands; see gguf_dequant_kernel.
template <class T>
void dequantize_into(Session& s, DType w_dtype, const void* w, int64_t w_row_bytes, int64_t rows, int64_t k, T* out,
                     int64_t out_row_stride, bool vec, const char* op, bool packed = false) {
  const int64_t upr = k / 32, units = rows * upr;
  detail::dispatch_gguf_block(w_dtype, op, [&]<class B>() {
    const auto* wp = static_cast<const uint8_t*>(w);
    const unsigned grid = unit_grid(units);
    cudaStream_t st = stream_of(s);
    if constexpr (sizeof(T) == 2) {
      if (packed && vec) {
        k::gguf_dequant_kernel<B, T, true, true><<<grid, 256, 0, st>>>(wp, w_row_bytes, out, out_row_stride, rows, upr);
        check_launch(s, op);
        return;
      }
    }
    if (vec)
      k::gguf_dequant_kernel<B, T, true><<<grid, 256, 0, st>>>(wp, w_row_bytes, out, out_row_stride, rows, upr);
    else
      k::gguf_dequant_kernel<B, T, false><<<grid, 256, 0, st>>>(wp, w_row_bytes, out, out_row_stride, rows, upr);
    check_launch(s, op);
  });
}

void dequantize_cuda(Session& s, const GgufDequantArgs& a) {
  const char* op = "gguf_dequantize";
  dispatch_float(a.out.dtype, op, [&]<class T>() {
    T* out = static_cast<T*>(a.out.data);
    if (!is_float(a.w_dtype)) {
      dequantize_into<T>(s, a.w_dtype, a.w, a.w_row_bytes, a.rows, a.k, out, a.out.row_stride,
                         rows_vectorizable(a.out, sizeof(T)), op);
      return;
    }
    // A float tensor: a plain conversion. Its rows need not hold whole 32-value units, so it
    // does not go through the unit decoder.
    const int64_t count = a.rows * a.k;
    const unsigned grid = unit_grid(count / 32 + 1);
    dispatch_float(a.w_dtype, op, [&]<class S>() {
      const S* src = static_cast<const S*>(a.w);
      if (a.rows == 1 || a.out.row_stride == a.k)
        k::convert_kernel<S, T><<<grid, 256, 0, stream_of(s)>>>(src, out, count);
      else
        k::convert_rows_kernel<S, T><<<grid, 256, 0, stream_of(s)>>>(src, out, a.out.row_stride, a.rows, a.k);
    });
    check_launch(s, op);
  });
}

void embedding_cuda(Session& s, const GgufEmbeddingArgs& a) {
  const char* op = "gguf_embedding";
  if (a.dim % 32 != 0)
    throw_error<Unsupported>(op, "cuda: table rows of ", a.dim, " elements (a multiple of 32 is required)");
  dispatch_float(a.out.dtype, op, [&]<class T>() {
    detail::dispatch_gguf_block(a.table_dtype, op, [&]<class B>() {
      const int64_t upr = a.dim / 32, units = a.count * upr;
      const auto* tp = static_cast<const uint8_t*>(a.table);
      auto* out = static_cast<T*>(a.out.data);
      const bool vec = rows_vectorizable(a.out, sizeof(T));
      auto go = [&]<class I>() {
        const auto* ids = static_cast<const I*>(a.ids);
        if (vec)
          k::gguf_embedding_kernel<B, T, I, true><<<unit_grid(units), 256, 0, stream_of(s)>>>(
              tp, a.table_row_bytes, a.vocab, ids, out, a.out.row_stride, a.count, upr, a.scale);
        else
          k::gguf_embedding_kernel<B, T, I, false><<<unit_grid(units), 256, 0, stream_of(s)>>>(
              tp, a.table_row_bytes, a.vocab, ids, out, a.out.row_stride, a.count, upr, a.scale);
      };
      if (a.ids_dtype == DType::i32)
        go.template operator()<int32_t>();
      else
        go.template operator()<uint32_t>();
      check_launch(s, op);
    });
  });
}

// ---- cuBLASLt GEMM: out[M, N] = x[M, K] · W[N, K]^T --------------------------------------

void lt_check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(detail::concat("[gguf_matmul] cuBLASLt ", what, " failed with status ", int(st)));
}

// One handle per device, created on first use and kept for the life of the process.
cublasLtHandle_t lt_handle() {
  static std::mutex mu;
  static std::map<int, cublasLtHandle_t> handles;
  int dev = 0;
  MLXN_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles.find(dev);
  if (it != handles.end()) return it->second;
  cublasLtHandle_t h = nullptr;
  lt_check(cublasLtCreate(&h), "create");
  handles[dev] = h;
  return h;
}

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, __half>)
    return CUDA_R_16F;
  else
    return CUDA_R_16BF;
}

template <class T>
void gemm_xwt(Session& s, const T* x, int64_t ldx, const T* w, T* out, int64_t ldo, int64_t m, int64_t n, int64_t kk) {
  constexpr size_t kWorkspace = size_t(32) << 20;
  ScratchBuffer ws = s.pool().acquire(kWorkspace);
  // Column-major view: out^T [N, M] = op_T(W as [K, N]) · x^T as [K, M].
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  auto cleanup = [&] {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
  };
  try {
    lt_check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    lt_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
    lt_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    constexpr cudaDataType_t dt = cuda_type<T>();
    lt_check(cublasLtMatrixLayoutCreate(&la, dt, uint64_t(kk), uint64_t(n), kk), "layout A");
    lt_check(cublasLtMatrixLayoutCreate(&lb, dt, uint64_t(kk), uint64_t(m), ldx), "layout B");
    lt_check(cublasLtMatrixLayoutCreate(&lc, dt, uint64_t(n), uint64_t(m), ldo), "layout C");
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "preference");
    const size_t wsz = ws.size();
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz),
             "workspace preference");
    cublasLtMatmulHeuristicResult_t heur{};
    int found = 0;
    cublasLtHandle_t h = lt_handle();
    lt_check(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, 1, &heur, &found), "heuristic");
    if (found == 0)
      throw_error<Unsupported>("gguf_matmul", "cuBLASLt has no algorithm for [", m, ", ", kk, "] x [", n, ", ", kk,
                               "]");
    const float alpha = 1.f, beta = 0.f;
    lt_check(cublasLtMatmul(h, desc, &alpha, w, la, x, lb, &beta, out, lc, out, lc, &heur.algo, ws.data(), wsz,
                            stream_of(s)),
             "matmul");
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

template <class T>
void gemm_path(Session& s, const GgufMatmulArgs& a) {
  const T* x = static_cast<const T*>(a.x.data);
  T* out = static_cast<T*>(a.out.data);
  const auto* w = static_cast<const T*>(a.w);
  ScratchBuffer wd;
  if (a.w_dtype != a.x.dtype) {
    // The weight as x's dtype: dequantized (or converted), row-major [N, K].
    wd = s.pool().acquire(size_t(a.n * a.k) * sizeof(T));
    T* dst = static_cast<T*>(wd.data());
    if (is_float(a.w_dtype)) {
      const int64_t count = a.n * a.k;
      dispatch_float(a.w_dtype, "gguf_matmul", [&]<class S>() {
        k::convert_kernel<S, T>
            <<<unit_grid(count / 32 + 1), 256, 0, stream_of(s)>>>(static_cast<const S*>(a.w), dst, count);
      });
      check_launch(s, "gguf_matmul");
    } else {
      dequantize_into<T>(s, a.w_dtype, a.w, a.w_row_bytes, a.n, a.k, dst, a.k, aligned16(dst), "gguf_matmul",
                         /*packed=*/true);
    }
    w = dst;
  }
  gemm_xwt<T>(s, x, a.x.row_stride, w, out, a.out.row_stride, a.tokens, a.n, a.k);
}

// Routed rows per expert above which a Q4_K or Q5_K routed call runs the grouped GEMM (each
// expert's superblocks decoded in shared memory, GgufExpertTiles) instead of the grouped
// mat-vec. Measured on an H100 (E 128, N 768, K 2048, Q4_K, top 8; bench/NOTES.md run 265):
// grouped mat-vec 90 / 208 us at 128 / 512 tokens, grouped GEMM 116 / 117 / 151 us at 128 /
// 256 / 512: they cross near 210 tokens, ~13 routed rows per expert.
constexpr int64_t kGroupedMinRowsPerExpert = 13;

// The grouped GEMM's domain: a Q4_K or Q5_K stack (16-byte superblocks) with 16-byte aligned
// rows, 16-bit x with 16-byte aligned rows, out rows back to back and 4-byte aligned, 32-bit
// sizes, and enough routed rows per expert.
bool grouped_prefill(const GgufMatmulArgs& a) {
  const int64_t es = int64_t(element_size(a.x.dtype)), pairs = a.tokens * a.top_k;
  return (a.w_dtype == DType::q4_k || a.w_dtype == DType::q5_k) && a.x.dtype != DType::f32 &&
         pairs > std::max<int64_t>(64, kGroupedMinRowsPerExpert * a.experts) && aligned16(a.w) &&
         a.w_row_bytes % 16 == 0 && aligned16(a.x.data) && (a.x.row_stride * es) % 16 == 0 && a.out.row_stride == a.n &&
         aligned_to(a.out.data, 4) && a.n <= INT_MAX && a.k <= INT_MAX && a.experts <= INT_MAX && pairs <= INT_MAX;
}

// Routed rows grouped by expert; each expert's superblocks dequantized in shared memory by the
// grouped GEMM.
void run_grouped(Session& s, const GgufMatmulArgs& a, const char* op) {
  dispatch_half(a.x.dtype, op, [&]<class T>() {
    k::MatmulIdParams<T> p{};
    p.x = static_cast<const T*>(a.x.data);
    p.x_row_stride = a.x.row_stride;
    p.x_per_slot = a.x_per_slot ? 1 : 0;
    p.top_k = int(a.top_k);
    p.ids = static_cast<const uint32_t*>(a.ids);
    p.out = static_cast<T*>(a.out.data);
    p.experts = int(a.experts), p.n = int(a.n), p.k = int(a.k), p.pairs = int(a.tokens * a.top_k);
    p.out_row_stride = a.n;
    const ExpertGroups<T> g = group_by_expert(s, op, p, a.ids, grouped_tile_rows(p.pairs, p.experts, true, 0));
    const auto* w = static_cast<const uint8_t*>(a.w);
    if (a.w_dtype == DType::q4_k)
      grouped_mma(s, op, g, k::GgufExpertTiles<T, gguf::BlockQ4_K>{w, a.w_row_bytes});
    else
      grouped_mma(s, op, g, k::GgufExpertTiles<T, gguf::BlockQ5_K>{w, a.w_row_bytes});
  });
}

void matmul_cuda(Session& s, const GgufMatmulArgs& a) {
  if (integer_matvec(a)) {
    gguf_matvec_i8(s, a);
    return;
  }
  const char* op = a.ids ? "gguf_matmul_id" : "gguf_matmul";
  const bool float_w = is_float(a.w_dtype);
  if (!a.ids) {
    if (a.tokens > kMatvecMaxRows || (float_w && a.k % 32 != 0)) {
      dispatch_float(a.x.dtype, op, [&]<class T>() { gemm_path<T>(s, a); });
      return;
    }
    gguf_matvec(s, a, GgufGroups{});
    return;
  }
  if (float_w && a.k % 32 != 0)
    throw_error<Unsupported>(op, "cuda: float expert weights need K a multiple of 32, got ", a.k);
  if (grouped_prefill(a)) {
    run_grouped(s, a, op);
    return;
  }
  if (a.experts > kMaxExperts) throw_error<Unsupported>(op, "cuda: more than ", kMaxExperts, " experts");
  // Group the routed rows by expert on the device: offsets [E + 2], order [P], active
  // [E + 1], n_active [1], all ints in one scratch buffer.
  const int64_t pairs = a.tokens * a.top_k, buckets = a.experts + 1;
  ScratchBuffer scratch = s.pool().acquire(size_t(buckets + 1 + pairs + buckets + 1) * sizeof(int));
  int* base = static_cast<int*>(scratch.data());
  GgufGroups gr;
  int* offsets = base;
  int* order = offsets + buckets + 1;
  int* active = order + pairs;
  int* n_active = active + buckets;
  const size_t smem = size_t(2 * buckets) * sizeof(int);
  if (a.ids_dtype == DType::i32)
    k::gguf_group_by_expert_kernel<int32_t><<<1, 1024, smem, stream_of(s)>>>(
        static_cast<const int32_t*>(a.ids), int(pairs), int(a.experts), offsets, order, active, n_active);
  else
    k::gguf_group_by_expert_kernel<uint32_t><<<1, 1024, smem, stream_of(s)>>>(
        static_cast<const uint32_t*>(a.ids), int(pairs), int(a.experts), offsets, order, active, n_active);
  check_launch(s, op);
  gr.offsets = offsets;
  gr.order = order;
  gr.active = active;
  gr.n_active = n_active;
  gr.grid_buckets = int(std::min(buckets, pairs + 1));
  gguf_matvec(s, a, gr);
}

}  // namespace

MLXN_REGISTER_KERNEL(gguf_dequantize, quant_gguf, cuda, detail::kGgufWeightTypes, detail::GgufDequantArgs,
                     dequantize_cuda);
MLXN_REGISTER_KERNEL(gguf_matmul, quant_gguf, cuda, detail::kGgufWeightTypes, detail::GgufMatmulArgs, matmul_cuda);
MLXN_REGISTER_KERNEL(gguf_matmul_id, quant_gguf, cuda, detail::kGgufWeightTypes, detail::GgufMatmulArgs, matmul_cuda);
MLXN_REGISTER_KERNEL(gguf_embedding, quant_gguf, cuda, detail::kGgufWeightTypes, detail::GgufEmbeddingArgs,
                     embedding_cuda);

}  // namespace mlxn::cuda
