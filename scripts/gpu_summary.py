#!/usr/bin/env python3
"""Prints the GPU check's summary: each benchmark case with its bar, mlxn's time and % of the
copy ceiling measured in the same run, and the peer's time on the same shape."""
import glob
import json
import os
import sys


def main(folder):
    bench = json.load(open(os.path.join(folder, "bench.json")))
    peers = {}
    for path in sorted(glob.glob(os.path.join(folder, "peers_*.json"))):
        peers.update(json.load(open(path)).get("cases", {}))
    tests = {}
    tpath = os.path.join(folder, "tests.json")
    if os.path.exists(tpath):
        tests = json.load(open(tpath))
    print(f"device {bench['device_name']}, copy bandwidth {bench['copy_gbs']:.0f} GB/s, "
          f"bf16 GEMM {bench.get('gemm_tflops', 0):.0f} TFLOP/s")
    if tests:
        print(f"tests: {tests.get('tests', 0)} run, {tests.get('failures', 0)} failed, "
              f"{tests.get('disabled', 0)} disabled")
    hdr = f"{'case':44s} {'mlxn us':>9s} {'%copy':>6s} {'%gemm':>6s} {'goal':>13s} {'ok':>4s} {'peer us':>9s} {'peer/mlxn':>9s}"
    print(hdr)
    misses = 0
    for c in bench["cases"]:
        us = c["graph_us"] or c["us"]
        goal = "-"
        if c["goal_pct_copy"]:
            goal = f">={c['goal_pct_copy']:.0f}% copy"
        if c.get("goal_pct_gemm"):
            goal = f">={c['goal_pct_gemm']:.0f}% gemm"
        if c["goal_us"]:
            goal = f"<={c['goal_us']:.1f} us"
        ok = ("yes" if c["pass"] else "NO") if c["judged"] else "-"
        misses += c["judged"] and not c["pass"]
        p = peers.get(c["name"])
        pus = (p.get("graph_us") or p.get("us")) if p else None
        ratio = f"{pus / us:9.2f}" if pus else f"{'-':>9s}"
        pcol = f"{pus:9.2f}" if pus else f"{'-':>9s}"
        pg = f"{c['pct_gemm']:5.1f}%" if c.get("pct_gemm") else f"{'-':>6s}"
        print(f"{c['name']:44s} {us:9.2f} {c['pct_copy']:5.1f}% {pg} {goal:>13s} {ok:>4s} {pcol} {ratio}")
    print(f"bars missed: {misses}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/gpu-check")
