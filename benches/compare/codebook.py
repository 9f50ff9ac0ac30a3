#!/usr/bin/env python3
"""NF4/FP4, one thread, a 4096x4096 f32 matrix: bitsandbytes (CPU) vs modelopt, side by side.

Run from the repository root (needs torch and bitsandbytes==0.50.2):
    python3 benches/compare/codebook.py [--rounds 3] [--reps 5] [--clock cpu|wall] [--no-cargo]

Each round times bitsandbytes' `quantize_4bit` and `dequantize_4bit` (torch on one thread) on
NF4, FP4 and NF4 with double quantization (block 64), then runs modelopt's criterion bench
`cargo bench -p modelopt-quantize --bench codebook` on the *same* matrix (written to a temporary
file and read through MODELOPT_BENCH_INPUT). It also checks, once, that modelopt's packed bytes
and absmax are identical to bitsandbytes' for that matrix (the bench does not; the tests do on
the reference set). GB/s = bytes of f32 input (quantize) or output (dequantize), 64 MiB, per
second. `--clock cpu` (default) times both sides in the calling thread's CPU time, which a shared
machine disturbs less; `--clock wall` uses wall time. modelopt's learned-codebook timings (k-means
per channel, learned NF4) are printed too; bitsandbytes has no counterpart.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROWS = COLS = 4096
NBYTES = ROWS * COLS * 4
CASES = [("nf4", "nf4", False), ("fp4", "fp4", False), ("nf4_double", "nf4", True)]
LEARNED = ["kmeans4_per_channel", "learned_nf4_block64"]


def bnb_round(w, reps, clock):
    import torch
    import bitsandbytes.functional as F
    x = torch.from_numpy(w)
    q_out, d_out = {}, {}
    for bench_id, qt, dq in CASES:
        F.quantize_4bit(x, blocksize=64, quant_type=qt, compress_statistics=dq)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = clock()
            q, st = F.quantize_4bit(x, blocksize=64, quant_type=qt, compress_statistics=dq)
            ts.append(clock() - t0)
        q_out[bench_id] = NBYTES / statistics.median(ts) / 1e9
        ts = []
        for _ in range(reps):
            t0 = clock()
            F.dequantize_4bit(q, st)
            ts.append(clock() - t0)
        d_out[bench_id] = NBYTES / statistics.median(ts) / 1e9
    return q_out, d_out


def criterion_seconds(group, bench_id):
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    path = os.path.join(target, "criterion", group, bench_id, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] * 1e-9
    except FileNotFoundError:
        return None


def gbps(s):
    return NBYTES / s / 1e9 if s else None


def modelopt_round(input_path, run_cargo, clock_name):
    if run_cargo:
        cmd = ["cargo", "bench", "-p", "modelopt-quantize", "--bench", "codebook", "--",
               "--warm-up-time", "1", "--measurement-time", "3"]
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        env = dict(os.environ, MODELOPT_BENCH_INPUT=input_path, MODELOPT_BENCH_CLOCK=clock_name)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    q = {b: gbps(criterion_seconds("codebook_quantize_4096x4096", b)) for b, _, _ in CASES}
    d = {b: gbps(criterion_seconds("codebook_dequantize_4096x4096", b)) for b, _, _ in CASES}
    learned = {b: criterion_seconds("codebook_learn_4096x4096", b) for b in LEARNED}
    return q, d, learned


def check_identical(w, dir_):
    """modelopt's CLI output for the matrix against bitsandbytes, byte for byte."""
    import torch
    import bitsandbytes.functional as F
    from safetensors.numpy import load_file, save_file
    src = os.path.join(dir_, "w.safetensors")
    save_file({"w": w}, src)
    for qt, dq in [("nf4", False), ("fp4", True)]:
        out = os.path.join(dir_, f"{qt}.safetensors")
        cmd = ["cargo", "run", "--release", "-q", "-p", "modelopt-cli", "--", "quantize", src, "-o", out,
               "--type", qt] + (["--double-quant"] if dq else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        t = load_file(out)
        q, st = F.quantize_4bit(torch.from_numpy(w), blocksize=64, quant_type=qt, compress_statistics=dq)
        same = np.array_equal(q.numpy().reshape(-1), t["w"]) and np.array_equal(st.absmax.numpy(), t["w.absmax"])
        if dq:
            same = same and np.array_equal(st.state2.absmax.numpy(), t["w.absmax2"]) \
                and np.float32(st.offset.item()) == t["w.absmax_offset"][0]
        print(f"{qt}{' double-quant' if dq else ''}: packed bytes and absmax identical to bitsandbytes: {same}")


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, width=7, digits=3):
    return f"{v:{width}.{digits}f}" if v is not None else f"{'n/a':>{width}s}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--no-cargo", action="store_true", help="reuse the last criterion results")
    a = ap.parse_args()
    import torch
    import bitsandbytes
    torch.set_num_threads(1)
    w = np.random.default_rng(0).standard_normal((ROWS, COLS), dtype=np.float32) * 0.02
    print(f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__} (1 thread); input {ROWS}x{COLS}"
          f" f32 = {NBYTES / 2**20:.0f} MiB, N(0,1)*0.02 seed 0; {a.rounds} rounds; {a.clock} time")
    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    with tempfile.TemporaryDirectory() as d:
        input_path = os.path.join(d, "w.f32")
        with open(input_path, "wb") as f:
            f.write(w.astype("<f4").tobytes())
        if not a.no_cargo:
            check_identical(w, d)
        rounds = []
        for r in range(a.rounds):
            bq, bd = bnb_round(w, a.reps, clock)
            mq, md, ml = modelopt_round(input_path, not a.no_cargo, a.clock)
            rounds.append((bq, bd, mq, md, ml))
            print(f"round {r + 1}: " + ", ".join(f"{b} {fmt(mq[b], 0, 2).strip()}/{fmt(bq[b], 0, 3).strip()}"
                                                 for b, _, _ in CASES), file=sys.stderr, flush=True)
    print(f"\nOne thread, GB/s of f32 ({a.clock} time, median over rounds; modelopt spread min..max)")
    print("| case | modelopt quantize | spread | bitsandbytes | ratio | modelopt dequantize | bitsandbytes | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for b, _, _ in CASES:
        mq = [r[2][b] for r in rounds if r[2][b]]
        m, g = med(mq), med([r[0][b] for r in rounds])
        md, gd = med([r[3][b] for r in rounds]), med([r[1][b] for r in rounds])
        spread = f"{min(mq):.2f}..{max(mq):.2f}" if mq else "n/a"
        print(f"| {b} | {fmt(m)} | {spread} | {fmt(g)} | {m / g:.0f}x | {fmt(md)} | {fmt(gd)} | {md / gd:.1f}x |")
    print("\nmodelopt learned codebooks, seconds for the 4096x4096 matrix (median over rounds):")
    for b in LEARNED:
        print(f"  {b:22s} {fmt(med([r[4][b] for r in rounds]), 7, 3)} s")


if __name__ == "__main__":
    main()
