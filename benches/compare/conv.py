#!/usr/bin/env python3
"""One training step of the distillation example's teacher CNN, torch vs modelopt, one thread each.

Network: Conv 1->64 3x3, ReLU, MaxPool 2, Conv 64->128 3x3, ReLU, MaxPool 2, Flatten, Dropout 0.3,
Linear 3200->10 (106k parameters); batch 64 of 1x28x28 random images; cross-entropy; SGD momentum 0.9.
One step = forward + backward + optimizer step.

Run from the repository root: python3 benches/compare/conv.py [--rounds 3] [--steps 5] [--reps 5]
Both sides measure their thread's CPU time (torch: time.thread_time with one intra-op thread; Rust:
the `conv_step` example of modelopt-nn, cpu-time's ThreadTime), so time spent descheduled on a shared
machine is not counted. Runs are interleaved torch / modelopt / torch / ...; each round's ratio is
modelopt over the better of the two torch runs around it (conservative); medians over rounds.
"""
import argparse
import json
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def torch_step_ms(steps, reps):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(3200, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xs = [torch.rand(64, 1, 28, 28) for _ in range(4)]
    y = torch.arange(64) % 10

    def step(i):
        loss = F.cross_entropy(net(xs[i % 4]), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        for i in range(steps):
            step(i)
        times.append((time.thread_time() - t0) / steps)
    return 1e3 * statistics.median(times)


def rust_step_ms(steps, reps):
    cmd = ["cargo", "run", "--release", "-q", "-p", "modelopt-nn", "--example", "conv_step", "--",
           str(steps), str(reps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ms_per_step"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "modelopt-nn", "--example", "conv_step"],
                   check=True)
    torch_runs = [torch_step_ms(a.steps, a.reps)]
    rust_runs, ratios = [], []
    for _ in range(a.rounds):
        rust_runs.append(rust_step_ms(a.steps, a.reps))
        torch_runs.append(torch_step_ms(a.steps, a.reps))
        ratios.append(min(torch_runs[-2:]) / rust_runs[-1])
    print(f"torch {torch.__version__}, 1 thread, CPU time per training step (batch 64)")
    print(f"| | torch ms/step | modelopt ms/step | speed-up (torch / modelopt) |")
    print(f"|---|---:|---:|---:|")
    print(f"| teacher CNN step | {statistics.median(torch_runs):.1f} | {statistics.median(rust_runs):.1f} | "
          f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
