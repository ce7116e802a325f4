// CUDA entry for the matmul family.
//   matmul: cuBLASLt. One handle per device, created on first use; for every distinct problem
//   (shapes, strides, operand alignment) the descriptors and the heuristic's algorithm are
//   built once and cached, so a steady-state call costs a hash lookup and cublasLtMatmul.
//   Workspace comes from the session's scratch pool (stream-ordered reuse). A few rows
//   against a small weight (a router) take the mat-vec kernel instead: lower latency.
//   matmul_id: the mat-vec kernel for few routed rows; otherwise the pairs are grouped by
//   expert on the device (moe_group_tokens) and a grouped GEMM kernel walks the groups, so
//   each expert's rows form one GEMM without the host learning the group sizes.
#include <cublasLt.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>
#include <unordered_map>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/grouped_gemm.h"
#include "cuda/kernels/matmul.cuh"
#include "ops/matmul_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::MatmulArgs;
using detail::MatmulIdArgs;
using detail::MatOperand;
namespace k = kernels;

namespace {

// Every kernel of this family is launched with programmatic dependent launch: in a decode
// chain (route -> expert products -> activation -> sum) each launch overlaps the tail of the
// previous kernel; each kernel waits for its predecessor (pdl_wait) before touching memory.

// Dense products with at most this many rows and weights of at most this many elements run
// on the mat-vec kernel rather than cuBLASLt.
constexpr int64_t kDenseMatvecMaxRows = 4;
constexpr int64_t kDenseMatvecMaxWeights = int64_t(1) << 22;

// Workspace the heuristic may ask for (cuBLAS's recommendation for Hopper).
constexpr size_t kMaxWorkspace = size_t(32) << 20;

void check_lt(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  if (st == CUBLAS_STATUS_ALLOC_FAILED)
    throw_error<OutOfMemory>("matmul", "cuBLASLt ", what, ": ", cublasLtGetStatusString(st));
  throw_error<DeviceError>("matmul", "cuBLASLt ", what, ": ", cublasLtGetStatusString(st));
}

// One problem as cuBLASLt sees it (column-major): D[n, m] = op(X) . op(Y), X from b, Y from a.
struct PlanKey {
  int device;
  DType dtype;
  bool a_col, b_col;
  int64_t m, n, k, lda, ldb, ldo, batch, sa, sb, so;
  int align_a, align_b, align_o;
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const noexcept {
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
    mix(uint64_t(key.device));
    mix(uint64_t(key.dtype) | uint64_t(key.a_col) << 8 | uint64_t(key.b_col) << 9);
    for (int64_t v : {key.m, key.n, key.k, key.lda, key.ldb, key.ldo, key.batch, key.sa, key.sb, key.so})
      mix(uint64_t(v));
    mix(uint64_t(key.align_a) | uint64_t(key.align_b) << 16 | uint64_t(key.align_o) << 32);
    return size_t(h);
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t x = nullptr, y = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

// Per-device state, created on first use and kept for the life of the process (destroying
// cuBLASLt objects during static destruction could outlive the CUDA context).
struct DeviceLt {
  cublasLtHandle_t handle = nullptr;
  std::mutex mu;
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans;
};

DeviceLt& device_lt(int device) {
  static std::mutex mu;
  static std::unordered_map<int, DeviceLt*> devices;
  std::lock_guard<std::mutex> lock(mu);
  DeviceLt*& d = devices[device];
  if (!d) {
    auto fresh = std::make_unique<DeviceLt>();
    check_lt(cublasLtCreate(&fresh->handle), "handle creation");
    d = fresh.release();
  }
  return *d;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f16:
      return CUDA_R_16F;
    case DType::bf16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

// Largest power of two (<= 256 bytes) dividing the base address and, for batches, the stride.
int alignment_of(const void* p, int64_t batch_stride, int64_t batch, size_t es) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  if (batch > 1) v |= uintptr_t(batch_stride) * es;
  int a = 256;
  while (a > 1 && (v & uintptr_t(a - 1))) a >>= 1;
  return a;
}

template <class V>
void set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, V v) {
  check_lt(cublasLtMatrixLayoutSetAttribute(l, attr, &v, sizeof(v)), "layout attribute");
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld), "layout creation");
  if (batch > 1) {
    set_layout(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, int32_t(batch));
    set_layout(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, int64_t(stride));
  }
  return l;
}

