"""`modelopt quantize MODEL.gguf --type PRESET` on a 612 MB F32 llama GGUF, as issue 13 measures
llama-quantize (c392e509, 2 threads): Q8_0 0.54 s, Q4_K_M 5.19 s, Q4_K_M with an imatrix 8.96 s.

The model is `crates/cli/tests/data/llama_quantize/make_llama_gguf.py --seed 1 --layers 4 --dim 2048`
(612,444,928 bytes) and its imatrix. llama-quantize runs side by side when it is on PATH (or given by
--peer); otherwise its figures are quoted from the issue. For each run: wall seconds from start to the
output renamed into place (modelopt fsyncs before the rename), CPU seconds (user + sys of the child) and
peak RSS (the child's ru_maxrss). Each run writes a new file after `sync`.

Usage: python3 benches/compare/llama_quantize.py [--bin target/release/modelopt] [--threads 2]
       [--repeat 3] [--dir /tmp/modelopt-llama-bench] [--peer llama-quantize]
"""
import argparse, os, shutil, statistics, subprocess, sys, time

QUOTED = {"Q8_0": 0.54, "Q4_K_M": 5.19, "Q4_K_M+imatrix": 8.96}
HERE = os.path.dirname(os.path.abspath(__file__))
MAKE = os.path.join(HERE, "../../crates/cli/tests/data/llama_quantize/make_llama_gguf.py")


def run(cmd):
    """(wall s, cpu s, peak RSS MiB) of this one child (wait4, so an earlier child such as the model
    generator does not leak into the peak, as RUSAGE_CHILDREN's maximum would); fails loudly."""
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{cmd} failed: {err.decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/modelopt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/modelopt-llama-bench")
    ap.add_argument("--peer", default=shutil.which("llama-quantize"))
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    model, imat = os.path.join(a.dir, "big.gguf"), os.path.join(a.dir, "big_imatrix.dat")
    if not os.path.exists(model):
        subprocess.run([sys.executable, MAKE, model, imat, "--seed", "1", "--layers", "4",
                        "--dim", "2048"], check=True)
    size = os.path.getsize(model)
    print(f"model {model}: {size} bytes; {a.threads} threads; median of {a.repeat}")
    print("| case | modelopt wall s | modelopt CPU s | peak RSS MiB | GB/s | llama-quantize s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for case in ["Q8_0", "Q4_K_M", "Q4_K_M+imatrix"]:
        preset = case.split("+")[0]
        extra = ["--imatrix", imat] if case.endswith("+imatrix") else []
        out = os.path.join(a.dir, f"out-{case}.gguf")
        runs = []
        for _ in range(a.repeat):
            if os.path.exists(out):
                os.remove(out)
            runs.append(run([a.bin, "quantize", model, "-o", out, "--type", preset,
                             "--threads", str(a.threads)] + extra))
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        if a.peer:
            pe = ["--imatrix", imat] if extra else []
            peer = statistics.median(
                run([a.peer] + pe + [model, out + ".peer", preset, str(a.threads)])[0]
                for _ in range(a.repeat))
            ptxt = f"{peer:.2f}"
        else:
            peer, ptxt = QUOTED[case], f"{QUOTED[case]:.2f} (quoted)"
        print(f"| {case} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {size / wall / 1e9:.2f} | {ptxt} "
              f"| {peer / wall:.1f}x |")


if __name__ == "__main__":
    main()
