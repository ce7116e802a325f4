// CUDA entry for MLX affine quantized matmuls:
//   up to 8 rows of x, or every expert-routed slot, at 4 bits (x bf16/f16): x turned into
//     fixed point once, then the integer tensor-core mat-vec (quant_mlx_qmv_i8.cuh for one
//     row or slot, quant_mlx_qmv_i8_batch.cuh for 2..8 rows at group size 64 or 128);
//   up to kMatvecMaxRows rows of x, and the other expert-routed calls: x written once in the
//     mma's order, then the tensor-core mat-vec (quant_mlx_qmv.cuh; x bf16/f16, packed
//     matrix 16-byte aligned), else the plain f32 kernel;
//   more rows (prefill): the weight dequantized once into a pooled scratch buffer in x's
//     dtype (s * q + b rounded once), then the dense matmul (cuBLASLt);
//   more routed rows than 8 per expert (an MoE prefill, x bf16/f16): the rows grouped
//     by expert, then the grouped tensor-core GEMM with each expert tile dequantized as it is
//     loaded (quant_mlx_expert_tiles.cuh), so every expert is read once for all its rows.
#include <algorithm>
#include <climits>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/grouped_gemm.h"
#include "cuda/kernels/quant_mlx_expert_tiles.cuh"
#include "cuda/kernels/quant_mlx_qmv.cuh"
#include "cuda/kernels/quant_mlx_qmv_i8.cuh"
#include "cuda/kernels/quant_mlx_qmv_i8_batch.cuh"
#include "cuda/qmv_i8_image.h"
#include "mlxn/ops/matmul.h"
#include "ops/quant_mlx_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

using detail::dispatch_bits;
using detail::QuantMlxArgs;
namespace k = kernels::qmlx;