Plan build_plan(cublasLtHandle_t handle, const PlanKey& key) {
  Plan plan;
  const cudaDataType_t t = cuda_type(key.dtype);
  check_lt(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor creation");
  // X = b: stored [n][k] (row-major b) is a column-major k x n matrix, used transposed.
  const cublasOperation_t op_x = key.b_col ? CUBLAS_OP_N : CUBLAS_OP_T;
  // Y = a: stored [m][k] (row-major a) is a column-major k x m matrix, used as is.
  const cublasOperation_t op_y = key.a_col ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_x, sizeof(op_x)), "transa");
  check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_y, sizeof(op_y)), "transb");
  plan.x = key.b_col ? make_layout(t, key.n, key.k, key.ldb, key.batch, key.sb)
                     : make_layout(t, key.k, key.n, key.ldb, key.batch, key.sb);
  plan.y = key.a_col ? make_layout(t, key.m, key.k, key.lda, key.batch, key.sa)
                     : make_layout(t, key.k, key.m, key.lda, key.batch, key.sa);
  plan.d = make_layout(t, key.n, key.m, key.ldo, key.batch, key.so);

  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "preference creation");
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, auto v) {
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v)), "preference attribute");
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kMaxWorkspace));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t(key.align_b));  // cuBLASLt's A is our b
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, uint32_t(key.align_a));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, uint32_t(key.align_o));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32_t(key.align_o));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.x, plan.y, plan.d, plan.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatrixLayoutDestroy(plan.x);
    cublasLtMatrixLayoutDestroy(plan.y);
    cublasLtMatrixLayoutDestroy(plan.d);
    cublasLtMatmulDescDestroy(plan.desc);
    throw_error<Unsupported>("matmul", "cuBLASLt has no algorithm for ", name(key.dtype), " m=", key.m, " n=", key.n,
                             " k=", key.k, " batch=", key.batch, " (", cublasLtGetStatusString(st), ")");
  }
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
  return plan;
}

// One (strided-batched) product on the session's stream.
void run_lt(Session& s, DType dtype, int64_t m, int64_t n, int64_t k, const MatOperand& a, const MatOperand& b,
            void* out, int64_t ldo, int64_t out_stride, int64_t batch, float alpha, float beta) {
  if (batch > INT_MAX) throw_error<Unsupported>("matmul", "batch of ", batch, " exceeds cuBLASLt's limit");
  const size_t es = element_size(dtype);
  PlanKey key{s.device().index,
              dtype,
              a.col_major,
              b.col_major,
              m,
              n,
              k,
              a.ld,
              b.ld,
              ldo,
              batch,
              batch > 1 ? a.batch_stride : 0,
              batch > 1 ? b.batch_stride : 0,
              batch > 1 ? out_stride : 0,
              alignment_of(a.data, a.batch_stride, batch, es),
              alignment_of(b.data, b.batch_stride, batch, es),
              alignment_of(out, out_stride, batch, es)};
  DeviceLt& lt = device_lt(key.device);
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(lt.mu);
    auto it = lt.plans.find(key);
    if (it == lt.plans.end()) it = lt.plans.emplace(key, build_plan(lt.handle, key)).first;
    plan = it->second;
  }
  ScratchBuffer workspace;
  if (plan.workspace > 0) workspace = s.pool().acquire(plan.workspace);
  check_lt(cublasLtMatmul(lt.handle, plan.desc, &alpha, b.data, plan.x, a.data, plan.y, &beta, out, plan.d, out, plan.d,
                          &plan.algo, workspace.data(), plan.workspace, stream_of(s)),
           "matmul");
}

// ---- mat-vec kernels (decode) ---------------------------------------------------------------

