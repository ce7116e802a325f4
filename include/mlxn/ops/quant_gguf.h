#pragma once
// GGUF block-quantized compute: dequantization, matmul (mat-vec for decode, mat-mat for
// prefill), the expert-routed matmul of MoE layers, and embedding lookup from a quantized
// table. Weights are tensors of a GGUF block dtype (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k,
// q3_k, q4_k, q5_k, q6_k): shape [..., K] in elements with K a multiple of the block size
// (32, or 256 for the K-quants), the bytes being the ggml blocks row by row, contiguous.
// Activations and outputs are f32, f16 or bf16, rows with the last dim contiguous.
//
// Precision: gguf_dequantize and gguf_embedding give exactly gguf-py's values (f32; a float
// tensor's own values), rounded once to a half output. The CPU matmul accumulates in f32 from those exact weights. CUDA
// runs the products on tensor cores with f32 accumulation: x and the weights are rounded to
// bf16 (f16 when x is f16), the block scales rounded to that type before they are applied;
// f32 x with more than 64 rows instead takes exact f32 weights through an f32 GEMM. One token
// (M = 1, or the top_k slots of up to 8 routed tokens) by a q4_0 (K % 256 == 0), q4_k, q5_k or
// q6_k weight, and 2..8 rows by a q4_k weight, with x bf16/f16, instead keep the weights exact
// and take x as 15-bit fixed point per 64 values (each x off by at most 2^-16 of the largest
// |x| of those), with an exact integer product per block or sub-block.
//
// Those integer paths are launched with programmatic dependent launch (PDL), as quant_mlx.h
// describes for its single-row path: a plain call starts reading its weight while the kernel
// just before it on the stream may still be running, so that kernel must not be writing the
// weight (mlxn's own ops never release their dependents early before such writes); x and
// routing ids are read only after every earlier kernel has finished.
//
// Out-of-range ids (gguf_matmul_id, gguf_embedding) are never used to address memory: the
// CPU backend throws InvalidArgument naming the first bad id; the CUDA backend, which cannot
// raise from the device without a host round trip, writes zeros to the rows they select.
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn {

// out = dequantize(w). w: [..., K] block dtype, or f32/f16/bf16 (GGUF files store some
// tensors unquantized: those are converted); out: same shape, f32/f16/bf16.
void gguf_dequantize(Session& s, const Tensor& w, const Tensor& out);

// out = x · W^T.  x: [M, K] f32/f16/bf16; w: [N, K] block dtype or f32/f16/bf16;
// out: [M, N] in x's dtype.
void gguf_matmul(Session& s, const Tensor& x, const Tensor& w, const Tensor& out);

// Expert-routed matmul: out[t, k] = x[t] · W[ids[t, k]]^T (x [T, K]), or x[t, k] · W[...]^T
// (x [T, top_k, K], one input row per slot, as after a routed first projection).
// w: [E, N, K] block dtype or f32/f16/bf16; ids: [T, top_k] i32 or u32; out: [T, top_k, N].
void gguf_matmul_id(Session& s, const Tensor& x, const Tensor& w, const Tensor& ids, const Tensor& out);

// out[..., :] = dequantize(table[ids[...], :]) * scale.
// table: [V, D] block dtype or f32/f16/bf16; ids: any shape, i32 or u32; out: ids.shape + [D],
// f32/f16/bf16.
void gguf_embedding(Session& s, const Tensor& table, const Tensor& ids, const Tensor& out, float scale = 1.f);

}  // namespace mlxn
