"""Time to a Shapes image at equal adherence: mmgen's fast path with the sampler and steps
chosen from the sampler curves, against diffusers' ``StableDiffusionPipeline`` with DDIM 50
in fp32 on the same weights (the bundled pipeline exported by
:func:`mmgen.interop.to_diffusers`).

    python benchmarks/shapes_image.py               # 500 test prompts each
    python benchmarks/shapes_image.py --n 100

Both generate the canonical captions of the first ``--n`` items of ``test`` (image i: seed
i) in batches of 50 at the model's guidance, and both are judged by the bundled Shapes
classifier (all five attributes right). Timed: sampling through decoding to images, per
image (the batches' total / n), and one image alone (batch 1, warm, the median of 5), in
this process with its threads. The chosen setting is read from ``docs/sampler_curves.jsonl``
(``scripts/sampler_curves.py``). ``--compile`` adds mmgen's compiled fast path, timed warm
(each batch size is compiled during the warm-up, which is not timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 50


def chosen_setting(model_hash: str, path: Path) -> tuple[str, int]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from sampler_curves import choose

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if r["model_hash"] == model_hash]
    if not rows:
        raise SystemExit(f"{path} has no rows for model {model_hash}: run "
                         "scripts/sampler_curves.py first")
    n = max(r["n"] for r in rows)
    best = choose([r for r in rows if r["n"] == n])
    return best["sampler"], best["steps"]


def run(generate, prompts: list[str]) -> tuple[list, float, float]:
    """(images, seconds per image in batches of 50, median seconds of one image alone)."""
    generate(prompts[:BATCH], 0)  # warm-up at both batch sizes (a compiled pipeline
    generate(prompts[:1], 0)  # compiles each new shape once)
    images, start = [], time.perf_counter()
    for lo in range(0, len(prompts), BATCH):
        images += generate(prompts[lo:lo + BATCH], lo)
    per_image = (time.perf_counter() - start) / len(prompts)
    single = []
    for i in range(5):
        start = time.perf_counter()
        generate(prompts[i:i + 1], i)
        single.append(time.perf_counter() - start)
    return images, per_image, statistics.median(single)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-t2i")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--curves", default=str(ROOT / "docs" / "sampler_curves.jsonl"))
    parser.add_argument("--compile", action="store_true",
                        help="also mmgen fast + torch.compile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    import mmgen
    from mmgen.data import shapes
    from mmgen.diffusion.denoise import initial_noise
    from mmgen.interop import to_diffusers
    from mmgen.metrics.shapes import shapes_adherence

    exact = mmgen.load(args.model)
    sampler, steps = chosen_setting(exact.model_hash, Path(args.curves))
    guidance = exact.config.guidance
    prompts = list(shapes.ShapesDataset("test", length=args.n, seed=1).as_tensors()["caption"])
    folder = to_diffusers(exact, Path(tempfile.mkdtemp(prefix="mmgen-export-")) / "pipe")
    ref = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    ref.set_progress_bar_config(disable=True)
    shape = (exact.unet.config.in_channels, exact.unet.config.sample_size,
             exact.unet.config.sample_size)

    def diffusers_generate(batch: list[str], seed: int) -> list:
        latents, _ = initial_noise(range(seed, seed + len(batch)), shape, torch.device("cpu"))
        out = ref(batch, latents=latents, num_inference_steps=50, guidance_scale=guidance,
                  output_type="np").images
        return [Image.fromarray(a) for a in (out * 255).round().astype(np.uint8)]

    def mmgen_generate(compile: bool):
        pipe = mmgen.load(args.model, fast=True, compile=compile)
        return lambda batch, seed: pipe(batch, sampler=sampler, steps=steps, seed=seed,
                                        progress=False)

    configs = [(f"diffusers DDIM 50 fp32 (exported {args.model})", diffusers_generate),
               (f"mmgen fast, {sampler} {steps}", mmgen_generate(False))]
    if args.compile:
        configs.append((f"mmgen fast, compiled, {sampler} {steps}", mmgen_generate(True)))
    rows = []
    for name, generate in configs:
        images, per_image, single = run(generate, prompts)
        adherence = shapes_adherence(images, prompts, progress=False).all.value
        rows.append({"config": name, "adherence": adherence, "seconds_per_image": per_image,
                     "seconds_one_image": single})
    base = rows[0]
    for r in rows:
        r["speedup_per_image"] = base["seconds_per_image"] / r["seconds_per_image"]
        r["speedup_one_image"] = base["seconds_one_image"] / r["seconds_one_image"]
    result = {"n": args.n, "batch": BATCH, "guidance": guidance,
              "threads": torch.get_num_threads(), "rows": rows}
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


def markdown(result: dict) -> str:
    """The markdown of a ``--json`` result (what the script prints without it)."""
    lines = [f"{result['n']} test prompts, batches of {result['batch']}, guidance "
             f"{result['guidance']:g}, {result['threads']} threads.", "",
             "| configuration | all 5 right | s / image (batches of 50) | speed-up | s for one "
             "image alone | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {100 * r['adherence']:.1f}% | {r['seconds_per_image']:.4f} | "
              f"{r['speedup_per_image']:.1f}x | {r['seconds_one_image']:.3f} | "
              f"{r['speedup_one_image']:.1f}x |" for r in result["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
