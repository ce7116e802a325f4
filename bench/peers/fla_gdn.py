#!/usr/bin/env python3
"""FLA's Gated DeltaNet kernels on the shapes of bench/gdn.cpp, timed as CUDA-graph replays.

Times fla.ops.gated_delta_rule.chunk_gated_delta_rule (prefill) and
fused_recurrent_gated_delta_rule (decode step, state in and out), plus torch's conv1d + SiLU
for the conv bar, and prints one line per case; --json writes them to a file.
Inputs as in bench/gdn.cpp: bf16 q, k, v, keys normalised inside the kernel, g f32 log
decays from Qwen3-Next's gate, beta in (0, 1).

Usage: python3 bench/peers/fla_gdn.py [--json out.json]   (needs torch, triton, fla-core,
flash-linear-attention and einops importable)
"""
import argparse
import itertools
import json
import math

import torch
import torch.nn.functional as F

from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

CHUNK = [(1, 4096, 16, 32, 128, 128), (1, 16384, 16, 32, 128, 128), (4, 2048, 8, 16, 128, 128)]
DECODE = [(1, 1, 16, 32, 128, 128), (32, 1, 16, 32, 128, 128)]


def inputs(B, T, Hk, H, K, V, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.rand(*s, device="cuda", generator=gen) * 2 - 1
    q = r(B, T, Hk, K).bfloat16()
    k = r(B, T, Hk, K).bfloat16()
    v = r(B, T, H, V).bfloat16()
    a, b = r(B, T, H), r(B, T, H)
    A_log, dt_bias = r(H), r(H)
    g = -A_log.exp() * F.softplus(a + dt_bias)
    beta = b.sigmoid().bfloat16()
    return q, k, v, g, beta


def graph_time_us(fn, launches=20, reps=15):
    """Median time of one call inside a replayed graph of `launches` calls."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(launches):
            fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e3 / launches)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {}

    # Keyed by the mlxn bench case of the same shape, as the other peers are, so that the GPU
    # check's summary puts each peer time beside mlxn's (all graph-replayed).
    def report(name, case, us):
        results[case] = {"peer": name, "us": us, "graph_us": us}
        print(f"{name:52s} {us:10.2f} us", flush=True)

    for B, T, Hk, H, K, V in CHUNK:
        q, k, v, g, beta = inputs(B, T, Hk, H, K, V)
        fn = lambda: chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
        report(f"fla chunk bf16 B{B} T{T} Hk{Hk} H{H} K{K} V{V}", f"gdn_chunk bf16 B{B} T{T} Hk{Hk} H{H} K{K} V{V}",
               graph_time_us(fn, launches=5))
    for B, T, Hk, H, K, V in DECODE:
        q, k, v, g, beta = inputs(B, T, Hk, H, K, V)
        # states rotate through >= 192 MB, as mlxn's case does, so no call finds its state in L2
        copies = max(1, math.ceil(192e6 / (B * H * K * V * 4)))
        h0s = [torch.rand(B, H, K, V, device="cuda") - 0.5 for _ in range(copies)]
        calls = itertools.count()
        fn = lambda: fused_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=h0s[next(calls) % copies],
                                                      output_final_state=True, use_qk_l2norm_in_kernel=True)
        report(f"fla fused_recurrent bf16 decode B{B} Hk{Hk} H{H} K{K} V{V}",
               f"gdn_recurrent bf16 decode B{B} Hk{Hk} H{H} K{K} V{V}", graph_time_us(fn, launches=100))
    # torch conv1d + SiLU over [1, C, T + W - 1] (the state prepended), the conv bar's peer
    C, T, W = 8192, 4096, 4
    x = (torch.rand(1, C, T + W - 1, device="cuda") * 2 - 1).bfloat16()
    w = (torch.rand(C, 1, W, device="cuda") * 2 - 1).bfloat16()
    report(f"torch conv1d+silu bf16 C{C} T{T} W{W}", f"ssm_conv bf16 C{C} T{T} W{W}",
           graph_time_us(lambda: F.silu(F.conv1d(x, w, groups=C)), 10))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "cases": results}, f, indent=1)


if __name__ == "__main__":
    main()
