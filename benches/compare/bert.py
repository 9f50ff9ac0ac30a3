#!/usr/bin/env python3
"""all-MiniLM-L6-v2 sentence embeddings, transformers (torch) vs modelopt, one thread each, side by side.

Both sides embed the same sentences in batches of 32 (tokenise with truncation at 128, run the encoder,
mean-pool over the mask, L2-normalise) and report sentences per second. Text: the 780 sentences of
crates/cli/data/sentences.txt (the file the reference set ../shared/reference/minilm was drawn from;
its first 48 lines are the reference's), or --text FILE.

torch side: transformers BertModel (eager, torch.set_num_threads(1), inference_mode), Hugging Face's
fast tokenizer with padding to the longest of the batch, in f32 and (--int8) after
`torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, qint8)` (int8 weights, activations
quantized per batch at run time, fbgemm/x86 kernels). modelopt side: the example
`crates/bert/examples/embed_speed.rs` (SentenceEncoder::embed, Par::Seq) with the f32 weights and, for
--int8, (a) the same f32 weights quantized to int8 at load and run as W8A8 (`Execution::Int8Dynamic`,
per-token activations) and (b) the int8 safetensors that `modelopt quantize --type int8` writes, run
as stored (W8A8 on its codes).

Clock: thread CPU time on both sides (torch: time.thread_time; Rust: cpu_time::ThreadTime), best of
--reps runs each, rounds interleaved torch / modelopt / torch ..., so a loaded machine penalises both
alike; the ratio of each round is modelopt over the better of the two torch runs around it.

Run from the repository root:
  MODELOPT_MINILM=/path/to/minilm python3 benches/compare/bert.py [--rounds 3] [--reps 2] [--int8 FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch
from transformers import AutoTokenizer, BertModel


def torch_side(model_dir, texts, reps, int8=False):
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir).eval()
    if int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    best = float("inf")
    out = None
    for _ in range(reps):
        t = time.thread_time()
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                enc = tok(texts[i:i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt")
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(e, p=2, dim=1))
        best = min(best, time.thread_time() - t)
        out = torch.cat(chunks)
    return best, out


def rust_side(binary, model_dir, weights, text, reps, exec_mode="stored"):
    r = subprocess.run([binary, model_dir, weights, text, str(reps), exec_mode], check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])["cpu_seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.environ.get("MODELOPT_MINILM", "/work/models/minilm"))
    ap.add_argument("--text", default="crates/cli/data/sentences.txt")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--int8", help="int8 safetensors from `modelopt quantize --type int8`")
    a = ap.parse_args()
    model_dir = a.model if os.path.isdir(a.model) else os.path.dirname(a.model)
    texts = [l.strip() for l in open(a.text, encoding="utf-8") if l.strip()]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "modelopt-bert", "--example", "embed_speed"], check=True)
    binary = "target/release/examples/embed_speed"
    n = len(texts)
    torch_runs, ratios, rust_runs, int8_runs = [], [], [], []
    tq_runs, dyn_runs, q_ratios = [], [], []
    prev, _ = torch_side(model_dir, texts, a.reps)
    torch_runs.append(prev)
    prev_q = torch_side(model_dir, texts, a.reps, int8=True)[0] if a.int8 else None
    if a.int8:
        tq_runs.append(prev_q)
    for _ in range(a.rounds):
        r = rust_side(binary, model_dir, "", a.text, a.reps)
        rust_runs.append(r)
        if a.int8:
            d = rust_side(binary, model_dir, "", a.text, a.reps, "int8")
            dyn_runs.append(d)
            int8_runs.append(rust_side(binary, model_dir, a.int8, a.text, a.reps))
            nxt_q, _ = torch_side(model_dir, texts, a.reps, int8=True)
            tq_runs.append(nxt_q)
            q_ratios.append(min(prev_q, nxt_q) / d)
            prev_q = nxt_q
        nxt, _ = torch_side(model_dir, texts, a.reps)
        torch_runs.append(nxt)
        ratios.append(min(prev, nxt) / r)
        prev = nxt
    med = statistics.median
    print(f"{n} sentences, batches of 32, one thread, thread CPU time, best of {a.reps} per run, {a.rounds} rounds")
    print("| side | sentences/s (median) |")
    print("|---|---|")
    print(f"| transformers BertModel (torch {torch.__version__}) f32 | {n / med(torch_runs):.1f} |")
    print(f"| modelopt-bert f32 | {n / med(rust_runs):.1f} |")
    if int8_runs:
        print(f"| transformers BertModel + torch quantize_dynamic int8 | {n / med(tq_runs):.1f} |")
        print(f"| modelopt-bert W8A8 (f32 weights quantized at load, Execution::Int8Dynamic) | {n / med(dyn_runs):.1f} |")
        print(f"| modelopt-bert int8 safetensors as stored (W8A8) | {n / med(int8_runs):.1f} |")
    print(f"modelopt / torch speed, f32: median {med(ratios):.2f}x (rounds {min(ratios):.2f}x .. {max(ratios):.2f}x)")
    if q_ratios:
        print(f"modelopt W8A8 / torch quantize_dynamic: median {med(q_ratios):.2f}x (rounds {min(q_ratios):.2f}x .. {max(q_ratios):.2f}x)")

if __name__ == "__main__":
    main()
