"""Seconds to sample 64 images from each bundled one-step generator, next to the bundled
25-step diffusion model (``shapes-t2i``, DDIM 25 with guidance) as the reference.

    python benchmarks/onestep.py                    # 2 threads, median of 5 calls
    python benchmarks/onestep.py --threads 1 --repeats 9 --json

Each time is one ``pipe(conditions, seed=0)`` call for 64 images, as a user makes it (latents
from per-image seeds, the network, PNG-ready PIL images with their metadata), after one
warm-up call; the median over ``--repeats`` calls is printed. The target of issue #18 is
under 1 second for 64 images from each bundled GAN.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

MODELS = ("mnist-dcgan", "shapes-dcgan", "mnist-vae")
CAPTIONS = ("a large red circle in the center on a white background",
            "a small blue square in the top left on a black background")


def conditions(pipe, n: int) -> list | None:
    """n conditions of the pipeline's kind: digits 0-9 in turn, Shapes captions, or none."""
    kind = pipe.config.conditioning
    if kind == "class":
        return [i % 10 for i in range(n)]
    if kind == "shapes":
        return [CAPTIONS[i % 2] for i in range(n)]
    return None


def seconds(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=64, help="images per call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    import mmgen

    torch.set_num_threads(args.threads)
    rows = []
    for name in MODELS:
        pipe = mmgen.load(name)
        cond = conditions(pipe, args.n)
        t = seconds(lambda pipe=pipe, cond=cond: pipe(cond, seed=0) if cond else
                    pipe(None, num_images=args.n, seed=0), args.repeats)
        rows.append({"model": name, "images": args.n, "seconds": round(t, 4)})
    reference = mmgen.load("shapes-t2i")
    prompts = [CAPTIONS[i % 2] for i in range(args.n)]
    t_ref = seconds(lambda: reference(prompts, seed=0, progress=False), max(1, args.repeats // 3))
    for row in rows:
        row["speedup_vs_shapes_t2i"] = round(t_ref / row["seconds"], 1)
    rows.append({"model": "shapes-t2i (DDIM 25, reference)", "images": args.n,
                 "seconds": round(t_ref, 4)})
    if args.json:
        print(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
        return
    print(f"{args.n} images per call, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':34s} {'seconds':>8s} {'under 1 s':>10s} {'x faster than shapes-t2i':>25s}")
    for row in rows:
        fast = "" if "reference" in row["model"] else ("yes" if row["seconds"] < 1 else "NO")
        ratio = row.get("speedup_vs_shapes_t2i", "")
        print(f"{row['model']:34s} {row['seconds']:8.3f} {fast:>10s} {ratio!s:>25s}")


if __name__ == "__main__":
    main()
