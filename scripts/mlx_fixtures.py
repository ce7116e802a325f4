#!/usr/bin/env python3
"""Writes reference data made by MLX itself for the quant_mlx tests.

For every bits x group size: a weight W [8, 256] (a fixed seed; a few hand-made groups:
constant, all zero, one outlier), mx.quantize(W) -> (packed, scales, biases),
mx.dequantize of those, and mx.quantized_matmul(x, ...) for an x [3, 256].
The float dtype (of W, x, scales and biases) cycles so that every bits value and every
group size meets f32, f16 and bf16.

Output: tests/fixtures/quant_mlx/<case>.bin (the arrays back to back, little-endian) and
index.json (per case: bits, group size, dtype, and per array its dtype, shape, offset and
byte count). Needs `pip install "mlx[cpu]" numpy`; runs on Linux.

    python3 scripts/mlx_fixtures.py [--out tests/fixtures/quant_mlx]
"""
import argparse
import json
import os

import mlx.core as mx
import numpy as np

BITS = [2, 3, 4, 5, 6, 8]
GROUPS = [32, 64, 128]
DTYPES = ["f32", "f16", "bf16"]
MX_DTYPE = {"f32": mx.float32, "f16": mx.float16, "bf16": mx.bfloat16}
N, K, M = 8, 256, 3


def raw(a: mx.array):
    """(bytes, dtype name, shape) of an MLX array, keeping bf16 bits as they are."""
    if a.dtype == mx.bfloat16:
        data = np.array(a.view(mx.uint16)).tobytes()
        name = "bf16"
    else:
        arr = np.array(a)
        name = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16",
                np.dtype(np.uint32): "u32"}[arr.dtype]
        data = np.ascontiguousarray(arr).tobytes()
    return data, name, list(a.shape)


def make_weight(rng, gs):
    w = rng.standard_normal((N, K)).astype(np.float32) * 0.05
    w[0, :gs] = 0.25               # a constant group
    w[1, gs:2 * gs] = 0.0          # an all-zero group
    w[2, 5] = 3.0                  # an outlier: a coarse scale for its group
    w[3, :gs] = -np.abs(w[3, :gs])  # an all-negative group (|min| > |max|)
    w[4, :] *= 40.0                # a row of large values
    return w


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "quant_mlx"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    mx.set_default_device(mx.cpu)
    index = {"generator": "scripts/mlx_fixtures.py", "mlx_version": mx.__version__, "cases": []}
    total = 0
    for bi, bits in enumerate(BITS):
        for gi, gs in enumerate(GROUPS):
            dt = DTYPES[(bi + gi) % 3]
            rng = np.random.default_rng(1000 + 10 * bits + gs)
            w = mx.array(make_weight(rng, gs)).astype(MX_DTYPE[dt])
            x = mx.array(rng.standard_normal((M, K)).astype(np.float32)).astype(MX_DTYPE[dt])
            packed, scales, biases = mx.quantize(w, group_size=gs, bits=bits)
            deq = mx.dequantize(packed, scales, biases, group_size=gs, bits=bits)
            qmm = mx.quantized_matmul(x, packed, scales, biases, transpose=True, group_size=gs, bits=bits)
            mx.eval(packed, scales, biases, deq, qmm)
            name = f"b{bits}_g{gs}_{dt}"
            blob = b""
            arrays = {}
            for key, a in [("w", w), ("packed", packed), ("scales", scales), ("biases", biases),
                           ("dequantized", deq), ("x", x), ("matmul", qmm)]:
                data, dname, shape = raw(a)
                arrays[key] = {"dtype": dname, "shape": shape, "offset": len(blob), "nbytes": len(data)}
                blob += data
            with open(os.path.join(args.out, name + ".bin"), "wb") as f:
                f.write(blob)
            total += len(blob)
            index["cases"].append({"name": name, "bits": bits, "group_size": gs, "dtype": dt,
                                   "file": name + ".bin", "arrays": arrays})
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"wrote {len(index['cases'])} cases, {total} bytes, to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
