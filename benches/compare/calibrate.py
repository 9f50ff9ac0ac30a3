#!/usr/bin/env python3
"""Calibration on MiniLM: method x format -> bits/weight, mean/min cosine, neighbour agreement, time.

Calibrates on the first 500 lines of the sentences file and evaluates (`modelopt eval`) on the
other 280. Time is the quantize command's wall time and its CPU time (user + sys of the child,
which a loaded shared machine disturbs less than wall time).

    python3 benches/compare/calibrate.py [--model /work/models/minilm] [--sentences FILE] [--out DIR]
"""
import argparse, json, os, resource, subprocess, sys, time

EMB3 = ["--token-embedding-type", "kmeans3", "--block-size", "128"]
RUNS = [  # (label, --type, extra args)
    ("RTN", "q4_0", []),
    ("imatrix", "q4_0", ["--method", "imatrix"]),
    ("GPTQ", "q4_0", ["--method", "gptq"]),
    ("GPTQ act-order", "q4_0", ["--method", "gptq", "--act-order"]),
    ("RTN", "int4", ["--group-size", "128"]),
    ("GPTQ act-order", "int4", ["--group-size", "128", "--method", "gptq", "--act-order"]),
    ("RTN", "q3_k", []),
    ("imatrix", "q3_k", ["--method", "imatrix"]),
    ("RTN", "q2_k", []),
    ("imatrix", "q2_k", ["--method", "imatrix"]),
    ("RTN", "q8_0", []),
    ("GPTQ", "q8_0", ["--method", "gptq"]),
    ("AWQ", "q4_0", ["--method", "awq"]),
    ("AWQ", "int4", ["--group-size", "128", "--method", "awq"]),
    # At most 4 bits/weight: the word embeddings (half of MiniLM's weights) as a 3-bit codebook.
    ("RTN", "q4_0", EMB3),
    ("AWQ", "q4_0", ["--method", "awq"] + EMB3),
    ("GPTQ act-order", "q4_0", ["--method", "gptq", "--act-order"] + EMB3),
    ("GPTQ act-order", "int4", ["--group-size", "128", "--method", "gptq", "--act-order"] + EMB3),
]


def cpu_run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.time() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/models/minilm")
    ap.add_argument("--sentences", default="/work/shared/data/sentences.txt")
    ap.add_argument("--out", default="/tmp/modelopt-calibrate")
    ap.add_argument("--bin", default="target/release/modelopt")
    ap.add_argument("--only", default=None, help="run only the rows whose label/type/options contain this")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    lines = open(a.sentences).read().splitlines()
    calib, evalf = os.path.join(a.out, "calib.txt"), os.path.join(a.out, "eval.txt")
    open(calib, "w").write("\n".join(lines[:500]) + "\n")
    open(evalf, "w").write("\n".join(lines[500:]) + "\n")
    src = os.path.join(a.model, "model.safetensors")
    print("| method | format | bits/weight (file) | mean cosine | min cosine | nearest neighbour unchanged | quantize wall s | quantize CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, ty, extra in RUNS:
        if a.only and a.only not in " ".join([label, ty] + extra):
            continue
        emb = "_emb3" if "--token-embedding-type" in extra else ""
        out = os.path.join(a.out, f"{label.replace(' ', '_')}_{ty}{emb}.safetensors")
        cmd = [a.bin, "quantize", src, "-o", out, "--type", ty, "--json"]
        if label != "RTN":
            cmd += ["--calibrate", a.model, "--text", calib]
        cmd += extra
        _, wall, cpu = cpu_run(cmd)
        ev = json.loads(subprocess.run([a.bin, "eval", a.model, "--weights", out, "--text", evalf, "--json"],
                                       check=True, capture_output=True, text=True).stdout)
        fmt = ty + (" g128" if ty == "int4" else "") + (", word embeddings kmeans3 b128" if emb else "")
        print(f"| {label} | {fmt} | {ev['bits_per_weight']:.2f} | {ev['mean_cosine']:.4f} | "
              f"{ev['min_cosine']:.4f} | {100 * ev['nearest_neighbour_unchanged']:.1f}% | {wall:.1f} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
