#!/usr/bin/env python3
"""Fixtures for the gdn tests from transformers' Qwen3-Next reference functions.

Runs torch_chunk_gated_delta_rule, torch_recurrent_gated_delta_rule and
torch_causal_conv1d_update (transformers/models/qwen3_next/modeling_qwen3_next.py) on tiny
inputs drawn with fixed seeds, and writes each case as tests/fixtures/gdn/<case>.json (the
manifest: arrays with dtype, shape and byte offset, plus the case's parameters) and
<case>.bin (the arrays, little-endian, back to back). Layouts are mlxn's:
  q, k [B, T, Hk, K]; v, out [B, T, H, V]; g, beta [B, T, H]; state [N, H, K, V];
  conv x [B, T, C], conv state [B, W - 1, C] (token-major; transformers keeps [B, C, W - 1]).

Usage: python3 scripts/gdn_fixtures.py [output dir]     (needs torch and transformers)
"""
import json
import pathlib
import sys

import importlib

import torch
import torch.nn.functional as F
from transformers.models.qwen3_next.modeling_qwen3_next import (
    torch_chunk_gated_delta_rule,
    torch_recurrent_gated_delta_rule,
)


def find_conv_update():
    """transformers' torch conv-state update: Qwen3-Next's module in recent releases, other
    hybrid models' modules in older ones; torch's own conv1d as the last resort."""
    for mod in ("qwen3_next", "qwen3_5", "olmo_hybrid", "falcon_h1", "bamba", "granitemoehybrid", "mamba2"):
        try:
            m = importlib.import_module(f"transformers.models.{mod}.modeling_{mod}")
        except ImportError:
            continue
        fn = getattr(m, "torch_causal_conv1d_update", None)
        if fn is not None:
            return fn, f"transformers.models.{mod}.torch_causal_conv1d_update"

    def conv1d_update(hidden_states, conv_state, weight, bias=None, activation=None):
        # conv_state [B, C, S] holds the inputs before hidden_states [B, C, T]
        state_len, seq_len = conv_state.shape[-1], hidden_states.shape[-1]
        full = torch.cat([conv_state, hidden_states], dim=-1)
        conv_state.copy_(full[:, :, -state_len:])
        out = F.conv1d(full, weight.unsqueeze(1), bias, groups=hidden_states.shape[1])
        return F.silu(out[:, :, -seq_len:])

    return conv1d_update, "torch.nn.functional.conv1d"


torch_causal_conv1d_update, CONV_REFERENCE = find_conv_update()

ROOT = pathlib.Path(__file__).resolve().parent.parent
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


class Case:
    def __init__(self, name, **params):
        self.name = name
        self.params = params
        self.arrays = []
        self.blob = bytearray()

    def add(self, name, t):
        t = t.detach().to("cpu").contiguous()
        raw = t.view(torch.int16) if t.dtype in (torch.bfloat16, torch.float16) else t
        data = raw.numpy().tobytes()
        self.arrays.append({"name": name, "dtype": DTYPES[t.dtype], "shape": list(t.shape),
                            "offset": len(self.blob), "bytes": len(data)})
        self.blob += data

    def write(self, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{self.name}.bin").write_bytes(bytes(self.blob))
        manifest = {"case": self.name, "params": self.params, "arrays": self.arrays,
                    "generator": "scripts/gdn_fixtures.py",
                    "torch": torch.__version__}
        (out_dir / f"{self.name}.json").write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"{self.name}: {len(self.blob)} bytes")


def gates(gen, B, T, H, dtype):
    """a, b in the projection dtype; A_log, dt_bias f32; g and beta as Qwen3-Next computes them."""
    a = (torch.randn(B, T, H, generator=gen) * 2).to(dtype)
    b = (torch.randn(B, T, H, generator=gen) * 2).to(dtype)
    A_log = torch.log(torch.rand(H, generator=gen) * 15 + 1)
    dt_bias = torch.rand(H, generator=gen) - 0.5
    beta = b.sigmoid()
    g = -A_log.float().exp() * F.softplus(a.float() + dt_bias)
    return a, b, A_log, dt_bias, g, beta


def delta_case(name, fn, seed, B, T, Hk, H, K, V, dtype):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, Hk, K, generator=gen).to(dtype)
    k = torch.randn(B, T, Hk, K, generator=gen).to(dtype)
    v = torch.randn(B, T, H, V, generator=gen).to(dtype)
    a, b, A_log, dt_bias, g, beta = gates(gen, B, T, H, dtype)
    h0 = torch.randn(B, H, K, V, generator=gen) * 0.1
    # transformers takes one key head per value head: value head h reads key head h // (H / Hk)
    qr = q.repeat_interleave(H // Hk, dim=2)
    kr = k.repeat_interleave(H // Hk, dim=2)
    out, ht = fn(qr, kr, v, g=g, beta=beta, initial_state=h0.clone(), output_final_state=True,
                 use_qk_l2norm_in_kernel=True)
    c = Case(name, B=B, T=T, Hk=Hk, H=H, K=K, V=V, l2_norm_qk=True, scale=K ** -0.5,
             reference=fn.__name__)
    for n, t in (("q", q), ("k", k), ("v", v), ("a", a), ("b", b), ("A_log", A_log), ("dt_bias", dt_bias),
                 ("g", g), ("beta", beta), ("initial_state", h0), ("out", out), ("final_state", ht)):
        c.add(n, t)
    return c


def conv_case(name, seed, B, T, C, W):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=gen)
    weight = torch.randn(C, W, generator=gen) * 0.5
    bias = torch.randn(C, generator=gen) * 0.1
    state0 = torch.randn(B, C, W - 1, generator=gen)
    state = state0.clone()
    out = torch_causal_conv1d_update(x.transpose(1, 2).contiguous(), state, weight, bias, "silu").transpose(1, 2)
    state1 = state.clone()
    x1 = torch.randn(B, 1, C, generator=gen)
    out1 = torch_causal_conv1d_update(x1.transpose(1, 2).contiguous(), state, weight, bias, "silu").transpose(1, 2)
    c = Case(name, B=B, T=T, C=C, W=W, reference=CONV_REFERENCE)
    tok = lambda s: s.transpose(1, 2)  # [B, C, W - 1] -> [B, W - 1, C]
    for n, t in (("x", x), ("weight", weight), ("bias", bias), ("state_in", tok(state0)), ("out", out),
                 ("state_out", tok(state1)), ("x_step", x1), ("out_step", out1), ("state_step", tok(state))):
        c.add(n, t)
    return c


def main():
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "gdn"
    torch.manual_seed(0)
    cases = [
        delta_case("chunk_bf16_gqa", torch_chunk_gated_delta_rule, 1, 1, 70, 1, 2, 64, 64, torch.bfloat16),
        delta_case("recurrent_f32", torch_recurrent_gated_delta_rule, 2, 1, 3, 2, 2, 64, 64, torch.float32),
        delta_case("chunk_f32_k128", torch_chunk_gated_delta_rule, 3, 1, 40, 1, 1, 128, 64, torch.float32),
        conv_case("conv_f32", 4, 1, 5, 96, 4),
    ]
    for c in cases:
        c.write(out_dir)


if __name__ == "__main__":
    main()
