#!/usr/bin/env python3
"""GGML block formats, one thread, a 4096x4096 f32 matrix: gguf-py vs modelopt, side by side.

Run from the repository root:
    python3 benches/compare/ggml.py [--rounds 3] [--reps 5] [--clock cpu|wall] [--no-cargo]

Each round times gguf-py's `gguf.quants.quantize` (numpy, single-threaded) on every type it
implements, then runs modelopt's criterion bench `cargo bench -p modelopt-quantize --bench ggml`
(one thread; quantize_row over the whole matrix, which is 4096 rows of 4096) on the *same* matrix:
the script writes it to a temporary file and the bench reads it through MODELOPT_BENCH_INPUT.
The per-round figures are criterion's median and gguf-py's median of `--reps` calls; the table
shows the median over rounds and the spread (min..max) of the modelopt figure, since the machine
is shared. GB/s = bytes of f32 input (64 MiB) per second. `--clock cpu` (the default) times
both sides in the calling thread's CPU time (`time.thread_time()` for gguf-py,
MODELOPT_BENCH_CLOCK=cpu for the bench), so time spent waiting for a core taken by another
process does not count; `--clock wall` uses wall time on both sides.

gguf-py does not implement the K-quants nor IQ4_NL / IQ4_XS (NotImplementedError: it only
dequantizes them); for those, and for context, the
llama.cpp and candle figures of /work/shared/peers/PEERS.md (same kind of machine, measured on
another day) are printed as quoted constants, labeled as such. Only the gguf-py column is a
side-by-side measurement.
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

# (modelopt bench id, gguf-py type name)
TYPES = [
    ("q8_0", "Q8_0"),
    ("q4_0", "Q4_0"),
    ("q4_1", "Q4_1"),
    ("q5_0", "Q5_0"),
    ("q5_1", "Q5_1"),
    ("q2_K", "Q2_K"),
    ("q3_K", "Q3_K"),
    ("q4_K", "Q4_K"),
    ("q5_K", "Q5_K"),
    ("q6_K", "Q6_K"),
    ("iq4_nl", "IQ4_NL"),
    ("iq4_xs", "IQ4_XS"),
    ("f16", "F16"),
    ("bf16", "BF16"),
]
DEQUANT = ["q8_0", "q4_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"]

# Quoted from /work/shared/peers/PEERS.md (1 thread, 4096x4096, GB/s): NOT measured by this script.
LLAMA_CPP_QUOTED = {"q8_0": 1.04, "q4_0": 1.44, "q4_1": 1.70, "q5_0": 1.58, "q5_1": 1.37,
                    "q4_K": 0.068, "q5_K": 0.082, "q6_K": 0.155,
                    # PEERS.md: llama.cpp's own IQ4 quantizers, no importance matrix
                    "iq4_nl": 0.021, "iq4_xs": 0.021}
CANDLE_QUOTED = {"q8_0": 1.01, "q4_0": 1.42, "q4_K": 0.27}  # candle's Q4_K is not llama.cpp-exact


def gguf_py_round(w, reps, clock):
    import gguf
    from gguf.quants import quantize
    out = {}
    for bench_id, name in TYPES:
        qt = gguf.GGMLQuantizationType[name]
        try:
            quantize(w[:8], qt)
        except NotImplementedError:
            out[bench_id] = None
            continue
        quantize(w, qt)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = clock()
            quantize(w, qt)
            ts.append(clock() - t0)
        out[bench_id] = NBYTES / statistics.median(ts) / 1e9
    return out


def criterion_gbps(group, bench_id):
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    path = os.path.join(target, "criterion", group, bench_id, "new", "estimates.json")
    try:
        with open(path) as f:
            est = json.load(f)
    except FileNotFoundError:
        return None
    return NBYTES / (est["median"]["point_estimate"] * 1e-9) / 1e9


def modelopt_round(input_path, run_cargo, clock_name):
    if run_cargo:
        cmd = ["cargo", "bench", "-p", "modelopt-quantize", "--bench", "ggml", "--",
               "--warm-up-time", "1", "--measurement-time", "3"]
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        env = dict(os.environ, MODELOPT_BENCH_INPUT=input_path, MODELOPT_BENCH_CLOCK=clock_name)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    q = {b: criterion_gbps("ggml_quantize_4096x4096", b) for b, _ in TYPES}
    d = {b: criterion_gbps("ggml_dequantize_4096x4096", b) for b in DEQUANT}
    return q, d


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, width=7, digits=3):
    return f"{v:{width}.{digits}f}" if v is not None else f"{'n/a':>{width}s}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="gguf-py + cargo bench rounds, interleaved")
    ap.add_argument("--reps", type=int, default=5, help="gguf-py calls per type and round")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="thread CPU time (default) or wall time, on both sides")
    ap.add_argument("--no-cargo", action="store_true", help="reuse the last criterion results")
    a = ap.parse_args()
    import gguf  # noqa: F401  (fail early when missing)
    from importlib.metadata import version
    w = np.random.default_rng(0).standard_normal((ROWS, COLS), dtype=np.float32) * 0.02
    print(f"gguf {version('gguf')}, numpy {np.__version__}; input {ROWS}x{COLS} f32 = {NBYTES / 2**20:.0f} MiB,"
          f" N(0,1)*0.02 seed 0; {a.rounds} rounds; {a.clock} time")
    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    with tempfile.NamedTemporaryFile(suffix=".f32", delete=False) as f:
        f.write(w.astype("<f4").tobytes())
        input_path = f.name
    try:
        g_rounds, mq_rounds, md_rounds = [], [], []
        for r in range(a.rounds):
            g_rounds.append(gguf_py_round(w, a.reps, clock))
            q, d = modelopt_round(input_path, not a.no_cargo, a.clock)
            mq_rounds.append(q)
            md_rounds.append(d)
            print(f"round {r + 1}: " + ", ".join(
                f"{b} {fmt(q[b], 0, 2).strip()}/{fmt(g_rounds[-1][b], 0, 2).strip()}" for b, _ in TYPES),
                file=sys.stderr, flush=True)
    finally:
        os.unlink(input_path)

    print(f"\nQuantize, one thread, GB/s of f32 input, {a.clock} time (median over rounds; modelopt spread min..max)")
    print(f"| {'format':6s} | {'modelopt':>8s} | {'spread':>13s} | {'gguf-py':>7s} | {'ratio':>7s} |"
          f" {'llama.cpp (quoted)':>18s} | {'modelopt / llama.cpp':>20s} | {'candle (quoted)':>15s} |")
    print(f"|{'-' * 8}|{'-' * 10}|{'-' * 15}|{'-' * 9}|{'-' * 9}|{'-' * 20}|{'-' * 22}|{'-' * 17}|")
    for b, _ in TYPES:
        ms = [r[b] for r in mq_rounds if r[b] is not None]
        m = med(ms)
        g = med([r[b] for r in g_rounds])
        spread = f"{min(ms):.2f}..{max(ms):.2f}" if ms else "n/a"
        ratio = f"{m / g:6.1f}x" if m and g else f"{'n/a':>7s}"
        lq = LLAMA_CPP_QUOTED.get(b)
        lratio = f"{m / lq:19.1f}x" if m and lq else f"{'n/a':>20s}"
        print(f"| {b:6s} | {fmt(m, 8)} | {spread:>13s} | {fmt(g)} | {ratio} | {fmt(lq, 18)} | {lratio} |"
              f" {fmt(CANDLE_QUOTED.get(b), 15)} |")
    print("\nDequantize, one thread, GB/s of f32 output (modelopt only; median over rounds)")
    for b in DEQUANT:
        print(f"  {b:6s} {fmt(med([r[b] for r in md_rounds]))}")
    print("\nllama.cpp / candle columns are quoted from /work/shared/peers/PEERS.md, not measured here.")


if __name__ == "__main__":
    main()
