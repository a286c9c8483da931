"""Seconds per Stable Diffusion 1.x U-Net step: diffusers (fp32; bf16 + channels_last) against
mmgen (fp32; the fast path, eager and compiled), on the same weights, in one process.

    python benchmarks/unet_step.py --markdown        # batch 2 (CFG), 64x64 latent, 77 tokens
    python benchmarks/unet_step.py --no-compile      # skip the compiled row (minutes)

One random-weight SD 1.x-size ``UNet2DConditionModel`` (859.5 M parameters) is built with
diffusers; mmgen's :class:`UNet` is made from the same tensors (``from_diffusers_state_dict``).
Rows:

* diffusers fp32; diffusers bf16 + channels_last (``unet.to(torch.bfloat16,
  memory_format=torch.channels_last)``, eager: the best plain diffusers does on this CPU);
* mmgen fp32 (channels_last, as its pipelines run; and with the batch-invariant native
  convolutions the exact pipelines use on the CPU); mmgen fast (:mod:`mmgen.fast`: bf16
  weights where native, fused q/k/v, tiled attention, channels_last), eager; and compiled
  (``torch.compile`` with frozen weights, warm), with the one-off compile time of the
  first call (into an empty cache, and again from the cache it wrote).

Every configuration warms up once, then the timed steps go round-robin (one step of each
configuration per round, ``--repeats`` rounds) so that a busy machine slows them alike; the
median is reported with its ratio to diffusers fp32 and to diffusers bf16 (above 1: mmgen is
faster), the largest output difference to diffusers fp32, and the achieved GFLOP/s (the
step's matmul and convolution FLOPs, counted by :func:`mmgen.metrics.count_flops`) against
the bf16 matmul peak measured here.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time


def matmul_peak(dtype, size: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` (size x size) @ (size x size) matmuls in ``dtype``."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compile_seconds(batch: int, latent: int) -> dict:
    """First-call seconds of the compiled fast U-Net in fresh processes: into an empty cache,
    then from the cache the first one wrote (what a user's second run pays)."""
    cache = tempfile.mkdtemp(prefix="mmgen-compile-cache-")
    code = (f"import sys; sys.argv = ['x', '--compile-probe', '--batch', '{batch}', "
            f"'--latent', '{latent}']; import runpy; runpy.run_path({__file__!r}, "
            "run_name='__main__')")
    out = {}
    for name in ("cold", "cached"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**__import__("os").environ, "MMGEN_COMPILE_CACHE": cache})
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])["first_call"]
    return out


