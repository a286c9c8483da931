"""Seconds per Stable Diffusion 1.x U-Net step: diffusers fp32 vs mmgen fp32 / mmgen auto.

    python benchmarks/unet_step.py                  # batch 2 (CFG), 64x64 latent, 77 tokens
    python benchmarks/unet_step.py --repeats 5 --markdown

One random-weight SD 1.x-size ``UNet2DConditionModel`` (859.5 M parameters) is built with
diffusers; mmgen's :class:`UNet` is made from the same tensors (``from_diffusers_state_dict``,
no copy), so both compute with identical weights. Each configuration runs once to warm up,
then ``--repeats`` timed steps under ``torch.no_grad``; the median is reported, with the
ratio to diffusers fp32 (< 1 means mmgen is faster) and the largest output difference to
diffusers. mmgen runs channels_last where the CPU prefers it (AVX-512), as its pipelines do;
"auto" is bf16 autocast where the CPU computes bf16 natively (else fp32). The last row uses
PyTorch's native convolutions, as pipelines do by default on the CPU (batch_invariant=True).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (kernel selection, lazy init)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)

    import torch
    from diffusers import UNet2DConditionModel

    from mmgen.device import (
        autocast,
        native_cpu_convolutions,
        prefers_channels_last,
        resolve_dtype,
    )
    from mmgen.interop.diffusers import from_diffusers_state_dict

    torch.manual_seed(0)
    ref = UNet2DConditionModel(cross_attention_dim=768).eval()  # SD 1.x (the defaults + 768)
    config = {**ref.config, "_class_name": type(ref).__name__}
    ours = from_diffusers_state_dict(ref.state_dict(), config).eval()
    x = torch.randn(args.batch, 4, args.latent, args.latent)
    t = torch.tensor([500] * args.batch)
    context = torch.randn(args.batch, 77, 768)
    channels_last = prefers_channels_last("cpu")
    auto = resolve_dtype("auto", "cpu")

    with torch.no_grad():
        ref_time, ref_out = timed(lambda: ref(x, t, context).sample, args.repeats)
        rows = [{"config": "diffusers fp32", "seconds": ref_time, "ratio": 1.0, "max_diff": 0.0}]
        if channels_last:
            ours.to(memory_format=torch.channels_last)
        xin = x.to(memory_format=torch.channels_last) if channels_last else x
        configs = (("mmgen fp32", torch.float32, False), (f"mmgen auto ({auto})", auto, False),
                   ("mmgen fp32, batch-invariant convolutions", torch.float32, True))
        for name, dtype, invariant in configs:
            def step(dtype=dtype, invariant=invariant):
                kernels = native_cpu_convolutions() if invariant else contextlib.nullcontext()
                with kernels, autocast(torch.device("cpu"), dtype):
                    return ours(xin, t, context).float()
            seconds, out = timed(step, args.repeats)
            rows.append({"config": name, "seconds": seconds, "ratio": seconds / ref_time,
                         "max_diff": (out - ref_out).abs().max().item()})

    info = {"batch": args.batch, "latent": args.latent, "threads": torch.get_num_threads(),
            "channels_last": channels_last, "torch": torch.__version__}
    if args.markdown:
        print(f"Batch {args.batch}, {args.latent}x{args.latent} latent, 77-token context, "
              f"{info['threads']} threads, torch {info['torch']}, median of {args.repeats}.\n")
        print("| configuration | s / step | ratio to diffusers fp32 | max abs diff |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['config']} | {r['seconds']:.2f} | {r['ratio']:.2f} | "
                  f"{r['max_diff']:.1e} |")
    else:
        print(json.dumps({**info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
