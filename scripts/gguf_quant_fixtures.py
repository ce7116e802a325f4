#!/usr/bin/env python3
"""Writes the GGUF block-quantization fixtures under tests/fixtures/quant_gguf/.

For each of the ten block types mlxn supports, a weight of shape [4, 512] stored as raw
ggml blocks (row by row), and the float32 values the `gguf` package (gguf-py) dequantizes
it to. mlxn must reproduce those values bit for bit.

Blocks come from gguf-py's own quantizer where it has one (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0);
for the K-quants, which gguf-py can only dequantize, the blocks are random bytes with the
f16 scale fields replaced by finite values of either sign, so every bit pattern of the
quant and sub-scale fields is exercised.

    python3 -m pip install gguf numpy
    python3 scripts/gguf_quant_fixtures.py [OUT_DIR]
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGML_QUANT_SIZES, quants

ROWS, COLS = 4, 512
SEED = 20240611

# name -> (gguf type, byte offsets of the f16 scale fields inside one block)
TYPES = {
    "q4_0": (QT.Q4_0, None),
    "q4_1": (QT.Q4_1, None),
    "q5_0": (QT.Q5_0, None),
    "q5_1": (QT.Q5_1, None),
    "q8_0": (QT.Q8_0, None),
    "q2_k": (QT.Q2_K, [80, 82]),    # scales[16] qs[64] d dmin
    "q3_k": (QT.Q3_K, [108]),       # hmask[32] qs[64] scales[12] d
    "q4_k": (QT.Q4_K, [0, 2]),      # d dmin scales[12] qs[128]
    "q5_k": (QT.Q5_K, [0, 2]),      # d dmin scales[12] qh[32] qs[128]
    "q6_k": (QT.Q6_K, [208]),       # ql[128] qh[64] scales[16] d
}


def make_blocks(rng, qtype, f16_fields):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    if f16_fields is None:
        w = rng.standard_normal((ROWS, COLS)).astype(np.float32)
        w[0, :32] *= 100.0  # one block with a large range
        w[1, 32:64] = 0.0   # one all-zero block (d = 0)
        return quants.quantize(w, qtype)
    n_blocks = ROWS * COLS // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in f16_fields:
        mag = np.exp(rng.uniform(np.log(1e-4), np.log(0.5), size=n_blocks))
        sign = np.where(rng.random(n_blocks) < 0.25, -1.0, 1.0)
        vals = (mag * sign).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(ROWS, COLS // block_elems * block_bytes)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures", "quant_gguf")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    index = {"generator": "scripts/gguf_quant_fixtures.py", "shape": [ROWS, COLS], "types": {}}
    for name, (qtype, fields) in TYPES.items():
        blocks = np.ascontiguousarray(make_blocks(rng, qtype, fields), dtype=np.uint8)
        ref = quants.dequantize(blocks, qtype).astype("<f4")
        assert ref.shape == (ROWS, COLS), (name, ref.shape)
        assert np.isfinite(ref).all(), name
        blocks.tofile(os.path.join(out, f"{name}.blocks"))
        ref.tofile(os.path.join(out, f"{name}.f32"))
        index["types"][name] = {
            "ggml_type": int(qtype),
            "block_elems": GGML_QUANT_SIZES[qtype][0],
            "block_bytes": GGML_QUANT_SIZES[qtype][1],
            "blocks": f"{name}.blocks",
            "reference": f"{name}.f32",
            "source": "gguf.quants.quantize" if fields is None else "random blocks",
        }
    import gguf  # noqa: E402 (version only)
    index["gguf_version"] = getattr(gguf, "__version__", None) or _pkg_version()
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def _pkg_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # pragma: no cover
        return "unknown"


if __name__ == "__main__":
    main()
