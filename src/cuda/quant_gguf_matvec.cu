// CUDA launchers of the GGUF mat-vecs (tensor cores), one instantiation per weight type and
// input dtype: the integer mat-vec for one bf16/f16 token by a Q4_0, Q4_K, Q5_K or Q6_K weight
// (and the batch kernel for 2..8 tokens by Q4_0, Q4_K, Q5_K or Q6_K), the
// split-K kernel for the other plain matmuls of at most 8 rows over 16-byte aligned weight
// rows, the persistent routed kernel for everything else. The entry points are in
// quant_gguf.cu.
#include <algorithm>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/common/tensor_map.h"
#include "cuda/kernels/quant_gguf.cuh"
#include "cuda/kernels/quant_gguf_q4_0_i8.cuh"
#include "cuda/kernels/quant_gguf_q4_0_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_kquant_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_q6_k_i8.cuh"
#include "cuda/kernels/quant_gguf_q6_k_i8_batch.cuh"
#include "cuda/kernels/quant_gguf_qmv_i8.cuh"
#include "cuda/kernels/quant_gguf_splitk.cuh"
#include "cuda/qmv_i8_image.h"
#include "cuda/quant_gguf.h"
#include "ops/quant_gguf_args.h"

namespace mlxn::cuda {

namespace k = kernels;

namespace {

// What both mat-vec kernels take from the arguments: the weight, x and out rows, the sizes.
k::MatvecParams matvec_params(const detail::GgufMatmulArgs& a, bool x_vec) {
  k::MatvecParams p{};
  p.w = static_cast<const uint8_t*>(a.w);
  p.w_row_bytes = a.w_row_bytes;
  p.x = a.x.data;
  p.x_row_stride = a.x.row_stride;
  p.out = a.out.data;
  p.out_row_stride = a.out.row_stride;
  p.n = int(a.n);
  p.k = int(a.k);
  p.x_vec = x_vec;
  return p;
}

template <class B, class T, int NT>
void launch(Session& s, const detail::GgufMatmulArgs& a, const GgufGroups& gr, int copy_bytes, bool x_vec) {
  k::MatvecParams p = matvec_params(a, x_vec);
  p.w_expert_bytes = a.w_row_bytes * a.n;
  p.pairs = int(a.tokens * a.top_k);
  p.top_k = int(a.top_k);
  p.x_per_slot = a.x_per_slot;
  p.experts = int(a.experts);
  p.offsets = gr.offsets;
  p.order = gr.order;
  p.active = gr.active;
  p.n_active = gr.n_active;
  p.copy16 = copy_bytes == 16;
  constexpr int smem = k::matvec_smem<B, NT>();
  auto kern = &k::gguf_matvec_kernel<B, T, NT>;
  if constexpr (smem > 48 * 1024) kern = with_smem(kern, smem);
  // Persistent blocks: as many as fit on the device at once (shared among the buckets of a
  // routed call), never more than there are work items.
  const int64_t tiles = (a.n + 15) / 16;
  const int64_t rows_per_bucket = a.ids ? (a.tokens * a.top_k + gr.grid_buckets - 1) / gr.grid_buckets : a.tokens;
  const int64_t items = tiles * ((rows_per_bucket + 8 * NT - 1) / (8 * NT));
  const int64_t resident = std::max<int64_t>(1, resident_blocks(kern, 128, smem) / gr.grid_buckets);
  const dim3 grid(grid_dim("gguf_matvec", std::min(items, resident)), unsigned(gr.grid_buckets));
  kern<<<grid, 128, smem, stream_of(s)>>>(p);
  check_launch(s, "gguf_matvec");
}

// Plain matmul, M <= 8, 16-byte aligned weight rows: one block per 16-row tile.
template <class B, class T>
void launch_splitk(Session& s, const detail::GgufMatmulArgs& a, bool x_vec) {
  k::MatvecParams p = matvec_params(a, x_vec);
  p.pairs = int(a.tokens);
  p.top_k = 1;
  p.experts = 1;
  p.copy16 = true;
  auto kern = x_vec ? &k::gguf_matvec_splitk_kernel<B, T, true> : &k::gguf_matvec_splitk_kernel<B, T, false>;
  constexpr int smem = k::SplitkStage<B>::kSmem;
  static_assert(smem <= 48 * 1024, "the split-K rings fit the default shared-memory limit");
  kern<<<grid_dim("gguf_matvec", (a.n + 15) / 16), k::kSplitkWarps * 32, smem, stream_of(s)>>>(p);
  check_launch(s, "gguf_matvec");
}

// What both integer launchers pass: the weight, x's image, out, the sizes.
k::qmlx::QmmParams integer_params(const detail::GgufMatmulArgs& a, const ScratchBuffer& image) {
  k::qmlx::QmmParams p{};
  p.packed = static_cast<const uint32_t*>(a.w);
  p.experts = a.experts;
  p.n = a.n;
  p.k = a.k;
  p.x = image.data();
  p.out = a.out.data;
  p.out_stride = a.out.row_stride;
  p.m = a.tokens;
  return p;
}

// One x row per unit by a Q4_0, Q4_K, Q5_K or Q6_K weight (x bf16/f16): x's rows into their
// fixed-point image (pooled scratch, in the weight's nibble order), then the integer mat-vec
// reading it; both launch with PDL, and the mat-vec's weight loads overlap the conversion
// (routed calls wait for their ids first).
template <class T>
void launch_integer_i8(Session& s, const detail::GgufMatmulArgs& a) {
  const char* op = a.ids ? "gguf_matmul_id" : "gguf_matmul";
  const int64_t slots = a.tokens * a.top_k;
  const bool q4_0 = a.w_dtype == DType::q4_0;
  const ScratchBuffer image = q4_0 ? prepare_x_image<T, k::NibbleOrder::kBlocks, 64>(s, op, a.x, a.k)
                                   : prepare_x_image<T, k::NibbleOrder::kHalves, 64>(s, op, a.x, a.k);
  k::qmlx::QmmParams p = integer_params(a, image);
  p.x_stride = k::QmvI8Image::units(a.k);
  if (a.ids) {
    p.ids = a.ids;
    p.ids_u32 = a.ids_dtype == DType::u32;
    p.top_k = a.top_k;
    p.x_per_slot = a.x_per_slot;
    p.slots = slots;
  }
  const dim3 grid(grid_dim(op, slots), unsigned((a.n + 15) / 16)), block(k::QmvI8Config::kThreads);
  if (a.w_dtype == DType::q6_k) {
    // Rows of whole 16-byte units (K % 2048 == 0) take the variant with the superblocks'
    // offsets known at compile time, whose copies are boxes of the weight's tensor map.
    using Stage = k::Q6KStage;
    const bool aligned = a.w_row_bytes % 16 == 0;
    const CUtensorMap rows =
        aligned ? byte_tile_map(op, a.w, uint64_t(a.w_row_bytes), uint64_t(a.experts * a.n), Stage::kPitch, 16)
                : CUtensorMap{};
    launch_pdl(s, op, aligned ? k::q6_k_i8_kernel<T, true> : k::q6_k_i8_kernel<T, false>, grid, block, 0, p, rows);
    return;
  }
  auto kern = q4_0                       ? k::q4_0_i8_kernel<T>
              : a.w_dtype == DType::q5_k ? k::kquant_i8_kernel<T, true>
                                         : k::kquant_i8_kernel<T, false>;
  launch_pdl(s, op, kern, grid, block, 0, p);
}

// 2..8 rows of x by a Q4_0, Q4_K, Q5_K or Q6_K weight (x bf16/f16): x's rows into the batch image,
// then the batch integer mat-vec of the weight's format F, both with PDL; the kernel stages
// whole superblocks as boxes of the weight's tensor map.
template <class F, class T>
void launch_batch_i8(Session& s, const detail::GgufMatmulArgs& a) {
  const char* op = "gguf_matmul";
  const ScratchBuffer image = prepare_batch_image<T, k::NibbleOrder::kBlocks>(s, op, a.x, a.k);
  const CUtensorMap rows = byte_tile_map(op, a.w, uint64_t(a.w_row_bytes), uint64_t(a.n), F::kPitch, 16);
  launch_pdl(s, op, k::gguf_i8_batch_kernel<F, T>, dim3(1, unsigned((a.n + 15) / 16)),
             dim3(k::GgufBatchImage::kThreads), 0, integer_params(a, image), rows);  // plain: experts == 1
}

}  // namespace

// Routed calls of at most this many tokens (decode of a small batch) take the integer
// mat-vec slot by slot, as MLX routed calls do: an expert two slots share is read twice, which
// costs less at this size than the routed bf16 kernel's decode (bench/NOTES.md, run 117).
constexpr int64_t kRoutedIntegerTokens = 8;

// The integer paths' domain: x bf16/f16 in 16-byte vectors, a 16-byte aligned weight, row
// tiles within the kernels' 32-bit offsets and the grid's y; then one x row per unit by Q4_0
// (K % 256 == 0: rows of whole 144-byte superblocks), Q4_K, Q5_K or Q6_K (a single-row matmul, or
// the slots of a routed call of up to kRoutedIntegerTokens tokens), or a plain matmul of 2..8
// rows by Q4_0 (K % 256 == 0), Q4_K, Q5_K or Q6_K (K % 2048 == 0: rows of whole 16-byte units, which
// a tensor map needs) (the batch kernel).
bool integer_matvec(const detail::GgufMatmulArgs& a) {
  if (a.x.dtype == DType::f32 || !vectorizable(a.x, 8) || !aligned16(a.w) || a.w_row_bytes >= (int64_t(1) << 27) ||
      (a.n + 15) / 16 > kMaxGridY)
    return false;
  const bool q4_0 = a.w_dtype == DType::q4_0 && a.k % 256 == 0;
  if (a.tokens == 1 || (a.ids && a.tokens <= kRoutedIntegerTokens))
    return q4_0 || a.w_dtype == DType::q4_k || a.w_dtype == DType::q5_k || a.w_dtype == DType::q6_k;
  const bool q6_k_units = a.w_dtype == DType::q6_k && a.k % 2048 == 0;
  const bool k_quant = a.w_dtype == DType::q4_k || a.w_dtype == DType::q5_k;
  return (q4_0 || k_quant || q6_k_units) && !a.ids && a.tokens <= kernels::QmvI8BatchConfig::kRows;
}

void gguf_matvec_i8(Session& s, const detail::GgufMatmulArgs& a) {
  dispatch_half(a.x.dtype, a.ids ? "gguf_matmul_id" : "gguf_matmul", [&]<class T>() {
    if (a.tokens == 1 || a.ids)
      launch_integer_i8<T>(s, a);
    else
      switch (a.w_dtype) {
        case DType::q4_0:
          launch_batch_i8<k::Q4_0Batch, T>(s, a);
          break;
        case DType::q4_k:
          launch_batch_i8<k::KQuantBatch<false>, T>(s, a);
          break;
        case DType::q5_k:
          launch_batch_i8<k::KQuantBatch<true>, T>(s, a);
          break;
        case DType::q6_k:
          launch_batch_i8<k::Q6_KBatch, T>(s, a);
          break;
        default:  // integer_matvec admits no other batch format
          throw_error<Unsupported>("gguf_matmul", "cuda: no batch mat-vec for ", name(a.w_dtype));
      }
  });
}

// Input rows per pass: 8 for decode-sized calls, 32 otherwise.
void gguf_matvec(Session& s, const detail::GgufMatmulArgs& a, const GgufGroups& gr) {
  const char* op = a.ids ? "gguf_matmul_id" : "gguf_matmul";
  const int64_t pairs = a.tokens * a.top_k;
  const int64_t per_expert = a.ids ? (pairs + std::min(pairs, a.experts) - 1) / std::min(pairs, a.experts) : pairs;
  const bool wide = per_expert > 8;
  // 16-byte asynchronous copies need every weight row (and so every stage) 16-byte aligned.
  const int copy_bytes = a.w_row_bytes % 16 == 0 && aligned16(a.w) ? 16 : 2;
  dispatch_float(a.x.dtype, op, [&]<class T>() {
    const bool x_vec = aligned16(a.x.data) && (a.x.row_stride * int64_t(sizeof(T))) % 16 == 0;
    detail::dispatch_gguf_block(a.w_dtype, op, [&]<class B>() {
      constexpr bool kPacked = gguf::PairDecoder<B, std::is_same_v<T, __half>>::kPacked;  // a block type
      if constexpr (kPacked) {
        if (!a.ids && a.tokens <= 8 && copy_bytes == 16 && a.w_row_bytes < (int64_t(1) << 27)) {
          launch_splitk<B, T>(s, a, x_vec);
          return;
        }
      }
      if (wide)
        launch<B, T, 4>(s, a, gr, copy_bytes, x_vec);
      else
        launch<B, T, 1>(s, a, gr, copy_bytes, x_vec);
    });
  });
}

}  // namespace mlxn::cuda
