// CUDA entry for the chunk stages (each op on its own) and their composition, which is
// gdn_chunk for f32 inputs.
#include "cuda/common/check.h"
#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.h"
#include "cuda/gdn_launch.h"
#include "cuda/kernels/gdn_stages.cuh"
#include "ops/registry.h"

namespace mlxn::cuda {

namespace k = kernels::gdn;
using detail::GdnStageArgs;
using detail::HeadView;

namespace {

int64_t slots_per_row(const detail::SeqLayout& l) {
  if (l.T <= 0) return 0;
  const int64_t c = (l.T + k::kChunk - 1) / k::kChunk;
  return l.cu ? c + l.N - 1 : c;
}

template <class T>
k::HeadPtr<T> head_ptr(const HeadView& v) {
  return {static_cast<T*>(v.data), v.token_stride, v.head_stride};
}

k::StageParams stage_params(const GdnStageArgs& a) {
  k::StageParams p{};
  p.seq = gdn_seq(a.seq, slots_per_row(a.seq));
  p.H = int(a.H);
  p.group = a.Hk > 0 ? int(a.H / a.Hk) : 1;
  p.K = int(a.K);
  p.V = int(a.V);
  p.g = static_cast<const float*>(a.g.data);
  p.g_stride = a.g.row_stride;
  p.g_cum = static_cast<float*>(a.g_cum.data);
  p.gc_stride = a.g_cum.row_stride;
  p.beta = a.beta.data;
  p.beta_stride = a.beta.row_stride;
  p.beta_kind = float_kind(a.beta.dtype);
  p.A = a.A;
  p.A_in = a.A_in;
  p.h = a.h;
  p.h0 = a.h0;
  p.ht = a.ht;
  p.scale = a.scale;
  p.l2_eps = 1e-6f;
  return p;
}

dim3 slot_grid(const char* op, const k::StageParams& p, const GdnStageArgs& a, unsigned z = 1) {
  return dim3(grid_dim(op, a.seq.B * p.seq.slots), unsigned(a.H), z);
}

// Calls f.template operator()<T, U>() for the input dtype T and the intermediate dtype U
// (f32 or T).
template <class F>
void dispatch_tu(DType t, DType u, const char* op, F&& f) {
  dispatch_float(t, op, [&]<class T>() {
    if (u == DType::f32)
      f.template operator()<T, float>();
    else
      f.template operator()<T, T>();
  });
}

void cumsum_cuda(Session& s, const GdnStageArgs& a) {
  const k::StageParams p = stage_params(a);
  if (p.seq.slots == 0) return;
  k::cumsum_kernel<<<slot_grid("gdn_chunk_cumsum", p, a), k::kChunk, 0, stream_of(s)>>>(p);
  check_launch(s, "gdn_chunk_cumsum");
}

void kkt_launch(Session& s, const GdnStageArgs& a, const k::StageParams& p) {
  dispatch_float(a.k.dtype, "gdn_chunk_kkt", [&]<class T>() {
    k::kkt_kernel<T><<<slot_grid("gdn_chunk_kkt", p, a), 256, 0, stream_of(s)>>>(p, head_ptr<const T>(a.k));
  });
  check_launch(s, "gdn_chunk_kkt");
}

void solve_launch(Session& s, const GdnStageArgs& a, const k::StageParams& p) {
  k::solve_kernel<<<slot_grid("gdn_chunk_solve", p, a), k::kChunk, 0, stream_of(s)>>>(p);
  check_launch(s, "gdn_chunk_solve");
}

void wu_launch(Session& s, const GdnStageArgs& a, const k::StageParams& p) {
  dispatch_tu(a.k.dtype, a.w.dtype, "gdn_chunk_wu", [&]<class T, class U>() {
    k::wu_kernel<T, U><<<slot_grid("gdn_chunk_wu", p, a), 256, 0, stream_of(s)>>>(
        p, head_ptr<const T>(a.k), head_ptr<const T>(a.v), head_ptr<U>(a.w), head_ptr<U>(a.u));
  });
  check_launch(s, "gdn_chunk_wu");
}

void state_launch(Session& s, const GdnStageArgs& a, const k::StageParams& p) {
  dispatch_tu(a.k.dtype, a.w.dtype, "gdn_chunk_state", [&]<class T, class U>() {
    dispatch_head_dim(a.K, [&]<int K>() {
      const dim3 grid(unsigned(a.V / 32), unsigned(a.H), grid_dim("gdn_chunk_state", a.seq.N));
      k::state_kernel<T, U, K><<<grid, 128, 0, stream_of(s)>>>(p, head_ptr<const T>(a.k), head_ptr<const U>(a.w),
                                                               head_ptr<const U>(a.u), head_ptr<U>(a.v_new));
    });
  });
  check_launch(s, "gdn_chunk_state");
}

void output_launch(Session& s, const GdnStageArgs& a, const k::StageParams& p) {
  dispatch_tu(a.q.dtype, a.v_new.dtype, "gdn_chunk_output", [&]<class T, class U>() {
    k::output_kernel<T, U><<<slot_grid("gdn_chunk_output", p, a, unsigned(a.V / 32)), 256, 0, stream_of(s)>>>(
        p, head_ptr<const T>(a.q), head_ptr<const T>(a.k), head_ptr<const U>(a.v_new), head_ptr<T>(a.out));
  });
  check_launch(s, "gdn_chunk_output");
}

void kkt_cuda(Session& s, const GdnStageArgs& a) {
  const k::StageParams p = stage_params(a);
  if (p.seq.slots) kkt_launch(s, a, p);
}
void solve_cuda(Session& s, const GdnStageArgs& a) {
  const k::StageParams p = stage_params(a);
  if (p.seq.slots) solve_launch(s, a, p);
}
void wu_cuda(Session& s, const GdnStageArgs& a) {
  const k::StageParams p = stage_params(a);
  if (p.seq.slots) wu_launch(s, a, p);
}
void state_cuda(Session& s, const GdnStageArgs& a) { state_launch(s, a, stage_params(a)); }
void output_cuda(Session& s, const GdnStageArgs& a) {
  const k::StageParams p = stage_params(a);
  if (p.seq.slots) output_launch(s, a, p);
}

}  // namespace

// gdn_chunk as the six stages with f32 intermediates in pooled scratch.
void gdn_chunk_composed(Session& s, const detail::GdnArgs& g) {
  const int64_t tokens = g.seq.B * g.seq.T;
  GdnStageArgs a;
  a.q = g.q;
  a.k = g.k;
  a.v = g.v;
  a.out = g.out;
  a.g = g.g;
  a.beta = g.beta;
  a.h0 = g.h0;
  a.ht = g.ht;
  a.seq = g.seq;
  a.Hk = g.Hk;
  a.H = g.H;
  a.K = g.K;
  a.V = g.V;
  a.scale = g.scale;
  const int64_t slots = slots_per_row(g.seq);
  a.slots = slots;
  auto f32_buffer = [&](int64_t n) { return s.pool().acquire(size_t(std::max<int64_t>(n, 1)) * sizeof(float)); };
  ScratchBuffer gc = f32_buffer(tokens * g.H), A = f32_buffer(tokens * g.H * k::kChunk),
                Ai = f32_buffer(tokens * g.H * k::kChunk), w = f32_buffer(tokens * g.H * g.K),
                u = f32_buffer(tokens * g.H * g.V), vn = f32_buffer(tokens * g.H * g.V),
                h = f32_buffer(g.seq.B * slots * g.H * g.K * g.V);
  a.g_cum = {gc.data(), tokens, g.H, g.H, DType::f32};
  auto per_token = [&](void* p, int64_t dim) {
    HeadView v;
    v.data = p;
    v.dtype = DType::f32;
    v.tokens = tokens;
    v.heads = g.H;
    v.dim = dim;
    v.head_stride = dim;
    v.token_stride = g.H * dim;
    return v;
  };
  a.w = per_token(w.data(), g.K);
  a.u = per_token(u.data(), g.V);
  a.v_new = per_token(vn.data(), g.V);
  a.h = static_cast<float*>(h.data());
  k::StageParams p = stage_params(a);
  p.l2 = g.l2_norm_qk;
  p.l2_eps = g.l2_eps;
  if (slots > 0) {
    k::cumsum_kernel<<<slot_grid("gdn_chunk", p, a), k::kChunk, 0, stream_of(s)>>>(p);
    check_launch(s, "gdn_chunk");
    p.A = static_cast<float*>(A.data());
    kkt_launch(s, a, p);
    p.A_in = static_cast<const float*>(A.data());
    p.A = static_cast<float*>(Ai.data());
    solve_launch(s, a, p);
    p.A_in = static_cast<const float*>(Ai.data());
    wu_launch(s, a, p);
  }
  state_launch(s, a, p);
  if (slots > 0) output_launch(s, a, p);
}

MLXN_REGISTER_KERNEL(gdn_chunk_cumsum, gdn, cuda, {DType::f32}, detail::GdnStageArgs, cumsum_cuda);
MLXN_REGISTER_KERNEL(gdn_chunk_kkt, gdn, cuda, kFloatTypes, detail::GdnStageArgs, kkt_cuda);
MLXN_REGISTER_KERNEL(gdn_chunk_solve, gdn, cuda, {DType::f32}, detail::GdnStageArgs, solve_cuda);
MLXN_REGISTER_KERNEL(gdn_chunk_wu, gdn, cuda, kFloatTypes, detail::GdnStageArgs, wu_cuda);
MLXN_REGISTER_KERNEL(gdn_chunk_state, gdn, cuda, kFloatTypes, detail::GdnStageArgs, state_cuda);
MLXN_REGISTER_KERNEL(gdn_chunk_output, gdn, cuda, kFloatTypes, detail::GdnStageArgs, output_cuda);

}  // namespace mlxn::cuda
