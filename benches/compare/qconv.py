#!/usr/bin/env python3
"""The teacher CNN's two convolutions, torch vs modelopt's QuantizedConv2d, one thread each, side
by side.

Layers: Conv 1->64 3x3 on 28x28 and Conv 64->128 3x3 on 13x13 images, batch 64 (the distillation
example's teacher). torch: nn.Conv2d f32, and the static int8 convolution of eager-mode post-training
quantization (`torch.ao.nn.quantized.Conv2d` from `torch.ao.quantization.convert`, x86 engine, per-
channel int8 weights, quint8 activations; the input is quantized once outside the timed call, as in
a quantized network where the previous layer outputs quint8). modelopt: `cargo run --release
--example qconv` (f32 `Conv2d::forward`, and `QuantizedConv2d` W8A8 static and dynamic; these
quantize their f32 input inside the call and return f32).

Both sides measure the CPU time of their thread; rounds alternate torch / modelopt / torch; each
figure is the median over rounds of each round's median per-call time.

Run from the repository root: python3 benches/compare/qconv.py [--rounds 3] [--batch 64] [--seconds 0.5]
"""
import argparse
import json
import statistics
import subprocess
import time

import torch
import torch.nn as nn


def measure(seconds, f):
    f()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.thread_time()
        f()
        times.append(time.thread_time() - t)
    return statistics.median(times)


def torch_round(batch, seconds):
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "x86"
    torch.manual_seed(0)
    out = {}
    for name, cin, cout, size in (("conv1 1->64 28x28", 1, 64, 28), ("conv2 64->128 13x13", 64, 128, 13)):
        conv = nn.Conv2d(cin, cout, 3).eval()
        x = torch.rand(batch, cin, size, size)
        with torch.no_grad():
            out[(name, "torch f32")] = measure(seconds, lambda: conv(x))
            m = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(cin, cout, 3),
                              torch.ao.quantization.DeQuantStub()).eval()
            m[1].load_state_dict(conv.state_dict())
            m.qconfig = torch.ao.quantization.get_default_qconfig("x86")
            torch.ao.quantization.prepare(m, inplace=True)
            m(x)
            torch.ao.quantization.convert(m, inplace=True)
            qx = m[0](x)
            qconv = m[1]
            out[(name, "torch int8 static")] = measure(seconds, lambda: qconv(qx))
    return out


def rust_round(batch, seconds):
    r = subprocess.run(["target/release/examples/qconv", "--batch", str(batch), "--seconds", str(seconds)],
                       check=True, capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        d = json.loads(line)
        out[(d["layer"], "modelopt " + d["kernel"])] = d["cpu_ms"] / 1e3
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=0.5)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "qconv"], check=True)
    runs = {}
    for r in range(a.rounds):
        for fn in (torch_round, rust_round):
            for key, v in fn(a.batch, a.seconds).items():
                runs.setdefault(key, []).append(v)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"batch {a.batch}, one thread, thread CPU time, median of {a.rounds} rounds (ms per call)")
    print("| layer | torch f32 | torch int8 static | modelopt f32 | modelopt W8A8 static | modelopt W8A8 dynamic | static: modelopt / torch speed |")
    print("|---|---|---|---|---|---|---|")
    for layer in sorted({k[0] for k in med}):
        g = lambda kind: med[(layer, kind)] * 1e3
        print(f"| {layer} | {g('torch f32'):.2f} | {g('torch int8 static'):.2f} | {g('modelopt f32'):.2f} | "
              f"{g('modelopt w8a8-static'):.2f} | {g('modelopt w8a8-dynamic'):.2f} | "
              f"{g('torch int8 static') / g('modelopt w8a8-static'):.2f}x |")


if __name__ == "__main__":
    main()
