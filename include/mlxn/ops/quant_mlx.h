#pragma once
// MLX affine quantization: the format of MLX checkpoints (mlx.core.quantize, mode "affine").
//
// A weight W [N, K] is cut into groups of `group_size` consecutive values along K. Each group
// has a scale s and a bias b; value k is stored as an unsigned integer q of `bits` bits and
// stands for s * q + b. Layout:
//   packed [N, K * bits / 32] u32: the q of a row as one little-endian bit stream, value i at
//          bits [i * bits, (i + 1) * bits) (for 2/4/8 bits: value i of a word is
//          (word >> (bits * i)) & mask; 3/5/6-bit values straddle words).
//   scales, biases [N, K / group_size]: bf16, f16 or f32 (both the same dtype).
// Constraints: bits in {2, 3, 4, 5, 6, 8}, group_size in {32, 64, 128}, K % group_size == 0
// (so K * bits % 32 == 0). packed, scales, biases and ids must be contiguous; x and out may be
// row views (last dim contiguous, rows a fixed stride apart).
//
// Numerics.
// - dequantize and quantized_embedding produce exactly what MLX produces: with S the dtype of
//   the scales, value = round_S(round_S(q * s) + b) (MLX multiplies, then adds, each in S),
//   then converted to the output dtype. Bit-exact with mx.dequantize when out has dtype S.
// - quantize follows MLX's algorithm operation by operation in f32 (min/max per group, scale
//   from the range, the edge of larger magnitude made exactly representable, q = rint((w - b)
//   / s) clamped to [0, 2^bits - 1]); scales and biases are then rounded to their dtype.
// - quantized_matmul uses w = s * q + b and accumulates in f32. The CUDA tensor-core paths
//   (x bf16/f16) round each dequantized weight once to x's dtype before the multiply, except
//   the single-row (decode) path at 4 bits, one x row per output row (M = 1, and every
//   routed slot): it keeps the weights exact and takes x as 15-bit fixed point per 64 values
//   (32 at group size 32; each x off by at most 2^-16 of the largest |x| of those), with an
//   exact integer product per group.
// - The CUDA single-row path is launched with programmatic dependent launch (PDL): a plain
//   (not routed) call starts reading its weight, scales and biases while the kernel just
//   before it on the stream may still be running, so that kernel must not be writing them.
//   mlxn's ops that write quantized weights (quantize, the copies) never release their
//   dependents early; a kernel of your own that does (griddepcontrol.launch_dependents) must
//   not be the one right before a matmul on the weights it writes. x and routing ids are read
//   only after every earlier kernel has finished.
//
// Ids (expert or token indices) are data, so they cannot be checked before the kernel runs:
// an id outside [0, E) or [0, V) raises InvalidArgument on the CPU; the CUDA kernels never
// read out of bounds and write zeros to the rows that such an id selects.
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

struct MlxQuant {
  int bits = 4;         // 2, 3, 4, 5, 6 or 8
  int group_size = 64;  // 32, 64 or 128
};

// w [N, K] f32/f16/bf16 -> packed [N, K*bits/32] u32, scales/biases [N, K/gs] (bf16/f16/f32).
void quantize(Session& s, const Tensor& w, MlxQuant q, const Tensor& packed, const Tensor& scales,
              const Tensor& biases);

// packed, scales, biases -> out [N, K] f32/f16/bf16.
void dequantize(Session& s, const Tensor& packed, const Tensor& scales, const Tensor& biases, MlxQuant q,
                const Tensor& out);

// out [..., N] = x [..., K] · dequantize(W)^T; out has x's dtype (f32/f16/bf16).
void quantized_matmul(Session& s, const Tensor& x, const Tensor& packed, const Tensor& scales, const Tensor& biases,
                      MlxQuant q, const Tensor& out);

// Expert-routed (MoE): experts stacked as packed [E, N, K*bits/32], scales/biases [E, N, K/gs];
// ids [T, top_k] i32/u32; x [T, K] (every slot of token t reads x[t]) or [T, top_k, K];
// out [T, top_k, N] with out[t, j] = x[t] (or x[t, j]) · dequantize(W[ids[t, j]])^T.
void quantized_matmul_id(Session& s, const Tensor& x, const Tensor& packed, const Tensor& scales, const Tensor& biases,
                         const Tensor& ids, MlxQuant q, const Tensor& out);

// Embedding lookup from a quantized table packed [V, D*bits/32]: out[t] = dequantize(row
// ids[t]) * scale, the product taken in f32; ids [T] i32/u32, out [T, D] f32/f16/bf16.
void quantized_embedding(Session& s, const Tensor& packed, const Tensor& scales, const Tensor& biases, MlxQuant q,
                         const Tensor& ids, const Tensor& out, float scale = 1.f);

}  // namespace mlxn
