"""Time and peak memory of each attention backend on long self-attention.

    python benchmarks/attention.py                       # lengths 1k, 4k, 16k; 2 heads
    python benchmarks/attention.py --lengths 2048 8192 --heads 4
    python benchmarks/attention.py --dtype bf16 --batch 2 --heads 8 --dim 40 \
        --lengths 1024 4096 --backends sdpa tiled     # the SD 1.x U-Net's self-attention

Setup: B=1, head dim 64, float32 (``--batch``, ``--dim``, ``--dtype`` change them),
inference (torch.no_grad), on CPU unless --device cuda.

How memory is measured. On CPU torch allocates with malloc, which tracemalloc does not see,
so each (backend, length) pair runs in a fresh subprocess:
    1. create q, k, v and run the backend once on a tiny input (loads lazy kernels),
    2. read the current resident set size (RSS, /proc/self/statm),
    3. run the attention call once,
    4. read the process's peak RSS (resource.getrusage ru_maxrss).
"peak MiB" is (4) - (2): the extra memory the call itself touched, including its output.
ru_maxrss is a high-water mark, so a call that needs less than the process had already
peaked at before step 2 (imports, a few MiB) cannot be resolved; such small numbers are upper
bounds. On CUDA, torch.cuda.max_memory_allocated is used instead.

Time is the median over --repeats calls after the measured one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def rss_mib() -> float:
    """Current resident set size in MiB (Linux); falls back to the peak elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, else KiB


def measure(backend: str, length: int, heads: int, dim: int, repeats: int, device: str,
            batch: int = 1, dtype: str = "fp32") -> dict:
    """Run one (backend, length) case in this process and return its measurements."""
    import torch

    from mmgen.device import DTYPES
    from mmgen.nn import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, dim, device=device, dtype=DTYPES[dtype])
               for _ in range(3))

    def run():
        out = attention(q, k, v, backend=backend)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    with torch.no_grad():
        attention(q[:, :, :64], k[:, :, :64], v[:, :, :64], backend=backend)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated() / 2**20
            run()
            peak = torch.cuda.max_memory_allocated() / 2**20 - before
        else:
            before = rss_mib()
            out = run()
            peak = peak_rss_mib() - before
            del out
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return {"backend": backend, "length": length, "seconds": statistics.median(times), "mib": peak}


def run_case(args, backend: str, length: int) -> dict:
    """Measure one case in a fresh Python process (see the module docstring for why)."""
    cmd = [sys.executable, __file__, "--child", backend, "--lengths", str(length)]
    cmd += ["--heads", str(args.heads), "--dim", str(args.dim), "--repeats", str(args.repeats)]
    cmd += ["--device", args.device, "--batch", str(args.batch), "--dtype", args.dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"backend": backend, "length": length, "error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(results: list[dict]) -> None:
    print(f"{'length':>7}  {'backend':<9}{'time (s)':>10}{'peak MiB':>11}")
    for r in results:
        if "error" in r:
            print(f"{r['length']:>7}  {r['backend']:<9}  failed: {r['error']}")
        else:
            print(f"{r['length']:>7}  {r['backend']:<9}{r['seconds']:>10.3f}{r['mib']:>11.1f}")
    by_case = {(r["backend"], r["length"]): r for r in results if "error" not in r}
    for length in sorted({r["length"] for r in results}):
        chunked, math = by_case.get(("chunked", length)), by_case.get(("math", length))
        if chunked and math and math["mib"] > 0:
            ratio = chunked["mib"] / math["mib"]
            print(f"chunked / math peak memory at {length}: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64, help="head dimension")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--backends", nargs="+", help="default: all available here")
    parser.add_argument("--child", metavar="BACKEND", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # inside the per-case subprocess
        result = measure(args.child, args.lengths[0], args.heads, args.dim, args.repeats,
                         args.device, args.batch, args.dtype)
        print(json.dumps(result))
        return

    import torch

    from mmgen.nn import available_attention_backends

    backends = args.backends or available_attention_backends()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"B={args.batch}, heads={args.heads}, head dim={args.dim}, {args.dtype}, no_grad"
    )
    results = []
    for length in args.lengths:
        for backend in backends:
            results.append(run_case(args, backend, length))
            print(f"  done: {backend} @ {length}", file=sys.stderr, flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
