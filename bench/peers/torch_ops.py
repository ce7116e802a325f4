#!/usr/bin/env python3
"""PyTorch on the same shapes as `mlxn bench` (the foundation op families), for comparison
in the same run. Times with CUDA events (median), every case also as CUDA-graph replays
of back-to-back launches. Writes JSON: {"copy_gbs": ..., "cases": {case name: {"us": ..., "graph_us": ...}}}."""
import argparse
import json

import torch
import torch.nn.functional as F


def median_ms(fn, iters, reps=15):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(reps):
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) / iters)
    samples.sort()
    return samples[len(samples) // 2]


def timed(fn, graph=True):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    eager_us = median_ms(fn, 20) * 1e3
    graph_us = 0.0
    if graph:
        # As mlxn bench does: a graph of ~4 ms of back-to-back launches (4 to 100).
        launches = int(min(100, max(4, 4000 / eager_us)))
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            fn()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(launches):
                fn()
        g.replay()
        torch.cuda.synchronize()
        graph_us = median_ms(g.replay, 5) * 1e3 / launches
    return {"us": eager_us, "graph_us": graph_us}


def rand(*shape, dtype=torch.bfloat16):
    return torch.rand(*shape, device="cuda", dtype=torch.float32).mul_(2).sub_(1).to(dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    cases = {}
    bf = torch.bfloat16

    n = 1 << 30
    a, b = torch.empty(n, dtype=torch.uint8, device="cuda"), torch.empty(n, dtype=torch.uint8, device="cuda")
    copy_gbs = 2 * n / (timed(lambda: b.copy_(a), graph=False)["us"] * 1e-6) / 1e9
    del a, b

    for rows, tag in ((8192, "[8192, 4096]"), (1, "[1, 4096] (decode)")):
        x, r, w = rand(rows, 4096), rand(rows, 4096), rand(4096, dtype=torch.float32).to(bf)
        cases[f"rms_norm bf16 {tag}"] = timed(lambda: F.rms_norm(x, (4096,), w, 1e-6))

        def residual():
            s = x + r
            return F.rms_norm(s, (4096,), w, 1e-6), s
        cases[f"rms_norm_residual bf16 {tag}"] = timed(residual)

    x = rand(8192, 32000, dtype=torch.float32)
    cases["softmax f32 [8192, 32000]"] = timed(lambda: torch.softmax(x, -1))
    del x
    x1 = rand(1, 4096)
    cases["softmax bf16 [1, 4096] (decode)"] = timed(lambda: torch.softmax(x1, -1))

    gu = rand(8192, 2 * 14336)
    cases["silu_mul bf16 [8192, 2x14336]"] = timed(lambda: F.silu(gu[:, :14336]) * gu[:, 14336:])
    del gu
    gu1 = rand(1, 2 * 14336)
    cases["silu_mul bf16 [1, 2x14336] (decode)"] = timed(lambda: F.silu(gu1[:, :14336]) * gu1[:, 14336:])

    t = rand(8192, 8192)
    cases["transpose bf16 [8192, 8192]"] = timed(lambda: t.t().contiguous())
    del t

    result = {"copy_gbs": copy_gbs, "cases": cases}
    print(f"torch copy bandwidth {copy_gbs:.0f} GB/s")
    for name, c in cases.items():
        print(f"{name:44s} {c['us']:10.2f} us  graph {c['graph_us']:8.2f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
