#!/usr/bin/env python3
"""Writes the weight-file fixtures the loader tests compare against, using the reference
tools themselves:

  tests/fixtures/io/tools.gguf          written by gguf-py (the `gguf` package): metadata of
                                        every value type, tensors of plain and block types
  tests/fixtures/io/tools.safetensors   written by the `safetensors` package: every dtype it
                                        can serialise
  tests/fixtures/io/expected.json       what gguf-py's GGUFReader and safetensors'
                                        deserialize() report for those files (names, types,
                                        shapes, offsets, byte hashes, values)

and tiny valid seed inputs for the fuzz targets under fuzz/corpus/<parser>/.

    pip install gguf safetensors numpy
    python3 scripts/io_fixtures.py

Output is deterministic (fixed seeds), so re-running it leaves the files unchanged unless
a tool's output changes.
"""
import importlib.metadata
import json
import os
import struct
import sys

import numpy as np

try:
    import gguf
    import safetensors
    from safetensors import TensorSpec
except ImportError as e:  # pragma: no cover
    sys.exit(f"io_fixtures.py needs the gguf and safetensors packages: {e}")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "io")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def py(v):
    """numpy scalars -> JSON-able Python values."""
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


# ---- GGUF ----------------------------------------------------------------------------------

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType


def write_gguf(path: str) -> None:
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)  # not exact in f32: the file holds the rounded value
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo \u2581world")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62) - 3)
    w.add_float64("test.f64", 1.0 / 3.0)
    w.add_key_value("test.arr.u8", [0, 1, 255], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("test.arr.i8", [-128, 0, 127], VT.ARRAY, sub_type=VT.INT8)
    w.add_key_value("test.arr.u16", [0, 65535], VT.ARRAY, sub_type=VT.UINT16)
    w.add_key_value("test.arr.i16", [-32768, 32767], VT.ARRAY, sub_type=VT.INT16)
    w.add_key_value("test.arr.u32", [1, 4294967295], VT.ARRAY, sub_type=VT.UINT32)
    w.add_array("test.arr.i32", [1, -2, 3, -4])
    w.add_key_value("test.arr.u64", [1, 2**64 - 1], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("test.arr.i64", [-(2**63), 2**63 - 1], VT.ARRAY, sub_type=VT.INT64)
    w.add_array("test.arr.f32", [0.5, -1.25, 0.1])
    w.add_key_value("test.arr.f64", [0.1, -2.5e300], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_array("test.arr.bool", [True, False, True])
    w.add_array("test.arr.string", ["<s>", "", "tok\u2581en", "\u4e2d\u6587"])
    w.add_array("test.arr.nested", [[1, 2], [3, 4, 5]])
    w.add_array("test.arr.nested_strings", [["a", "b"], ["c"]])

    def floats(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    w.add_tensor("f32", floats(3, 8))
    w.add_tensor("f16", floats(2, 16).astype(np.float16))
    w.add_tensor("bf16", gguf.quants.quantize(floats(2, 8), QT.BF16), raw_dtype=QT.BF16)
    w.add_tensor("f64", rng.standard_normal(4).astype(np.float64))
    w.add_tensor("i8", rng.integers(-128, 127, 7).astype(np.int8))
    w.add_tensor("i16", rng.integers(-30000, 30000, 5).astype(np.int16))
    w.add_tensor("i32", rng.integers(-(2**31), 2**31 - 1, 4).astype(np.int32))
    w.add_tensor("i64", rng.integers(-(2**62), 2**62, 3).astype(np.int64))
    for qt in (QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0):
        w.add_tensor(qt.name.lower(), gguf.quants.quantize(floats(2, 64), qt), raw_dtype=qt)
    w.add_tensor("q8_0_3d", gguf.quants.quantize(floats(2, 2, 32), QT.Q8_0), raw_dtype=QT.Q8_0)
    # Types gguf-py does not quantize (or mlxn does not view) are written as raw blocks: the
    # loader never decodes them, it only has to place and size them right.
    for qt in (QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K, QT.Q8_K, QT.IQ4_NL, QT.IQ4_XS, QT.TQ2_0, QT.MXFP4):
        block, nbytes = gguf.GGML_QUANT_SIZES[qt]
        rows, cols = 2, 256
        raw = rng.integers(0, 256, (rows, cols // block * nbytes)).astype(np.uint8)
        w.add_tensor(qt.name.lower(), raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dump_gguf(path: str) -> dict:
    r = gguf.GGUFReader(path)
    out = {"file": os.path.basename(path), "alignment": int(r.alignment), "data_offset": int(r.data_offset),
           "metadata": [], "tensors": []}
    # GGUFReader flattens nested arrays: "value" holds their leaves in order, and "types"
    # lists the nesting (["ARRAY", "ARRAY", "INT32"]).
    for name, field in r.fields.items():
        if name.startswith("GGUF."):  # the reader's own header pseudo-fields
            if name == "GGUF.version":
                out["version"] = int(field.contents())
            continue
        entry = {"key": name, "types": [t.name for t in field.types]}
        v = field.contents()
        if isinstance(v, list):
            entry["value"] = [py(x) for x in v]
        else:
            entry["value"] = py(v)
        out["metadata"].append(entry)
    with open(path, "rb") as f:
        blob = f.read()
    for t in r.tensors:
        start = int(t.data_offset)
        data = blob[start:start + int(t.n_bytes)]
        e = {
            "name": t.name,
            "type": t.tensor_type.name,
            "ne": [int(x) for x in t.shape],
            "n_elements": int(t.n_elements),
            "n_bytes": int(t.n_bytes),
            "file_offset": start,
            "fnv1a64": fnv1a64(data),
        }
        if t.tensor_type in (QT.F32, QT.F16, QT.F64, QT.I8, QT.I16, QT.I32, QT.I64):
            e["values"] = [py(x) for x in np.asarray(t.data).reshape(-1)[:8]]
        out["tensors"].append(e)
    out["ggml_types"] = {qt.name: [int(qt.value), *gguf.GGML_QUANT_SIZES[qt]] for qt in gguf.GGML_QUANT_SIZES}
    return out


# ---- safetensors ---------------------------------------------------------------------------

def write_safetensors(path: str) -> None:
    rng = np.random.default_rng(5678)
    arrays = {
        "float64": rng.standard_normal((2, 3)),
        "float32": rng.standard_normal((3, 4)).astype(np.float32),
        "float16": rng.standard_normal((4,)).astype(np.float16),
        "bfloat16": (rng.standard_normal((2, 4)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16),
        "int64": rng.integers(-(2**62), 2**62, (3,)).astype(np.int64),
        "int32": rng.integers(-(2**31), 2**31 - 1, (2, 2)).astype(np.int32),
        "int16": rng.integers(-30000, 30000, (5,)).astype(np.int16),
        "int8": rng.integers(-128, 127, (1, 6)).astype(np.int8),
        "uint8": rng.integers(0, 255, (6,)).astype(np.uint8),
        "uint16": rng.integers(0, 65535, (3,)).astype(np.uint16),
        "uint32": rng.integers(0, 2**32 - 1, (2, 3), dtype=np.uint64).astype(np.uint32),
        "uint64": rng.integers(0, 2**63, (2,), dtype=np.uint64),
        "bool": rng.integers(0, 2, (5,)).astype(np.uint8),
        "float8_e4m3fn": rng.integers(0, 255, (4,)).astype(np.uint8),
        "float8_e5m2": rng.integers(0, 255, (4,)).astype(np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    dtype_of = {"scalar": "float32", "empty": "float32"}
    specs = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        specs[f"t.{name}"] = TensorSpec(dtype=dtype_of.get(name, name), shape=list(a.shape),
                                       data_ptr=a.ctypes.data, data_len=a.nbytes)
    safetensors.serialize_file(specs, path, metadata={"format": "np"})  # one key: the writer orders keys at random


def dump_safetensors(path: str) -> dict:
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {"file": os.path.basename(path), "header_bytes": n, "metadata": header.get("__metadata__", {}),
           "tensors": []}
    np_of = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64}
    for name, t in sorted(safetensors.deserialize(blob), key=lambda kv: kv[0]):
        begin, end = header[name]["data_offsets"]
        data = bytes(t["data"])
        assert data == blob[8 + n + begin:8 + n + end]
        e = {"name": name, "dtype": t["dtype"], "shape": list(t["shape"]), "begin": begin, "end": end,
             "fnv1a64": fnv1a64(data)}
        if t["dtype"] in np_of:
            e["values"] = [py(x) for x in np.frombuffer(data, dtype=np_of[t["dtype"]])[:8]]
        elif t["dtype"] == "BF16":
            bits = np.frombuffer(data, dtype=np.uint16).astype(np.uint32) << 16
            e["values"] = [py(x) for x in bits.view(np.float32)[:8]]
        out["tensors"].append(e)
    return out


# ---- fuzz seeds ----------------------------------------------------------------------------

def write_corpus() -> None:
    os.makedirs(os.path.join(CORPUS, "gguf"), exist_ok=True)
    os.makedirs(os.path.join(CORPUS, "safetensors"), exist_ok=True)
    os.makedirs(os.path.join(CORPUS, "config"), exist_ok=True)

    g = os.path.join(CORPUS, "gguf", "small.gguf")
    w = gguf.GGUFWriter(g, "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("general.flag", False)
    w.add_array("tokenizer.ggml.tokens", ["a", "b"])
    w.add_array("test.nested", [[1], [2, 3]])
    w.add_tensor("w", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.add_tensor("q", gguf.quants.quantize(np.ones((1, 32), dtype=np.float32), QT.Q8_0), raw_dtype=QT.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    a = np.arange(6, dtype=np.float32)
    b = np.arange(4, dtype=np.uint8)
    specs = {"w": TensorSpec(dtype="float32", shape=[2, 3], data_ptr=a.ctypes.data, data_len=a.nbytes),
             "b": TensorSpec(dtype="uint8", shape=[4], data_ptr=b.ctypes.data, data_len=b.nbytes)}
    safetensors.serialize_file(specs, os.path.join(CORPUS, "safetensors", "small.safetensors"),
                               metadata={"format": "np"})

    config = {"model_type": "qwen3", "hidden_size": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
              "layer_types": ["full_attention"], "text_config": {"vocab_size": 32},
              "quantization": {"group_size": 64, "bits": 4, "model.layers.0.mlp.down_proj": {"bits": 8},
                               "lm_head": False}}
    with open(os.path.join(CORPUS, "config", "config.json"), "w") as f:
        json.dump(config, f)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    gpath = os.path.join(OUT, "tools.gguf")
    spath = os.path.join(OUT, "tools.safetensors")
    write_gguf(gpath)
    write_safetensors(spath)
    expected = {
        "generator": {"gguf": importlib.metadata.version("gguf"), "safetensors": safetensors.__version__,
                      "numpy": np.__version__},
        "gguf": dump_gguf(gpath),
        "safetensors": dump_safetensors(spath),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=False)
        f.write("\n")
    write_corpus()
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in os.listdir(OUT))
    print(f"io_fixtures: wrote {OUT} ({total} bytes) and {CORPUS}")


if __name__ == "__main__":
    main()
