// CUDA entry for ssm_conv, ssm_conv_step and gdn_gate.
#include <algorithm>

#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/kernels/gdn_conv.cuh"
#include "ops/dispatch_int.h"
#include "ops/gdn_args.h"
#include "ops/registry.h"

namespace mlxn::cuda {

namespace k = kernels::gdn;
using detail::GdnGateArgs;
using detail::SsmConvArgs;
using detail::SsmConvStepArgs;

namespace {

int param_kind(DType t) { return t == DType::f32 ? 0 : t == DType::f16 ? 1 : 2; }

k::SeqLayout seq_of(const detail::SeqLayout& l) { return {l.cu, l.T, l.N, 0}; }

// Calls f.template operator()<W>() for the runtime width 2..8.
template <class F>
void dispatch_width(int W, F&& f) {
  if (!detail::dispatch_int<2, 3, 4, 5, 6, 7, 8>(W, f))
    throw_error<Unsupported>("ssm_conv", "cuda: conv width ", W, " not built (2..8)");
}

// Parameter vectors: f32, or the activations' dtype T.
template <class T, class F>
void dispatch_param(DType dt, F&& f) {
  if (dt == DType::f32)
    f.template operator()<float>();
  else
    f.template operator()<T>();
}

// One wave: runs of tokens are sized so that all blocks are resident at once (occupancy x
// SMs) and stream their tokens side by side, with no partial last wave; runs are whole
// batches (at least one: short inputs get one batch per run). Rows that allow 16-byte
// accesses take the bulk-copy kernel (a block per run and 2 KB of channels), the others the
// scalar kernel (a warp per run and 32 x 16 bytes' worth of channels). Both the conv and the
// state kernel after it launch with launch_pdl, so the small state kernel's launch overlaps
// the conv's last tokens instead of adding a gap (bench case: 44.4 -> 43.8 us).
template <class T>
void launch_conv(Session& s, const SsmConvArgs& a) {
  constexpr int NC = kernels::Vec<T>::N;
  k::ConvParams<T> p{};
  p.x = static_cast<const T*>(a.x.data);
  p.out = static_cast<T*>(a.out.data);
  p.x_stride = a.x.row_stride;
  p.out_stride = a.out.row_stride;
  p.weight = a.weight;
  p.weight_kind = param_kind(a.weight_dtype);
  p.bias = a.bias;
  p.bias_kind = param_kind(a.bias_dtype);
  p.state_in = static_cast<const T*>(a.state_in);
  p.state_out = static_cast<T*>(a.state_out);
  p.seq = seq_of(a.seq);
  p.tokens = a.seq.B * a.seq.T;
  p.C = int(a.C);
  p.silu = a.silu;
  // Runs of whole batches of `batch` tokens over `runs` side by side.
  auto run_of = [&](int64_t runs, int batch) {
    return ((p.tokens + std::max<int64_t>(1, runs) - 1) / std::max<int64_t>(1, runs) + batch - 1) / batch * batch;
  };
  const bool vec = vectorizable(a.x, NC) && vectorizable(a.out, NC);
  if (p.tokens > 0) {
    dispatch_width(a.W, [&]<int W>() {
      if (vec) {
        auto kernel = with_smem(k::conv_bulk_kernel<T, W>, k::kBulkSmem);
        constexpr int kSlab = k::kBulkRowPieces * kernels::Vec<T, k::kBulkPiece>::N;  // channels per block
        const int64_t cols = (a.C + kSlab - 1) / kSlab;
        p.run = run_of(resident_blocks(kernel, k::kBulkThreads, k::kBulkSmem) / cols, k::kBulkRows);
        launch_pdl(s, "ssm_conv", kernel,
                   dim3(grid_dim("ssm_conv", cols), grid_dim("ssm_conv", (p.tokens + p.run - 1) / p.run)),
                   dim3(k::kBulkThreads), k::kBulkSmem, p);
        return;
      }
      constexpr int kWarps = k::kConvThreads / 32;
      auto kernel = k::conv_scalar_kernel<T, W>;
      const int64_t cols = (a.C + 32 * NC - 1) / (32 * NC);  // warps across the channels
      p.run = run_of(resident_blocks(kernel, k::kConvThreads) * kWarps / cols, k::kConvDepth);
      const int64_t blocks = ((p.tokens + p.run - 1) / p.run + kWarps - 1) / kWarps;
      launch_pdl(s, "ssm_conv", kernel, dim3(grid_dim("ssm_conv", cols), grid_dim("ssm_conv", blocks)),
                 dim3(k::kConvThreads), 0, p);
    });
  }
  if (a.state_out) {
    // After the conv (stream order): it reads state_in, which may be state_out.
    const int64_t n = a.seq.N * a.C;
    dispatch_width(a.W, [&]<int W>() {
      launch_pdl(s, "ssm_conv", k::conv_state_kernel<T, W - 1>, dim3(grid_dim("ssm_conv", (n + 255) / 256)),
                 dim3(256), 0, p);
    });
  }
}

void ssm_conv_cuda(Session& s, const SsmConvArgs& a) {
  dispatch_float(a.x.dtype, "ssm_conv", [&]<class T>() { launch_conv<T>(s, a); });
}

void ssm_conv_step_cuda(Session& s, const SsmConvStepArgs& a) {
  dispatch_float(a.x.dtype, "ssm_conv_step", [&]<class T>() {
    k::ConvStepParams<T> p{};
    p.x = static_cast<const T*>(a.x.data);
    p.out = static_cast<T*>(a.out.data);
    p.x_stride = a.x.row_stride;
    p.out_stride = a.out.row_stride;
    p.state = static_cast<T*>(a.state);
    p.weight = a.weight;
    p.weight_kind = param_kind(a.weight_dtype);
    p.bias = a.bias;
    p.bias_kind = param_kind(a.bias_dtype);
    p.B = a.B;
    p.C = int(a.C);
    p.silu = a.silu;
    const int64_t n = a.B * a.C;
    dispatch_width(a.W, [&]<int W>() {
      k::conv_step_kernel<T, W><<<grid_dim("ssm_conv_step", (n + 255) / 256), 256, 0, stream_of(s)>>>(p);
    });
    check_launch(s, "ssm_conv_step");
  });
}

void gdn_gate_cuda(Session& s, const GdnGateArgs& a) {
  dispatch_float(a.a.dtype, "gdn_gate", [&]<class T>() {
    auto go = [&]<class BT>() {
      dispatch_param<T>(a.A_log_dtype, [&]<class PA>() {
        dispatch_param<T>(a.dt_bias_dtype, [&]<class PD>() {
          k::GateParams<T, BT, PA, PD> p{};
          p.a = static_cast<const T*>(a.a.data);
          p.b = static_cast<const T*>(a.b.data);
          p.g = static_cast<float*>(a.g.data);
          p.beta = static_cast<BT*>(a.beta.data);
          p.a_stride = a.a.row_stride;
          p.b_stride = a.b.row_stride;
          p.g_stride = a.g.row_stride;
          p.beta_stride = a.beta.row_stride;
          p.A_log = static_cast<const PA*>(a.A_log);
          p.dt_bias = static_cast<const PD*>(a.dt_bias);
          p.rows = a.a.rows;
          p.H = int(a.a.cols);
          const int64_t n = p.rows * p.H;
          k::gate_kernel<<<grid_dim("gdn_gate", (n + 255) / 256), 256, 0, stream_of(s)>>>(p);
          check_launch(s, "gdn_gate");
        });
      });
    };
    if (a.beta.dtype == DType::f32)
      go.template operator()<float>();
    else
      go.template operator()<T>();
  });
}

}  // namespace

MLXN_REGISTER_KERNEL(ssm_conv, gdn, cuda, kFloatTypes, detail::SsmConvArgs, ssm_conv_cuda);
MLXN_REGISTER_KERNEL(ssm_conv_step, gdn, cuda, kFloatTypes, detail::SsmConvStepArgs, ssm_conv_step_cuda);
MLXN_REGISTER_KERNEL(gdn_gate, gdn, cuda, kFloatTypes, detail::GdnGateArgs, gdn_gate_cuda);

}  // namespace mlxn::cuda
