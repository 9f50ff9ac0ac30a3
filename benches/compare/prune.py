#!/usr/bin/env python3
"""torch.nn.utils.prune vs modelopt-prune, side by side, one thread.

Run from the repository root:  python3 benches/compare/prune.py [--reps 5] [--criterion] [--no-rust]

Interleaved, rep-major: each repetition times every torch case (torch.set_num_threads(1)), then
runs crates/prune/examples/prune_timing.rs (release, single-threaded; its second, warm
iteration is kept), so both see the same machine load. Medians and the ratio torch / modelopt
are printed. With --criterion the criterion bench crates/prune/benches/prune_speed.rs is run
afterwards as well (not interleaved). Both sides use N(0, 0.02)-like weights of 4096 x 4096
(global: 16 x 1024 x 1024). Each torch call gets a fresh, untimed module (pruning
re-parametrises it).
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


def torch_cases():
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

    return {
        "l1_unstructured_50": (lambda m: prune.l1_unstructured(m, "weight", amount=0.5), lin),
        "ln_structured_l2_dim0_50": (lambda m: prune.ln_structured(m, "weight", amount=0.5, n=2, dim=0), lin),
        "ln_structured_l2_dim1_50": (lambda m: prune.ln_structured(m, "weight", amount=0.5, n=2, dim=1), lin),
        "global_l1_16x1024x1024_50": (
            lambda ms: prune.global_unstructured([(m, "weight") for m in ms], prune.L1Unstructured, amount=0.5),
            lins),
    }


def rust_once(binary):
    out = subprocess.run([binary, "2"], capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        name, ms = line.split()
        res[name] = float(ms)  # the second (warm) iteration overwrites the first
    return res


def criterion_times():
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
    ap.add_argument("--criterion", action="store_true")
    a = ap.parse_args()
    binary = None
    if not a.no_rust:
        subprocess.run(["cargo", "build", "-q", "--release", "-p", "modelopt-prune", "--example", "prune_timing"],
                       check=True)
        binary = "target/release/examples/prune_timing"
    cases = torch_cases()
    for fn, setup in cases.values():  # warm-up
        fn(setup())
    tt = {k: [] for k in cases}
    rt = {}
    for _ in range(a.reps):
        for k, (fn, setup) in cases.items():
            tt[k].append(median_ms(fn, setup, 1))
        if binary:
            for k, v in rust_once(binary).items():
                rt.setdefault(k, []).append(v)
    print(f"{'case (one thread, median of %d)' % a.reps:34s} {'torch ms':>10s} {'modelopt ms':>12s} {'speed-up':>9s}")
    for k, v in tt.items():
        v = statistics.median(v)
        r = statistics.median(rt[k]) if k in rt else None
        rs = f"{r:12.2f}" if r else f"{'-':>12s}"
        ratio = f"{v / r:8.1f}x" if r else f"{'-':>9s}"
        print(f"{k:34s} {v:10.2f} {rs} {ratio}")
    if a.criterion:
        print("criterion (not interleaved):")
        for k, r in criterion_times().items():
            print(f"  {k:34s} {r:10.2f} ms")


if __name__ == "__main__":
    main()
