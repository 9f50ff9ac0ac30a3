"""Whole-file quantization, end to end: `modelopt quantize` against gguf-py doing the same job.

Both read the same f32 safetensors file and write a GGUF with every 2-D tensor quantized.
gguf-py: safetensors.numpy.load_file + gguf.quants.quantize + GGUFWriter (numpy, one thread).
modelopt: the release binary, `--threads N`. GB/s = bytes of f32 input / wall seconds, from
start to the file renamed into place (modelopt fsyncs before the rename; gguf-py does not).
Each run writes a new file: the previous output is removed and `sync` run before the clock starts.

Usage: python3 benches/compare/quantize_file.py [--file F.safetensors] [--bin target/release/modelopt]
       [--threads 2] [--types q8_0 q4_0] [--repeat 3] [--out-dir D] [--no-peer]
Without --file, makes /tmp/modelopt-bench-8x4096.safetensors (8 x 4096x4096 f32, 537 MB).
Run on an idle machine; the figures are only meaningful as ratios measured in the same run.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import numpy as np


def make_file(path):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    save_file({f"layers.{i}.weight": rng.standard_normal((4096, 4096), dtype=np.float32) * 0.02
               for i in range(8)}, path)


def gguf_py(path, out, ty):
    import gguf
    from safetensors.numpy import load_file
    qt = gguf.GGMLQuantizationType[ty.upper()]
    w = gguf.GGUFWriter(out, arch="none")
    for name, x in load_file(path).items():
        if x.ndim >= 2 and x.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(x.astype(np.float32), qt)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
        else:
            w.add_tensor(name, x.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def best_of(repeat, fn, out):
    """Best wall time of `repeat` runs, each writing a new file (the previous output is removed
    and the page cache synced first, so no run pays for another's writeback or unlink)."""
    times = []
    for _ in range(repeat):
        if os.path.exists(out):
            os.remove(out)
        os.sync()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file")
    ap.add_argument("--bin", default="target/release/modelopt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", nargs="+", default=["q8_0", "q4_0"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out-dir", default=None, help="where the outputs go (default: the system temp dir)")
    ap.add_argument("--no-peer", action="store_true", help="time modelopt only")
    a = ap.parse_args()
    path = a.file or "/tmp/modelopt-bench-8x4096.safetensors"
    if not os.path.exists(path):
        make_file(path)
    size = os.path.getsize(path)
    print(f"input {path}: {size / 1e6:.0f} MB; modelopt --threads {a.threads}; best of {a.repeat}")
    print(f"| type | modelopt s (median) | modelopt GB/s (median) | gguf-py s | gguf-py GB/s | ratio |")
    print(f"|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=a.out_dir) as d:
        for ty in a.types:
            out = os.path.join(d, f"o-{ty}.gguf")
            cmd = [a.bin, "quantize", path, "-o", out, "--type", ty, "--threads", str(a.threads), "--json"]
            ours, med = best_of(a.repeat, lambda: subprocess.run(cmd, check=True, capture_output=True), out)
            mine = f"| {ty} | {ours:.3f} ({med:.3f}) | {size / ours / 1e9:.2f} ({size / med / 1e9:.2f})"
            if a.no_peer:
                print(f"{mine} | - | - | - |")
                continue
            p_out = os.path.join(d, f"p-{ty}.gguf")
            try:
                peer, _ = best_of(1, lambda: gguf_py(path, p_out, ty), p_out)
            except NotImplementedError:  # gguf-py has no quantizer for the K types
                print(f"{mine} | n/a | n/a | n/a |")
                continue
            print(f"{mine} | {peer:.2f} | {size / peer / 1e9:.2f} | {peer / ours:.1f}x |")


if __name__ == "__main__":
    sys.exit(main())
