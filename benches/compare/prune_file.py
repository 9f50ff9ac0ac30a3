#!/usr/bin/env python3
"""Whole-file pruning, end to end: `modelopt prune` against torch doing the same job.

Both read the same f32 safetensors file, prune every float tensor of 2+ dims by L1 magnitude
(50%, per tensor or global) and write a safetensors file with the pruned weights as zeros.
torch: safetensors.torch.load_file, torch.nn.utils.prune (custom_from_mask(t != 0), so that
exact zeros count as pruned as in modelopt, then l1_unstructured per tensor or
global_unstructured over all, composing in a PruningContainer), safetensors.torch.save_file, with
torch.set_num_threads(N). modelopt: the release binary, `--threads N`. Runs are interleaved
(torch, modelopt, torch, modelopt, ...), medians printed; the two outputs are compared (same
zeros?). GB/s = bytes of f32 input / wall seconds.

With --in-memory, torch's side is only its in-memory `prune.l1_unstructured` of the tensors
already loaded (one thread; the figure issue 13 compares the whole modelopt command with), and the
file defaults to one 4096x4096 f32 tensor (/tmp/modelopt-bench-4096.safetensors, 67 MB); peak RSS
of the modelopt command is printed too.

Usage: python3 benches/compare/prune_file.py [--file F.safetensors] [--bin target/release/modelopt]
       [--threads 2] [--repeat 3] [--scopes tensor global] [--in-memory]
Without --file, makes /tmp/modelopt-bench-8x4096.safetensors (8 x 4096x4096 f32, 537 MB; the
file of quantize_file.py).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))

TORCH_SCRIPT = r"""
import sys, time, torch
import torch.nn as nn
from torch.nn.utils import prune
from safetensors.torch import load_file, save_file
src, dst, scope, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
t0 = time.perf_counter()
sd = load_file(src)
names = [n for n, t in sd.items() if t.is_floating_point() and t.dim() >= 2]
mods = []
for n in names:
    m = nn.Module()
    m.weight = nn.Parameter(sd[n], requires_grad=False)
    # Exact zeros already in the file count as pruned (modelopt's rule): a prior mask, which
    # the next pruning composes with in a PruningContainer.
    prune.custom_from_mask(m, "weight", sd[n] != 0)
    mods.append(m)
if scope == "tensor":
    for m in mods:
        prune.l1_unstructured(m, "weight", amount=0.5)
else:
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                              amount=0.5)
for n, m in zip(names, mods):
    sd[n] = m.weight.detach()
save_file(sd, dst)
print(time.perf_counter() - t0)
"""


TORCH_IN_MEMORY = r"""
import sys, time, torch
import torch.nn as nn
from torch.nn.utils import prune
from safetensors.torch import load_file
torch.set_num_threads(1)
sd = load_file(sys.argv[1])
total = 0.0
for n, t in sd.items():
    if not (t.is_floating_point() and t.dim() >= 2):
        continue
    m = nn.Module()
    m.weight = nn.Parameter(t.clone(), requires_grad=False)
    t0 = time.perf_counter()
    prune.l1_unstructured(m, "weight", amount=0.5)
    total += time.perf_counter() - t0
