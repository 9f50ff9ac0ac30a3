#!/usr/bin/env python3
"""One Linear layer (4096x4096 by default), torch vs modelopt's quantized kernels, one thread each,
side by side.

torch: nn.Linear f32 and torch.ao.quantization.quantize_dynamic int8 (fbgemm, per-tensor u8
activations computed at run time), torch.set_num_threads(1), under torch.no_grad().
modelopt: `cargo run --release --example qlinear` (built first), which times f32 (gemm-f32 through
modelopt-nn's Dense), W8A8 dynamic (per-token u8 activations quantized in the call, exact int32
products, fused epilogue) and the weight-only kernels (Q8_0, Q4_0, Q4_K, int4-g32 with activations
quantized on the fly to 8-bit blocks).

Both sides measure the CPU time of their thread (time.thread_time; the Rust binary reads the thread's
CPU clock), so time spent descheduled on a shared machine is not counted; wall times are printed too.
Rounds alternate torch / modelopt / torch / ...; each figure is the median over rounds of each
round's median per-call time.

Run from the repository root: python3 benches/compare/qlinear.py [--rounds 3] [--n 4096] [--k 4096]
[--batches 1,16,64] [--seconds 0.4]
"""
import argparse
import json
import statistics
import subprocess
import time

import torch
import torch.nn as nn


def torch_round(n, k, batches, seconds):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lin = nn.Linear(k, n).eval()
    qlin = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(k, n)), {nn.Linear}, dtype=torch.qint8).eval()
    out = {}
    with torch.no_grad():
        for b in batches:
            x = torch.randn(b, k)
            for name, m in (("torch f32", lin), ("torch int8 dynamic", qlin)):
                m(x)
                walls, cpus = [], []
                start = time.perf_counter()
                while time.perf_counter() - start < seconds or len(walls) < 5:
                    w0, c0 = time.perf_counter(), time.thread_time()
                    m(x)
                    cpus.append(time.thread_time() - c0)
                    walls.append(time.perf_counter() - w0)
                out[(name, b)] = (statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3)
    return out


def rust_round(n, k, batches, seconds):
    cmd = ["cargo", "run", "--quiet", "--release", "--example", "qlinear", "--", "--n", str(n), "--k", str(k),
           "--batches", ",".join(map(str, batches)), "--seconds", str(seconds)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = {}
    for line in res.stdout.splitlines():
        r = json.loads(line)
        if "batch" not in r:
            continue
        out[("modelopt " + r["kernel"], r["batch"])] = (r["wall_ms"], r["cpu_ms"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=0.4)
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "qlinear"], check=True)
    rounds = []
    for _ in range(a.rounds):
        rounds.append(torch_round(a.n, a.k, batches, a.seconds))
        rounds.append(rust_round(a.n, a.k, batches, a.seconds))
    rounds.append(torch_round(a.n, a.k, batches, a.seconds))
    keys = sorted({key for r in rounds for key in r}, key=lambda t: (t[1], t[0]))
    print(f"Linear {a.n}x{a.k}, one thread, CPU ms per call (wall ms), median of {a.rounds} rounds")
    print(f"{'kernel':<28} {'batch':>5} {'cpu ms':>9} {'wall ms':>9} {'vs torch int8':>14}")
    for key in keys:
        cpu = statistics.median(r[key][1] for r in rounds if key in r)
        wall = statistics.median(r[key][0] for r in rounds if key in r)
        ref = statistics.median(r[("torch int8 dynamic", key[1])][1] for r in rounds if ("torch int8 dynamic", key[1]) in r)
        print(f"{key[0]:<28} {key[1]:>5} {cpu:>9.3f} {wall:>9.3f} {ref / cpu:>13.2f}x")


if __name__ == "__main__":
    main()