namespace {

// Rows of x above which a plain matmul dequantizes W and runs a GEMM. The mat-vec handles
// 8 rows per pass and its passes over one row tile run side by side (W comes from DRAM
// once), but each pass decodes W again. Measured on an H200 at 4 bits, N = 14336, K = 4096:
// mat-vec 25.6 us at 8 rows, 48.0 at 16, 124.8 at 48 (~2.4 us per row); dequantize (117 MB
// written, 33 MB read, ~38 us) + GEMM 75.6 us at 49 rows. They cross near 27 rows.
constexpr int64_t kMatvecMaxRows = 24;
// The integer mat-vec stages a tile's scales and biases in shared memory up to this size
// (K = 16384 at group size 64): 7 blocks then hold 112 KB of an SM's 228.
constexpr int64_t kMaxStagedBytes = 16 * 1024;

int group_shift(int group_size) { return group_size == 32 ? 5 : group_size == 64 ? 6 : 7; }

k::QmmParams params(const QuantMlxArgs& a, bool routed) {
  k::QmmParams p{};
  p.packed = static_cast<const uint32_t*>(a.w.packed);
  p.scales = a.w.scales;
  p.biases = a.w.biases;
  p.experts = a.w.experts;
  p.n = a.w.rows;
  p.k = a.w.cols;
  p.gs = a.w.group_size;
  p.gs_shift = group_shift(a.w.group_size);
  p.x = a.x.data;
  p.x_stride = a.x.row_stride;
  p.out = a.out.data;
  p.out_stride = a.out.row_stride;
  p.m = a.x.rows;
  if (routed) {
    p.ids = a.ids;
    p.ids_u32 = a.ids_dtype == DType::u32;
    p.top_k = a.top_k;
    p.x_per_slot = a.x_per_slot;
    p.slots = a.tokens * a.top_k;
  }
  const int64_t es = int64_t(element_size(a.x.dtype));
  p.x_vec = aligned16(a.x.data) && (a.x.row_stride * es) % 16 == 0;
  return p;
}

// The integer mat-vecs' domain: 4 bits, whole 128-value steps, 16-byte vectors (x bf16/f16:
// the caller's tensor-core branch), and one x row per unit (a single-row matmul or any routed
// call), or 2..8 rows of a plain call at group size 64 or 128 whose tile's scales and biases
// the batch kernel can stage in shared memory (quant_mlx_qmv_i8_batch.cuh).
bool integer_matvec(const QuantMlxArgs& a, const k::QmmParams& p, bool routed) {
  if (a.w.bits != 4 || a.w.cols % 128 != 0 || !p.x_vec) return false;
  if (routed || a.x.rows == 1) return true;
  const int64_t groups = a.w.cols / a.w.group_size, row_bytes = groups * int64_t(element_size(a.w.scale_dtype));
  return a.x.rows <= kernels::QmvI8BatchConfig::kRows && (a.w.group_size == 64 || a.w.group_size == 128) &&
         row_bytes % 4 == 0 && 2 * 16 * row_bytes <= kMaxStagedBytes && aligned_to(a.w.scales, 4) &&
         aligned_to(a.w.biases, 4);
}

// 2..8 rows: x's rows into the batch image, then the batch mat-vec, both with PDL.
template <class CT, class ST>
void run_matvec_i8_batch(Session& s, const QuantMlxArgs& a, k::QmmParams p, const char* op) {
  const int64_t K = a.w.cols;
  const ScratchBuffer image = prepare_batch_image<CT, kernels::NibbleOrder::kPairs>(s, op, a.x, K);
  p.x = image.data();
  auto kern = a.w.group_size == 64 ? k::qmv_i8_batch_kernel<CT, ST, 64> : k::qmv_i8_batch_kernel<CT, ST, 128>;
  const size_t smem = size_t(k::QmvI8BatchSmem<ST>::bytes(K / a.w.group_size));
  // The domain's staged-scale cap (integer_matvec) keeps the rings and the padded scale rows
  // within the default dynamic shared-memory limit: no attribute to raise.
  static_assert(k::QmvI8BatchSmem<ST>::kCodes + kMaxStagedBytes + 2 * 16 * 4 <= 48 * 1024,
                "the batch kernel's shared memory fits the default limit");
  launch_pdl(s, op, kern, dim3(1, unsigned((a.w.rows + 15) / 16)), dim3(kernels::QmvI8BatchConfig::kThreads), smem, p);
}

// x's rows into their fixed-point image (pooled scratch), then the mat-vec reading it; both
// launch with PDL, and the mat-vec's weight loads overlap the conversion.
template <class CT, class ST>
void run_matvec_i8(Session& s, const QuantMlxArgs& a, k::QmmParams p, int64_t units, const char* op) {
  const int64_t K = a.w.cols;
  detail::dispatch_int<32, 64, 128>(a.w.group_size, [&]<int GS>() {
    constexpr int XG = GS == 32 ? 32 : 64;  // an x group lies in one weight group
    const ScratchBuffer image = prepare_x_image<CT, kernels::NibbleOrder::kPairs, XG>(s, op, a.x, K);
    p.x = image.data();
    p.x_stride = kernels::QmvI8Image::units(K);
    // Pairs of steps with 8-byte scale vectors where the layout allows; the tile's scales and
    // biases staged in shared memory for plain calls where they fit (quant_mlx_qmv_i8.cuh).
    constexpr bool kCanPair = GS == 64 && sizeof(ST) == 2;
    const bool aligned = aligned_to(a.w.scales, 8) && aligned_to(a.w.biases, 8);
    const bool pairs = kCanPair && K % 256 == 0 && aligned;
    const int64_t staged = k::qmv_staged_bytes<ST>(K / GS);
    // Group 32 staged measured slower (12.18 us against 11.79, run 69): it keeps its 4 loads.
    const bool stage =
        GS != 32 && !p.ids && staged <= kMaxStagedBytes && (K / GS * int64_t(sizeof(ST))) % 8 == 0 && aligned;
    auto kern = stage ? k::qmv_i8_kernel<CT, ST, GS, false, true> : k::qmv_i8_kernel<CT, ST, GS, false, false>;
    if constexpr (kCanPair)
      if (pairs) kern = stage ? k::qmv_i8_kernel<CT, ST, GS, true, true> : k::qmv_i8_kernel<CT, ST, GS, true, false>;
    const size_t smem = stage ? size_t(staged) : 0;
    launch_pdl(s, op, kern, dim3(grid_dim(op, units), unsigned((a.w.rows + 15) / 16)),
               dim3(kernels::QmvI8Config::kThreads), smem, p);
  });
}

// Mat-vec launches: units of up to 8 rows (or one routed slot) along x, so that the units
// of one row tile are scheduled together and share its W lines in L2; row tiles along y.
template <class ST, int B>
void run_matvec(Session& s, const QuantMlxArgs& a, k::QmmParams p, bool routed, const char* op) {
  using C = k::QmvConfig;
  const int64_t N = a.w.rows, M = a.x.rows;
  const int64_t units = routed ? p.slots : (M + C::kTokens - 1) / C::kTokens;
  const int64_t tiles = (N + 15) / 16;
  cudaStream_t st = stream_of(s);
  if (a.x.dtype == DType::f32 || !aligned16(a.w.packed)) {
    dispatch_float(a.x.dtype, op, [&]<class XT>() {
      constexpr int MT = 4;
      const int64_t simt_units = routed ? p.slots : (M + MT - 1) / MT;
      const dim3 grid(grid_dim(op, (N + 3) / 4), unsigned(std::min(simt_units, kMaxGridY)));
      k::qmm_simt_kernel<XT, ST, B, MT><<<grid, 128, 0, st>>>(p);
    });
    return;
  }
  // The kernel indexes rows and K in 32 bits, and row tiles along the grid's y.
  if (tiles > kMaxGridY || a.w.cols > INT_MAX - 128)
    throw_error<Unsupported>(op, "cuda: W of [", N, ", ", a.w.cols, "] exceeds the mat-vec's limits (", kMaxGridY * 16,
                             " rows, 2^31 columns)");
  auto launch = [&]<class CT>() {
    if constexpr (B == 4) {
      if (integer_matvec(a, p, routed)) {
        if (!routed && a.x.rows > 1)
          run_matvec_i8_batch<CT, ST>(s, a, p, op);
        else
          run_matvec_i8<CT, ST>(s, a, p, units, op);
        return;
      }
    }
    // x's rows into their image (pooled scratch, slot order), then the mat-vec reading it;
    // both launch with PDL, and the mat-vec's first weight loads overlap the copy.
    const int64_t pitch = C::image_values(a.w.cols), rows = a.x.rows;
    ScratchBuffer image = s.pool().acquire(size_t(rows * pitch) * 2);
    launch_pdl(s, op, k::qmv_prepare_x<CT, B>,
               dim3(unsigned((pitch / 16 + 127) / 128), unsigned(std::min(rows, kMaxGridY))), dim3(128), 0,
               static_cast<const CT*>(a.x.data), a.x.row_stride, rows, int(a.w.cols), p.x_vec,
               static_cast<CT*>(image.data()));
    p.x = image.data();
    p.x_stride = pitch;
    launch_pdl(s, op, k::qmv_mma_kernel<CT, ST, B>, dim3(grid_dim(op, units), unsigned(tiles)), dim3(C::kThreads), 0,
               p);
  };
  dispatch_half(a.x.dtype, op, launch);
}

// out = x . dequantize(W)^T: W as x's dtype in pooled scratch, then the dense matmul.
void run_prefill(Session& s, const QuantMlxArgs& a, const char* op) {
  const int64_t N = a.w.rows, K = a.w.cols, M = a.x.rows;
  const DType dt = a.x.dtype;
  ScratchBuffer wd = s.pool().acquire(size_t(N * K) * element_size(dt));
  dispatch_float(dt, op, [&]<class T>() {
    dispatch_float(a.w.scale_dtype, op, [&]<class S>() {
      dispatch_bits(a.w.bits, [&]<int B>() {
        constexpr int kThreads = k::kDequantThreads;
        const int64_t chunks = N * (K / 32);
        k::dequantize_kernel<T, S, B, false>
            <<<grid_dim(op, (chunks + kThreads - 1) / kThreads), kThreads, 0, stream_of(s)>>>(
                static_cast<const uint32_t*>(a.w.packed), static_cast<const S*>(a.w.scales),
                static_cast<const S*>(a.w.biases), static_cast<T*>(wd.data()), K, N, K, a.w.group_size, nullptr, false,
                N, 1.f, aligned16(a.w.packed) && aligned16(wd.data()));
      });
    });
  });
  check_launch(s, op);
  const Device dev = s.device();
  const Tensor x(a.x.data, dt, {M, K}, dev, {a.x.row_stride, 1});
  const Tensor w(wd.data(), dt, {N, K}, dev);
  const Tensor out(a.out.data, dt, {M, N}, dev, {a.out.row_stride, 1});
  matmul(s, x, w, out);
}

// Routed rows per expert above which the grouped GEMM beats the per-slot mat-vec. The mat-vec
// costs about one expert read per routed row; the grouped GEMM about a fixed pass over every
// expert's tiles. Measured on an H100 (E 128, N 768, K 2048, 4 bits, top 8; bench/NOTES.md run
// 260): mat-vec 96 / 181 / 678 us at 64 / 128 / 512 tokens, grouped 126 / 127 / 128 / 162 us at
// 64 / 128 / 256 / 512: they cross near 90 tokens, ~6 routed rows per expert.
constexpr int64_t kGroupedMinRowsPerExpert = 6;

// The widest asynchronous copy (16, 8 or 4 bytes) that divides a row of scales and both bases'
// alignment: the grouped GEMM copies window slices of whole rows (ExpertTiles). 0 if none does.
int scale_row_copy(const detail::MlxQuantMatrix& w) {
  const int64_t row_bytes = w.groups_per_row() * int64_t(element_size(w.scale_dtype));
  for (int c : {16, 8, 4})
    if (row_bytes % c == 0 && aligned_to(w.scales, c) && aligned_to(w.biases, c)) return c;
  return 0;
}

// The grouped GEMM's domain: 16-bit x with 16-byte aligned rows and a 16-byte aligned packed
// stack with rows of scales and biases that start on 4-byte boundaries (its asynchronous
// copies), out rows back to back and 4-byte aligned (pairs of outputs stored at once), 32-bit
// sizes.
bool grouped_prefill(const QuantMlxArgs& a) {
  const int64_t es = int64_t(element_size(a.x.dtype));
  const int64_t pairs = a.tokens * a.top_k;
  return pairs > std::max(kRoutedMatvecMaxPairs, kGroupedMinRowsPerExpert * a.w.experts) && a.x.dtype != DType::f32 &&
         aligned16(a.x.data) && (a.x.row_stride * es) % 16 == 0 && aligned16(a.w.packed) && scale_row_copy(a.w) != 0 &&
         a.out.row_stride == a.w.rows && aligned_to(a.out.data, 4) && a.w.rows <= INT_MAX && a.w.cols <= INT_MAX &&
         a.w.experts <= INT_MAX;
}

// Routed rows grouped by expert; each expert's tiles dequantized in shared memory by the GEMM.
void run_grouped(Session& s, const QuantMlxArgs& a, const char* op) {
  dispatch_half(a.x.dtype, op, [&]<class T>() {
    const kernels::MatmulIdParams<T> p{static_cast<const T*>(a.x.data),
                                       a.x.row_stride,
                                       a.x_per_slot ? 1 : 0,
                                       int(a.top_k),
                                       nullptr,
                                       static_cast<const uint32_t*>(a.ids),
                                       static_cast<T*>(a.out.data),
                                       int(a.w.experts),
                                       int(a.w.rows),
                                       int(a.w.cols),
                                       int(a.tokens * a.top_k),
                                       a.w.rows};
    const ExpertGroups<T> g = group_by_expert(s, op, p, a.ids, grouped_tile_rows(p.pairs, p.experts, true, 0));
    // Scales in x's dtype take the packed decode (a separate instantiation: the choice is per call).
    const auto run = [&]<bool kPacked>() {
      dispatch_bits(a.w.bits, [&]<int B>() {
        grouped_mma(s, op, g,
                    k::ExpertTiles<T, B, kPacked>{static_cast<const uint32_t*>(a.w.packed), a.w.scales, a.w.biases,
                                                  float_kind(a.w.scale_dtype), group_shift(a.w.group_size),
                                                  int(a.w.groups_per_row()), scale_row_copy(a.w)});
      });
    };
    if (a.w.scale_dtype == a.x.dtype)
      run.template operator()<true>();
    else
      run.template operator()<false>();
  });
}

void run_matmul(Session& s, const QuantMlxArgs& a, bool routed, const char* op) {
  if (!routed && a.x.rows > kMatvecMaxRows) {
    run_prefill(s, a, op);
    return;
  }
  if (routed && grouped_prefill(a)) {
    run_grouped(s, a, op);
    return;
  }
  const k::QmmParams p = params(a, routed);
  dispatch_float(a.w.scale_dtype, op, [&]<class ST>() {
    dispatch_bits(a.w.bits, [&]<int B>() { run_matvec<ST, B>(s, a, p, routed, op); });
  });
  check_launch(s, op);
}

void matmul_cuda(Session& s, const QuantMlxArgs& a) { run_matmul(s, a, false, "quantized_matmul"); }
void matmul_id_cuda(Session& s, const QuantMlxArgs& a) { run_matmul(s, a, true, "quantized_matmul_id"); }

}  // namespace

MLXN_REGISTER_KERNEL(quantized_matmul, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, matmul_cuda);
MLXN_REGISTER_KERNEL(quantized_matmul_id, quant_mlx, cuda, kFloatTypes, detail::QuantMlxArgs, matmul_id_cuda);

}  // namespace mlxn::cuda
