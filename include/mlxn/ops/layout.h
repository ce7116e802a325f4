#pragma once
// Layout and memory ops: strided copies, transposes, slices, concatenation, head repetition,
// row gathers and KV-cache writes.
//
// Unless an op says otherwise it moves raw element bytes, so it accepts every non-block dtype
// (f32, f16, bf16, i8, u8, i32, u32, i64) and keeps values bit-exact. Inputs may be any view
// (strided, sliced, transposed, selected); outputs may be strided views too, as long as no
// two of their elements share memory. An output may not overlap any input, except that copy()
// accepts dst being the very same view as src (a no-op). The overlap test compares the byte
// ranges the views span, so two interleaved but disjoint views of one buffer also count as
// overlapping. Empty tensors are no-ops.
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

// dst[i] = src[i] for every index of their common shape (up to kMaxDims dims).
void copy(Session& s, const Tensor& src, const Tensor& dst);

// x: [..., M, N] -> out: [..., N, M] (the last two dims swapped, leading dims kept).
void transpose(Session& s, const Tensor& x, const Tensor& out);

// x: [A, B, C] -> out: [A, C, B].
void permute_021(Session& s, const Tensor& x, const Tensor& out);

// out = x[..., start : start + out.dim(axis), ...] along `axis` (negative counts from the
// end); every other dim of out equals x's.
void slice(Session& s, const Tensor& x, const Tensor& out, int axis, int64_t start);

// out = the inputs joined along `axis`: every input has out's dtype and ndim, and out's
// extents except along `axis`, where the extents add up to out.dim(axis).
void concat(Session& s, std::span<const Tensor> inputs, int axis, const Tensor& out);
void concat(Session& s, std::initializer_list<Tensor> inputs, int axis, const Tensor& out);

// How the n = H / Hkv output heads of repeat_heads map onto the input heads.
enum class RepeatMode {
  block,  // out head h reads x head h / n (grouped-query attention: llama, Qwen)
  tiled,  // out head h reads x head h % Hkv
};
// x: [B, Hkv, T, D] -> out: [B, H, T, D] with H a multiple of Hkv.
void repeat_heads(Session& s, const Tensor& x, const Tensor& out, RepeatMode mode = RepeatMode::block);

// out[t, :] = table[ids[t], :] * scale.
//   table: [V, D] f32, f16 or bf16 (last dim contiguous); ids: [T] i32 or u32; out: [T, D]
//   in table's dtype. scale == 1 copies rows bit-exactly; otherwise the product is taken in
//   f32 and rounded to nearest even (Gemma scales by sqrt(hidden)).
// Out-of-range ids: ids usually live on the device, and checking them on the host would need
// a synchronisation, so the frontend cannot validate them. Neither backend ever reads outside
// the table: on CUDA an id outside [0, V) yields a row of zeros; the CPU backend checks every
// id before writing anything and throws InvalidArgument naming the id and its position.
void embedding(Session& s, const Tensor& table, const Tensor& ids, const Tensor& out, float scale = 1.f);

// out[m, :] = src[idx[m], :].  src: [N, D] any dtype (last dim contiguous); idx: [M] i32 or
// u32; out: [M, D] in src's dtype. Out-of-range indices as for embedding: a zero row on CUDA,
// InvalidArgument naming the index and its position on the CPU.
void gather_rows(Session& s, const Tensor& src, const Tensor& idx, const Tensor& out);

struct KvWriteParams {
  // Token t goes to cache row start + t ...
  int64_t start = 0;
  // ... or, when given, to row positions[t]: a device tensor [T] i32, so that a captured
  // CUDA graph can write at a position that changes from step to step. start is then unused.
  std::optional<Tensor> positions;
  // Ring buffer (sliding window): row p goes to p % capacity. With more tokens than rows only
  // the last `capacity` tokens are written, so the result does not depend on write order.
  bool ring = false;
};
// cache: [H, capacity, D] f32, f16 or bf16; src: [T, H, D] f32, f16 or bf16, converted to the
// cache's dtype (round to nearest even). Both need their last dim contiguous.
// Linear mode requires 0 <= start and start + T <= capacity (InvalidArgument otherwise).
// Device positions cannot be checked without a synchronisation: on CUDA a token whose position
// is negative, or >= capacity in linear mode, is skipped; the CPU backend checks them all
// before writing and throws InvalidArgument naming the position and the token. Two tokens
// that land on the same row leave either one's values there on CUDA (the last one on the CPU).
void kv_cache_write(Session& s, const Tensor& cache, const Tensor& src, const KvWriteParams& p = {});

}  // namespace mlxn