def build(latent: int, batch: int):
    import torch
    from diffusers import UNet2DConditionModel

    from mmgen.interop.diffusers import from_diffusers_state_dict

    torch.manual_seed(0)
    ref = UNet2DConditionModel(cross_attention_dim=768).eval()  # SD 1.x (the defaults + 768)
    ours = from_diffusers_state_dict(ref.state_dict(), {**ref.config,
                                                        "_class_name": type(ref).__name__})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, latent, latent, generator=g)
    t = torch.tensor([500] * batch)
    context = torch.randn(batch, 77, 768, generator=g)
    return ref, ours.eval(), x, t, context


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled row")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--json", action="store_true", help="print JSON (the default)")
    parser.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    from mmgen import fast
    from mmgen.device import prefers_channels_last
    from mmgen.metrics import count_flops

    cpu = torch.device("cpu")
    ref, ours, x, t, context = build(args.latent, args.batch)
    dtype = fast.fast_dtype(cpu)

    def cast(v):
        return v.to(dtype) if v.is_floating_point() else v

    if args.compile_probe:  # a child of compile_seconds: the first compiled call, timed
        del ref
        net = fast.compiled(fast.prepare(ours, cpu, dtype))
        with torch.no_grad():
            seconds = _seconds(lambda: net(cast(x.to(memory_format=torch.channels_last)), t,
                                           cast(context)))
        print(json.dumps({"first_call": seconds}))
        return 0

    flops = count_flops(ours, x, t, context).flops  # fp32, sdpa: every matmul and conv
    channels_last = prefers_channels_last(cpu)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xl = x.to(memory_format=fmt)
    ref_bf16 = copy.deepcopy(ref).to(dtype, memory_format=fmt)
    fast_net = fast.prepare(copy.deepcopy(ours), cpu, dtype)
    ours.to(memory_format=fmt)
    configs = {
        "diffusers fp32": lambda: ref(x, t, context).sample,
        f"diffusers {dtype_name(dtype)} + channels_last":
            lambda: ref_bf16(cast(xl), t, cast(context)).sample.float(),
        "mmgen fp32": lambda: ours(xl, t, context),
        "mmgen fp32, batch-invariant convolutions": lambda: invariant(ours, xl, t, context),
        "mmgen fast": lambda: fast_net(cast(xl), t, cast(context)).float(),
    }
    if not args.no_compile:
        compiled = fast.compiled(fast_net)
        configs["mmgen fast, compiled (warm)"] = lambda: compiled(cast(xl), t,
                                                                 cast(context)).float()
    outputs, times = {}, {name: [] for name in configs}
    with torch.no_grad():
        for name, fn in configs.items():  # warm-up (kernel choice, lazy init, compiling)
            outputs[name] = fn()
        for _ in range(args.repeats):
            for name, fn in configs.items():
                times[name].append(_seconds(fn))
    reference = outputs["diffusers fp32"]
    base = statistics.median(times["diffusers fp32"])
    base_bf16 = statistics.median(times[f"diffusers {dtype_name(dtype)} + channels_last"])
    rows = [{"config": name, "seconds": statistics.median(times[name]),
             "speedup_vs_diffusers_fp32": base / statistics.median(times[name]),
             "speedup_vs_diffusers_bf16": base_bf16 / statistics.median(times[name]),
             "gflops_per_s": flops / statistics.median(times[name]) / 1e9,
             "max_abs_diff": (outputs[name] - reference).abs().max().item()}
            for name in configs]
    info = {"batch": args.batch, "latent": args.latent, "threads": torch.get_num_threads(),
            "channels_last": channels_last, "torch": torch.__version__,
            "step_gflop": flops / 1e9, "output_abs_max": reference.abs().max().item(),
            "matmul_peak_gflops": {"fp32": matmul_peak(torch.float32),
                                   dtype_name(dtype): matmul_peak(dtype)},
            "compile_seconds": None if args.no_compile else compile_seconds(args.batch,
                                                                            args.latent)}
    result = {**info, "repeats": args.repeats, "rows": rows}
    print(markdown(result) if args.markdown else json.dumps(result, indent=2))
    return 0


def invariant(net, *inputs):
    """``net(*inputs)`` with PyTorch's native convolutions, as the exact pipelines run on the
    CPU (``batch_invariant=True``: a seed's pixels do not depend on the batch size)."""
    from mmgen.device import native_cpu_convolutions

    with native_cpu_convolutions():
        return net(*inputs)


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace(
        "float32", "fp32")


def markdown(result: dict) -> str:
    """The markdown of a ``--json`` result (what ``--markdown`` prints)."""
    peak = result["matmul_peak_gflops"]
    lines = [
        f"Batch {result['batch']}, {result['latent']}x{result['latent']} latent, 77-token "
        f"context, {result['threads']} threads, torch {result['torch']}, median of "
        f"{result['repeats']} round-robin steps. One step: {result['step_gflop']:.0f} GFLOP "
        "(matmuls and convolutions); measured matmul peak: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
        + f". Output magnitude: max |out| {result['output_abs_max']:.2f}.", "",
        "| configuration | s / step | x diffusers fp32 | x diffusers bf16 + CL | GFLOP/s "
        "| max abs diff to diffusers fp32 |",
        "|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['seconds']:.2f} | {r['speedup_vs_diffusers_fp32']:.2f} | "
              f"{r['speedup_vs_diffusers_bf16']:.2f} | {r['gflops_per_s']:.0f} | "
              f"{r['max_abs_diff']:.1e} |" for r in result["rows"]]
    if result["compile_seconds"]:
        c = result["compile_seconds"]
        lines += ["", f"Compiled: first call {c['cold']:.0f} s into an empty cache, "
                  f"{c['cached']:.0f} s in a new process from that cache (one-off; later calls "
                  "are the warm row)."]
    return "\n".join(lines)

if __name__ == "__main__":
    sys.exit(main())
