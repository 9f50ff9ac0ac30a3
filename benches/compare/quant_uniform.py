#!/usr/bin/env python3
"""Uniform quantization of a 4096x4096 f32 weight: torch and numpy peers vs modelopt, one run.

Run from the repository root:
    python3 benches/compare/quant_uniform.py [--reps 9] [--no-cargo]

Peers (single thread, torch.set_num_threads(1); numpy elementwise ops are single-threaded):
  - torch.quantize_per_channel qint8, scales/zero points given (observer run beforehand);
  - torch PerChannelMinMaxObserver(per_channel_symmetric) + quantize_per_channel (scale computation included);
  - numpy symmetric per-channel int8, best in-place form (absmax/127, rint, clip), as in
    /work/shared/peers/numpy_quant_bench.py.
modelopt: `cargo bench -p modelopt-quantize --bench uniform` (criterion, one thread, scale
computation included), read back from target/criterion/*/new/estimates.json (mean time).
GB/s = bytes of f32 input (64 MiB) / time. The machine is shared: compare ratios from one run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch.ao.quantization import PerChannelMinMaxObserver

ROWS = COLS = 4096
NBYTES = ROWS * COLS * 4


def bench(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def numpy_sym_per_channel_int8_inplace(w, buf):
    absmax = np.maximum(w.max(axis=1), -w.min(axis=1))
    scale = absmax / 127.0
    scale[scale == 0] = 1.0
    np.multiply(w, (1.0 / scale)[:, None].astype(np.float32), out=buf)
    np.rint(buf, out=buf)
    np.clip(buf, -127, 127, out=buf)
    return buf.astype(np.int8), scale


def peers(reps):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    w_np = rng.standard_normal((ROWS, COLS), dtype=np.float32) * 0.02
    w = torch.from_numpy(w_np)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(w)
    sc, zp = obs.calculate_qparams()

    def observe_and_quant():
        o = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        o(w)
        s, z = o.calculate_qparams()
        return torch.quantize_per_channel(w, s, z, 0, torch.qint8)

    buf = np.empty_like(w_np)
    cases = [
        ("torch quantize_per_channel qint8 (scales given)", lambda: torch.quantize_per_channel(w, sc, zp, 0, torch.qint8)),
        ("torch PerChannelMinMaxObserver + quantize_per_channel", observe_and_quant),
        ("numpy sym per-channel int8 (best, in-place)", lambda: numpy_sym_per_channel_int8_inplace(w_np, buf)),
    ]
    return [(name, bench(fn, reps)) for name, fn in cases]


MODELOPT = [
    ("int8_sym_per_channel", "modelopt int8 symmetric per-channel (scales computed)"),
    ("torch_qint8_sym_per_channel", "modelopt torch-qint8 symmetric per-channel (scales computed)"),
    ("int8_affine_per_channel", "modelopt int8 affine per-channel (scales computed)"),
    ("int4_sym_group128_packed", "modelopt int4 symmetric group 128, packed"),
    ("int4_sym_group32_packed", "modelopt int4 symmetric group 32, packed"),
]


def modelopt(run_cargo):
    if run_cargo:
        cmd = ["cargo", "bench", "-p", "modelopt-quantize", "--bench", "uniform", "--",
               "--warm-up-time", "1", "--measurement-time", "3"]
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    out = []
    for bench_id, label in MODELOPT:
        path = os.path.join(target, "criterion", "uniform_4096x4096", bench_id, "new", "estimates.json")
        try:
            with open(path) as f:
                est = json.load(f)
            out.append((label, est["mean"]["point_estimate"] * 1e-9))
        except FileNotFoundError:
            out.append((label, None))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--no-cargo", action="store_true", help="reuse the last criterion results")
    a = ap.parse_args()
    print(f"torch {torch.__version__} (threads=1), numpy {np.__version__}; input {ROWS}x{COLS} f32 = {NBYTES / 2**20:.0f} MiB")
    rows = peers(a.reps) + modelopt(not a.no_cargo)
    base = rows[0][1]
    print(f"\n| {'what':62s} | {'ms':>8s} | {'GB/s':>6s} | {'vs torch (scales given)':>23s} |")
    print(f"|{'-' * 64}|{'-' * 10}|{'-' * 8}|{'-' * 25}|")
    for name, t in rows:
        if t is None:
            print(f"| {name:62s} | {'n/a':>8s} | {'n/a':>6s} | {'':>23s} |")
        else:
            print(f"| {name:62s} | {t * 1e3:8.2f} | {NBYTES / t / 1e9:6.2f} | {base / t:22.2f}x |")


if __name__ == "__main__":
    main()