template <class T, int R, int U, int W, int MINB>
void launch_matvec(Session& s, const k::MatmulIdParams<T>& p, bool aligned) {
  constexpr int kRowsPerBlock = W * R;
  auto kernel = aligned ? k::matvec_id_kernel<T, R, U, W, MINB, true> : k::matvec_id_kernel<T, R, U, W, MINB, false>;
  const int64_t row_blocks = (p.n + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t slots = std::max<int64_t>(1, resident_blocks(kernel, W * 32) / p.pairs);
  const dim3 grid(unsigned(p.pairs), unsigned(std::min({row_blocks, slots, kMaxGridY})));
  launch_pdl(s, "matmul_id", kernel, grid, W * 32, 0, p);
}

// Output rows (over all pairs) up to which a mat-vec is latency, not bandwidth: a router's
// 128 rows, a shared expert's one-row gate.
constexpr int64_t kMatvecFewRows = 1024;

// The mat-vec for decode-sized products (few routed rows, or a dense GEMV): two rows per
// warp (x loaded once per two rows), two 16-byte loads per row and lane in flight, registers
// capped at 64 so that 32 warps stay resident per SM; the fastest of the shapes compared in
// bench/NOTES.md. A few rows in all take one row per warp with eight loads per lane in flight
// instead: a row of up to 2048 bf16 values is then one DRAM round trip, not four, and the
// warps that the default's register cap keeps resident would have no rows to take anyway.
template <class T>
void matvec(Session& s, const k::MatmulIdParams<T>& p, bool aligned) {
  if (int64_t(p.pairs) * p.n <= kMatvecFewRows)
    launch_matvec<T, 1, 8, 4, 1>(s, p, aligned);
  else
    launch_matvec<T, 2, 2, 4, 8>(s, p, aligned);
}

void matmul_cuda(Session& s, const MatmulArgs& a) {
  if (a.k == 0) {  // no products: out = beta * out
    dispatch_float(a.dtype, "matmul", [&]<class T>() {
      const int64_t total = a.batch * a.m * a.n;
      const unsigned grid = unsigned(std::min<int64_t>((total + 255) / 256, 65536));
      launch_pdl(s, "matmul", k::scale_matrix_kernel<T>, grid, 256, 0, static_cast<T*>(a.out), a.batch, a.m, a.n, a.ldo,
                 a.out_batch_stride, a.beta);
    });
    return;
  }
  // A few rows against a small row-major weight: the mat-vec kernel, whose latency is lower
  // than a cuBLASLt launch's at this size (a router, a small projection in decode).
  if (a.m <= kDenseMatvecMaxRows && a.batch == 1 && a.alpha == 1.f && a.beta == 0.f && !a.a.col_major &&
      !a.b.col_major && a.b.ld == a.k && a.n * a.k <= kDenseMatvecMaxWeights && a.n <= INT_MAX) {
    dispatch_float(a.dtype, "matmul", [&]<class T>() {
      constexpr int N = k::Vec<T>::N;
      k::MatmulIdParams<T> p{static_cast<const T*>(a.a.data),
                             a.a.ld,
                             1,
                             1,
                             static_cast<const T*>(a.b.data),
                             nullptr,
                             static_cast<T*>(a.out),
                             1,
                             int(a.n),
                             int(a.k),
                             int(a.m),
                             a.ldo};
      matvec(s, p, aligned16(a.a.data) && aligned16(a.b.data) && a.k % N == 0 && a.a.ld % N == 0);
    });
    return;
  }
  if (a.group == 1) {
    run_lt(s, a.dtype, a.m, a.n, a.k, a.a, a.b, a.out, a.ldo, a.out_batch_stride, a.batch, a.alpha, a.beta);
    return;
  }
  // Grouped heads that could not be folded into rows: group member j of every b-batch is one
  // strided batch (a and out advance by `group` batches, b by one).
  const size_t es = element_size(a.dtype);
  for (int64_t j = 0; j < a.group; ++j) {
    MatOperand aj = a.a;
    aj.data = static_cast<const char*>(a.a.data) + size_t(j * a.a.batch_stride) * es;
    aj.batch_stride = a.a.batch_stride * a.group;
    void* oj = static_cast<char*>(a.out) + size_t(j * a.out_batch_stride) * es;
    run_lt(s, a.dtype, a.m, a.n, a.k, aj, a.b, oj, a.ldo, a.out_batch_stride * a.group, a.batch / a.group, a.alpha,
           a.beta);
  }
}

// ---- expert-routed -------------------------------------------------------------------------

template <class T>
void matmul_id_typed(Session& s, const MatmulIdArgs& a) {
  const char* op = "matmul_id";
  constexpr int N = k::Vec<T>::N;
  const int64_t pairs = a.tokens * a.top_k;
  if (a.n > INT_MAX || a.k > INT_MAX || a.experts > INT_MAX)
    throw_error<Unsupported>(op, "cuda: N = ", a.n, ", K = ", a.k, ", E = ", a.experts, " exceed 32-bit indexing");
  k::MatmulIdParams<T> p{static_cast<const T*>(a.x),
                         a.x_row_stride,
                         a.x_per_slot ? 1 : 0,
                         int(a.top_k),
                         static_cast<const T*>(a.w),
                         static_cast<const uint32_t*>(a.ids),
                         static_cast<T*>(a.out),
                         int(a.experts),
                         int(a.n),
                         int(a.k),
                         int(pairs),
                         a.n};
  const bool aligned = aligned16(a.x) && aligned16(a.w) && a.k % N == 0 && a.x_row_stride % N == 0;

  if (pairs <= kRoutedMatvecMaxPairs) {
    matvec(s, p, aligned);
    return;
  }

  bool tensor_cores = false;
  if constexpr (!std::is_same_v<T, float>) tensor_cores = aligned && (reinterpret_cast<uintptr_t>(a.out) & 3) == 0;
  const ExpertGroups<T> g =
      group_by_expert(s, op, p, a.ids, grouped_tile_rows(pairs, a.experts, tensor_cores, k::kSimtBM));
  if constexpr (!std::is_same_v<T, float>) {
    if (tensor_cores) {
      grouped_mma(s, op, g, k::DenseExpertTiles<T>{});
      return;
    }
  }
  const dim3 grid(unsigned((a.n + k::kSimtBN - 1) / k::kSimtBN), unsigned(g.tile_bound));
  launch_pdl(s, op, k::grouped_simt_kernel<T>, grid, k::kSimtThreads, 0, g.params);
}

void matmul_id_cuda(Session& s, const MatmulIdArgs& a) {
  dispatch_float(a.dtype, "matmul_id", [&]<class T>() { matmul_id_typed<T>(s, a); });
}

}  // namespace

MLXN_REGISTER_KERNEL(matmul, matmul, cuda, kFloatTypes, detail::MatmulArgs, matmul_cuda);
MLXN_REGISTER_KERNEL(matmul_id, matmul, cuda, kFloatTypes, detail::MatmulIdArgs, matmul_id_cuda);

}  // namespace mlxn::cuda
