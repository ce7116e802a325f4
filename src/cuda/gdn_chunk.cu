// CUDA entry for gdn_chunk: the tensor-core path (prepare + scan kernels) for bf16/f16
// inputs whose rows allow 16-byte copies on Hopper, the six stage kernels otherwise.
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/gdn_launch.h"
#include "cuda/kernels/gdn_chunk.cuh"
#include "ops/registry.h"

namespace mlxn::cuda {

namespace k = kernels::gdn;
using detail::GdnArgs;
using detail::HeadView;

namespace {

bool rows16(const HeadView& v) { return aligned16(v.data) && v.token_stride % 8 == 0 && v.head_stride % 8 == 0; }

// The scan's warpgroup products are sm_90a code: compute capability 9.0 only.
bool hopper(const Session& s) {
  int major = 0, minor = 0;
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, s.device().index));
  MLXN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, s.device().index));
  return major == 9 && minor == 0;
}

// The tensor-core path: a Hopper GPU, half-precision inputs, copies of whole 16-byte row
// pieces, and stores of element pairs.
bool fused_ok(const Session& s, const GdnArgs& a) {
  if ((a.q.dtype != DType::bf16 && a.q.dtype != DType::f16) || !hopper(s)) return false;
  const bool out_pairs =
      (reinterpret_cast<uintptr_t>(a.out.data) & 3) == 0 && a.out.token_stride % 2 == 0 && a.out.head_stride % 2 == 0;
  return rows16(a.q) && rows16(a.k) && rows16(a.v) && out_pairs;
}

// The scan kernel for blocks of BV columns, allowed its shared memory.
template <class CT, int K, int BV>
auto scan_kernel() {
  return with_smem(k::chunk_scan_kernel<CT, K, BV>, k::ScanLayout<K, BV>::bytes);
}

template <class CT, int K, int BV>
void launch_scan(Session& s, const GdnArgs& a, const k::ChunkParams<CT>& p) {
  const dim3 grid(unsigned(a.V / BV), unsigned(a.H), grid_dim("gdn_chunk", a.seq.N));
  launch_pdl(s, "gdn_chunk", scan_kernel<CT, K, BV>(), grid, dim3(k::kScanThreads), k::ScanLayout<K, BV>::bytes, p);
}

template <class CT, int K>
void launch_fused(Session& s, const GdnArgs& a) {
  const int64_t per_row = a.seq.T <= 0 ? 0 : (a.seq.T + k::kChunk - 1) / k::kChunk + (a.seq.cu ? a.seq.N - 1 : 0);
  const int64_t slots = a.seq.B * per_row;
  const size_t mats = size_t(std::max<int64_t>(slots * a.H, 1)) * k::kChunk * k::kChunk;
  ScratchBuffer ai = s.pool().acquire(mats * sizeof(CT)), aqk = s.pool().acquire(mats * sizeof(CT));
  ScratchBuffer rows =
      s.pool().acquire(size_t(std::max<int64_t>(slots * a.H, 1)) * k::kScanRows * k::kChunk * sizeof(float));

  k::ChunkParams<CT> p{};
  fill_gdn_operands<CT>(p, a, per_row);
  p.Ai = static_cast<CT*>(ai.data());
  p.Aqk = static_cast<CT*>(aqk.data());
  p.rows = static_cast<float*>(rows.data());

  if (slots > 0) {
    constexpr int smem = k::PrepareLayout<K>::bytes;
    const dim3 grid(grid_dim("gdn_chunk", slots), unsigned(a.H));
    launch_pdl(s, "gdn_chunk", with_smem(k::chunk_prepare_kernel<CT, K>, smem), grid, dim3(k::kThreads), smem, p);
  }
  // The scan: a block per (sequence, value head, BV columns of V). 32 columns, or 64 when
  // 32-column blocks would not all be resident at once (K <= 128; a 64-column block's step costs
  // little more than a 32-column one's, so one wave of them beats two of narrower ones).
  if constexpr (K <= 128) {
    const int64_t resident = resident_blocks(scan_kernel<CT, K, 32>(), k::kScanThreads, k::ScanLayout<K, 32>::bytes);
    if (a.V % 64 == 0 && a.V / 32 * a.H * a.seq.N > resident) {
      launch_scan<CT, K, 64>(s, a, p);
      return;
    }
  }
  launch_scan<CT, K, 32>(s, a, p);
}

void gdn_chunk_cuda(Session& s, const GdnArgs& a) {
  if (!fused_ok(s, a)) {
    gdn_chunk_composed(s, a);
    return;
  }
  dispatch_half(a.q.dtype, "gdn_chunk",
                [&]<class CT>() { dispatch_head_dim(a.K, [&]<int K>() { launch_fused<CT, K>(s, a); }); });
}

}  // namespace

MLXN_REGISTER_KERNEL(gdn_chunk, gdn, cuda, kFloatTypes, detail::GdnArgs, gdn_chunk_cuda);

}  // namespace mlxn::cuda
