#include "ops/gdn_validate.h"

#include <vector>

namespace mlxn::detail {

HeadView as_heads(const char* op, const Session& s, const char* name, const Tensor& t, int64_t B, int64_t T,
                  int64_t heads, int64_t dim, bool output) {
  check_device(op, s, name, t);
  check_dtype(op, name, t, kFloatTypes);
  if (t.ndim() != 4)
    throw_error<InvalidArgument>(op, name, " has shape ", t.shape().str(), ", expected [B, T, heads, dim]");
  if (t.dim(0) != B || t.dim(1) != T || (heads >= 0 && t.dim(2) != heads) || (dim >= 0 && t.dim(3) != dim)) {
    throw_error<InvalidArgument>(op, name, " has shape ", t.shape().str(), ", expected [", B, ", ", T, ", ",
                                 heads >= 0 ? std::to_string(heads) : std::string("heads"), ", ",
                                 dim >= 0 ? std::to_string(dim) : std::string("dim"), "]");
  }
  HeadView v;
  v.dtype = t.dtype();
  v.data = t.data();
  v.tokens = B * T;
  v.heads = t.dim(2);
  v.dim = t.dim(3);
  if (t.numel() == 0) return v;
  for (int i = 0; i < 4; ++i)
    if (t.stride(i) < 0) throw_error<InvalidArgument>(op, name, " has a negative stride (", t.strides().str(), ")");
  if (v.dim > 1 && t.stride(3) != 1)
    throw_error<InvalidArgument>(op, name, " last dim must be contiguous (strides ", t.strides().str(), ")");
  v.head_stride = v.heads > 1 ? t.stride(2) : v.dim;
  if (B > 1 && T > 1 && t.stride(0) != T * t.stride(1))
    throw_error<InvalidArgument>(op, name, " batch and time dims do not collapse into one token axis (strides ",
                                 t.strides().str(), ")");
  v.token_stride = T > 1 ? t.stride(1) : B > 1 ? t.stride(0) : v.heads * v.head_stride;
  if (output) {
    if (v.heads > 1 && v.head_stride < v.dim)
      throw_error<InvalidArgument>(op, name, " heads overlap (head stride ", v.head_stride, " < dim ", v.dim, ")");
    if (v.tokens > 1 && v.token_stride < (v.heads - 1) * v.head_stride + v.dim)
      throw_error<InvalidArgument>(op, name, " tokens overlap (strides ", t.strides().str(), ")");
  }
  return v;
}

RowView as_token_rows(const char* op, const Session& s, const char* name, const Tensor& t, int64_t B, int64_t T,
                      int64_t H) {
  check_device(op, s, name, t);
  if (t.ndim() != 3 || t.dim(0) != B || t.dim(1) != T || t.dim(2) != H)
    throw_error<InvalidArgument>(op, name, " has shape ", t.shape().str(), ", expected [", B, ", ", T, ", ", H, "]");
  return as_rows(op, name, t);
}

SeqLayout seq_layout(const char* op, const Session& s, int64_t B, int64_t T, const std::optional<Tensor>& cu) {
  SeqLayout l;
  l.B = B;
  l.T = T;
  l.N = B;
  if (!cu) return l;
  check_device(op, s, "cu_seqlens", *cu);
  check_dtype(op, "cu_seqlens", *cu, {DType::i32});
  if (cu->ndim() != 1 || cu->dim(0) < 2)
    throw_error<InvalidArgument>(op, "cu_seqlens has shape ", cu->shape().str(), ", expected [N + 1] with N >= 1");
  check_contiguous(op, "cu_seqlens", *cu);
  if (B != 1) throw_error<InvalidArgument>(op, "cu_seqlens needs B == 1, got B = ", B);
  l.N = cu->dim(0) - 1;
  l.cu = cu->data_as<const int32_t>();
  if (cu->device().is_cpu()) {
    const int32_t* c = l.cu;
    if (c[0] != 0) throw_error<InvalidArgument>(op, "cu_seqlens[0] is ", c[0], ", expected 0");
    for (int64_t i = 0; i < l.N; ++i)
      if (c[i + 1] < c[i])
        throw_error<InvalidArgument>(op, "cu_seqlens decreases at ", i + 1, " (", c[i], " -> ", c[i + 1], ")");
    if (c[l.N] != T) throw_error<InvalidArgument>(op, "cu_seqlens ends at ", c[l.N], ", expected T = ", T);
  }
  return l;
}

const float* state_ptr(const char* op, const Session& s, const char* name, const Tensor& t, int64_t N, int64_t H,
                       int64_t K, int64_t V) {
  check_device(op, s, name, t);
  if (t.dtype() != DType::f32)
    throw_error<InvalidArgument>(op, name, " has dtype ", mlxn::name(t.dtype()), ", expected f32");
  check_shape(op, name, t, {N, H, K, V});
  check_contiguous(op, name, t);
  return t.data_as<const float>();
}

void check_cuda_head_dims(const char* op, const Session& s, int64_t K, int64_t V) {
  if (!s.device().is_cuda()) return;
  auto ok = [](int64_t d) { return d == 64 || d == 128 || d == 256; };
  if (!ok(K) || !ok(V))
    throw_error<Unsupported>(op, "cuda: K = ", K, ", V = ", V, " not supported (each must be 64, 128 or 256)");
}

}  // namespace mlxn::detail