print(total)
"""


def make_file(path, tensors=8):
    import numpy as np
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    save_file({f"layers.{i}.weight": rng.standard_normal((4096, 4096), dtype=np.float32) * 0.02
               for i in range(tensors)}, path)


def in_memory(a):
    """The whole modelopt command against torch's in-memory l1_unstructured (one thread)."""
    path = a.file or "/tmp/modelopt-bench-4096.safetensors"
    if not os.path.exists(path):
        # In a child: a forked child's peak RSS (wait4) starts from its parent's, so this
        # process must not hold the generated array.
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {HERE!r}); "
                        f"import prune_file; prune_file.make_file({path!r}, tensors=1)"], check=True)
    tmp = tempfile.mkdtemp(prefix="modelopt-prune-bench-")
    script = os.path.join(tmp, "torch_in_memory.py")
    with open(script, "w") as f:
        f.write(TORCH_IN_MEMORY)
    out = os.path.join(tmp, "mo.safetensors")
    tt, mt, rss = [], [], []
    for _ in range(a.repeat):
        tt.append(float(subprocess.run([sys.executable, script, path], check=True,
                                       capture_output=True, text=True).stdout.split()[-1]))
        subprocess.run(["sync"], check=True)
        t = time.perf_counter()
        p = subprocess.Popen([a.bin, "prune", path, "-o", out, "--amount", "0.5",
                              "--threads", str(a.threads), "--json"], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        mt.append(time.perf_counter() - t)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("modelopt prune failed")
        rss.append(usage.ru_maxrss / 1024)
        os.remove(out)
    shutil.rmtree(tmp)
    t, m = statistics.median(tt), statistics.median(mt)
    print(f"{path}: {os.path.getsize(path) / 1e6:.0f} MB, L1 50%, median of {a.repeat} interleaved runs")
    print("| torch in-memory l1_unstructured, 1 thread (s) | modelopt prune, whole command, "
          f"{a.threads} thread(s) (s) | speed-up | modelopt peak RSS (MiB) |")
    print("|---|---|---|---|")
    print(f"| {t:.3f} | {m:.3f} | {t / m:.1f}x | {statistics.median(rss):.0f} |")
    print(f"  runs: torch {', '.join(f'{x:.3f}' for x in tt)}; modelopt {', '.join(f'{x:.3f}' for x in mt)}")


def wall(cmd):
    """(wall seconds of the whole process, its stdout)."""
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def same_zeros(src, a, b, scope):
    """Positions where the two outputs' zeros differ, and whether all of them are ties: weights
    whose |w| equals the largest pruned |w| (per tensor, or over all for global scope), where
    torch's topk picks any of the equal ones and modelopt the lowest index."""
    import numpy as np
    from safetensors.numpy import load_file
    w, x, y = load_file(src), load_file(a), load_file(b)
    diff, total, at = 0, 0, []
    thr = {}
    for k in x:
        pruned = np.abs(w[k])[y[k] == 0]
        thr[k] = pruned.max() if pruned.size else -1.0
    top = max(thr.values())
    for k in x:
        d = (x[k] == 0) != (y[k] == 0)
        diff += int(np.count_nonzero(d))
        total += x[k].size
        t = top if scope == "global" else thr[k]
        at.append(bool(np.all(np.abs(w[k])[d] == t)))
    return diff, total, all(at)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file")
    ap.add_argument("--bin", default="target/release/modelopt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scopes", nargs="+", default=["tensor", "global"])
    ap.add_argument("--in-memory", action="store_true")
    a = ap.parse_args()
    if a.in_memory:
        return in_memory(a)
    path = a.file or "/tmp/modelopt-bench-8x4096.safetensors"
    if not os.path.exists(path):
        make_file(path)
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "-q", "--release", "-p", "modelopt-cli"], check=True)
    size = os.path.getsize(path)
    tmp = tempfile.mkdtemp(prefix="modelopt-prune-bench-")
    with open(os.path.join(tmp, "torch_prune.py"), "w") as f:
        f.write(TORCH_SCRIPT)
    print(f"{path}: {size / 1e6:.0f} MB, {a.threads} thread(s), L1 50%, median of {a.repeat} "
          f"interleaved runs (wall time incl. process start, read, prune, write)")
    print(f"{'scope':8s} {'torch s':>9s} {'modelopt s':>11s} {'torch GB/s':>11s} "
          f"{'modelopt GB/s':>14s} {'speed-up':>9s}  same zeros")
    for scope in a.scopes:
        to, mo = os.path.join(tmp, f"torch-{scope}.safetensors"), os.path.join(tmp, f"mo-{scope}.safetensors")
        tt, mt, ti, mi = [], [], [], []
        for _ in range(a.repeat):
            w, out = wall([sys.executable, os.path.join(tmp, "torch_prune.py"), path, to, scope,
                           str(a.threads)])
            tt.append(w)
            ti.append(float(out.split()[-1]))
            w, out = wall([a.bin, "prune", path, "-o", mo, "--amount", "0.5", "--scope", scope,
                           "--threads", str(a.threads), "--json"])
            mt.append(w)
            mi.append(json.loads(out)["totals"]["seconds"])
        t, m = statistics.median(tt), statistics.median(mt)
        diff, total, ties = same_zeros(path, to, mo, scope)
        print(f"{scope:8s} {t:9.2f} {m:11.2f} {size / t / 1e9:11.2f} {size / m / 1e9:14.2f} "
              f"{t / m:8.1f}x  {'yes' if diff == 0 else f'{diff} of {total} differ' + (', all ties' if ties else ', NOT ties')}")
        t, m = statistics.median(ti), statistics.median(mi)
        print(f"{'  in-process (after imports; open to written):':48s} torch {t:.2f} s, modelopt {m:.2f} s, "
              f"{t / m:.1f}x")
        print(f"  runs: torch {', '.join(f'{x:.2f}' for x in tt)}; modelopt {', '.join(f'{x:.2f}' for x in mt)}")
        for p in (to, mo):
            os.remove(p)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
