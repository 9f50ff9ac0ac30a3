#!/usr/bin/env python3
"""torch.nn.utils.prune vs modelopt-prune, side by side, one thread.

Run from the repository root:  python3 benches/compare/prune.py [--reps 5] [--no-rust]

Times torch (torch.set_num_threads(1)) on the same shapes as
crates/prune/benches/prune_speed.rs, then runs that criterion bench and prints one table with
the ratio torch / modelopt. Both use N(0, 0.02)-like weights of 4096 x 4096 (global: 16 x 1024 x 1024).
Each torch call gets a fresh, untimed module (pruning re-parametrises it).
"""
import argparse
import re
import statistics
import subprocess
import time

import torch
import torch.nn as nn
from torch.nn.utils import prune


def median_ms(fn, setup, reps):
    out = []
    for _ in range(reps):
        arg = setup()
        t0 = time.perf_counter()
        fn(arg)
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def torch_times(reps):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = torch.randn(4096, 4096) * 0.02
    parts = [torch.randn(1024, 1024) * 0.02 for _ in range(16)]

    def lin():
        m = torch.nn.utils.skip_init(nn.Linear, 4096, 4096)
        with torch.no_grad():
            m.weight.copy_(w)
        return m

    def lins():
        ms = []
        for p in parts:
            m = torch.nn.utils.skip_init(nn.Linear, 1024, 1024)
            with torch.no_grad():
                m.weight.copy_(p)
            ms.append(m)
        return ms

    res = {}
    res["l1_unstructured_50"] = median_ms(lambda m: prune.l1_unstructured(m, "weight", amount=0.5), lin, reps)
    res["ln_structured_l2_dim0_50"] = median_ms(
        lambda m: prune.ln_structured(m, "weight", amount=0.5, n=2, dim=0), lin, reps)
    res["ln_structured_l2_dim1_50"] = median_ms(
        lambda m: prune.ln_structured(m, "weight", amount=0.5, n=2, dim=1), lin, reps)
    res["global_l1_16x1024x1024_50"] = median_ms(
        lambda ms: prune.global_unstructured([(m, "weight") for m in ms], prune.L1Unstructured, amount=0.5),
        lins, reps)
    return res


def rust_times():
    cmd = ["cargo", "bench", "-q", "-p", "modelopt-prune", "--bench", "prune_speed", "--",
           "--warm-up-time", "1", "--measurement-time", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = {}
    name = None
    unit = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
    for line in out.splitlines():
        m = re.match(r"^prune_4096x4096/(\S+)", line)
        if m:
            name = m.group(1)
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", line)
        if t and name:
            res[name] = float(t.group(1)) * unit[t.group(2)]
            name = None
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-rust", action="store_true")
    a = ap.parse_args()
    tt = torch_times(a.reps)
    rt = {} if a.no_rust else rust_times()
    print(f"{'case (one thread)':34s} {'torch ms':>10s} {'modelopt ms':>12s} {'speed-up':>9s}")
    for k, v in tt.items():
        r = rt.get(k)
        rs = f"{r:12.2f}" if r else f"{'-':>12s}"
        ratio = f"{v / r:8.1f}x" if r else f"{'-':>9s}"
        print(f"{k:34s} {v:10.2f} {rs} {ratio}")
    for k, r in rt.items():
        if k not in tt:
            print(f"{k:34s} {'-':>10s} {r:12.2f} {'-':>9s}")


if __name__ == "__main__":
    main()
