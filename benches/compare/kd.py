#!/usr/bin/env python3
"""One distillation training step, torch vs modelopt, one thread each, side by side.

Teacher 784-1200-1200-10 (no grad) -> student 784-800-10 and 784-64-10, batch 128, SGD momentum 0.9,
KL at T=4 (weight 0.9) + CE (weight 0.1), random data; the same cases as
../shared/peers/torch_bench.py --only kd, at torch.set_num_threads(1).

Run from the repository root: python3 benches/compare/kd.py [--clock cpu|wall] [--rounds 3] [--reps 7] [--skip-rust]
With --clock cpu (the default) both sides measure their thread's CPU time (torch: time.thread_time,
one intra-op thread, so the work runs on the calling thread; Rust: KD_CLOCK=cpu), so time spent
descheduled on a shared machine is not counted; --clock wall measures wall time.
The Rust side is `cargo bench -p modelopt-distill --bench kd_step` (criterion, short run), whose
"thrpt" (elements = samples per second) is parsed. The runs are interleaved, torch / modelopt / torch /
modelopt / ... / torch, so a busy (shared) machine penalises both sides alike as far as possible; each
round's ratio is modelopt over the better of the two torch runs around it (conservative), and the table
gives the medians over rounds, with the lowest and highest ratio to show the noise.
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T, SOFT_WEIGHT, STEPS = 128, 4.0, 0.9, 20


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


CLOCK = time.thread_time


def torch_cases(reps):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = mlp([784, 1200, 1200, 10]).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    xs = [torch.randn(B, 784) for _ in range(4)]
    ys = [torch.randint(0, 10, (B,)) for _ in range(4)]
    out = {}
    for hidden in (800, 64):
        student = mlp([784, hidden, 10])
        opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)

        def steps():
            for i in range(STEPS):
                x, y = xs[i % 4], ys[i % 4]
                with torch.no_grad():
                    t = teacher(x)
                s = student(x)
                soft = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
                loss = SOFT_WEIGHT * soft + (1 - SOFT_WEIGHT) * F.cross_entropy(s, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        steps()  # warm-up
        times = []
        for _ in range(reps):
            t0 = CLOCK()
            steps()
            times.append(CLOCK() - t0)
        out[hidden] = B * STEPS / statistics.median(times)
    with torch.no_grad():
        times = []
        for _ in range(reps):
            t0 = CLOCK()
            for _ in range(STEPS):
                teacher(xs[0])
            times.append(CLOCK() - t0)
    out["teacher"] = B * STEPS / statistics.median(times)
    return out


def rust_cases():
    cmd = ["cargo", "bench", "-p", "modelopt-distill", "--bench", "kd_step", "--",
           "--warm-up-time", "1", "--measurement-time", "3"]
    env = dict(os.environ, KD_CLOCK="cpu" if CLOCK is time.thread_time else "wall")
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    out, current = {}, None
    units = {"elem/s": 1.0, "Kelem/s": 1e3, "Melem/s": 1e6}
    for line in text.splitlines():
        if line.startswith("kd_step/"):
            current = line.strip()
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) ", line)
        if m and current:
            value = float(m.group(1)) * units[m.group(2)]
            key = 800 if current.endswith("/800") else 64 if current.endswith("/64") else "teacher"
            out[key] = value
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--skip-rust", action="store_true")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if a.clock == "cpu" else time.perf_counter
    torch_runs = [torch_cases(a.reps)]
    rust_runs = []
    for _ in range(0 if a.skip_rust else a.rounds):
        rust_runs.append(rust_cases())
        torch_runs.append(torch_cases(a.reps))
    keys = list(torch_runs[0])
    torch_med = {k: statistics.median(r[k] for r in torch_runs) for k in keys}
    rust_med = {k: statistics.median(r[k] for r in rust_runs) for k in keys if all(k in r for r in rust_runs) and rust_runs}
    ratios = {k: sorted(r[k] / max(torch_runs[i][k], torch_runs[i + 1][k]) for i, r in enumerate(rust_runs))
              for k in rust_med}
    print(f"torch {torch.__version__}, 1 thread; modelopt criterion kd_step, 1 thread; samples per {a.clock} "
          f"second (higher is better); medians of {len(torch_runs)} torch and {len(rust_runs)} modelopt runs, interleaved")
    print("| case | torch | modelopt | modelopt / torch (median, min-max over rounds) |")
    print("|---|---|---|---|")
    names = {800: "KD step, teacher 784-1200-1200-10 -> student 784-800-10, B=128",
             64: "KD step, teacher 784-1200-1200-10 -> student 784-64-10, B=128",
             "teacher": "teacher forward only 784-1200-1200-10, B=128"}
    for k, name in names.items():
        r = rust_med.get(k)
        if r:
            rs = f"{r:,.0f}"
            ratio = f"{statistics.median(ratios[k]):.2f} ({ratios[k][0]:.2f}-{ratios[k][-1]:.2f})"
        else:
            rs, ratio = "-", "-"
        print(f"| {name} | {torch_med[k]:,.0f} | {rs} | {ratio} |")


if __name__ == "__main__":
    main()
