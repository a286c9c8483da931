"""Step-count x sampler curves of a Shapes text-to-image pipeline on the fast path: Shapes
adherence (all five attributes right) and Shapes FID against sampler steps, for DDIM,
DPM-Solver++ 2M and Euler, on the canonical prompts of ``test`` and ``test_compositional``
(image i of a split: prompt i, seed i; the model's guidance). Writes the rows to ``--cache``
(JSON lines, keyed by the model's hash) and a plot; ``benchmarks/shapes_image.py`` and the
pipeline's defaults read the chosen setting from them.

    python scripts/sampler_curves.py --workers 2        # n=500 per split, ~20 min on 2 cores
    python scripts/sampler_curves.py --n 100 --steps 5 10 --samplers ddim

The chosen setting (``choose``), "equal quality" to ``REFERENCE`` (DDIM 50, what diffusers'
pipelines default to) on both splits: adherence at least the reference's minus
``TOLERANCE`` (one standard error of a 500-prompt proportion near 98 %) and Shapes FID at
most ``FID_RATIO`` times the reference's (the DDIM paper's 10 %, as in docs/results.md);
of those, the fewest steps, then the first of ``SAMPLERS`` (DDIM and Euler are the same
deterministic method for an eps-predicting model, to float rounding).
Generated batches are kept under ``--work`` (so a stopped run resumes), as in
``scripts/t2i_results.py``, whose measuring code this reuses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from t2i_results import SPLITS, Batches, measure, shapes_features  # noqa: E402

SAMPLERS = ("ddim", "dpm++2m", "euler")
STEPS = (5, 8, 10, 15, 20, 25)
REFERENCE = ("ddim", 50)
TOLERANCE = 0.006  # sqrt(0.98 * 0.02 / 500)
FID_RATIO = 1.10


def choose(rows: list[dict]) -> dict:
    """The chosen row (see the module docstring) from rows of both splits."""
    by_setting: dict[tuple, dict] = {}
    for row in rows:
        by_setting.setdefault((row["sampler"], row["steps"]), {})[row["split"]] = row
    reference = by_setting[REFERENCE]
    ok = [(steps, SAMPLERS.index(sampler), sampler)
          for (sampler, steps), split in by_setting.items()
          if len(split) == len(SPLITS) and all(
              split[s]["adherence"] >= reference[s]["adherence"] - TOLERANCE
              and split[s]["shapes_fid"] <= FID_RATIO * reference[s]["shapes_fid"]
              for s in SPLITS)]
    steps, _, sampler = min(ok)
    return {"sampler": sampler, "steps": steps}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for col, split in enumerate(SPLITS):
        for sampler in SAMPLERS:
            pts = sorted((r["steps"], r) for r in rows
                         if r["split"] == split and r["sampler"] == sampler)
            if not pts:
                continue
            steps = [s for s, _ in pts]
            axes[0, col].plot(steps, [100 * r["adherence"] for _, r in pts], "o-", label=sampler)
            axes[1, col].plot(steps, [r["shapes_fid"] for _, r in pts], "o-", label=sampler)
        axes[0, col].set_title(split)
        axes[0, col].set_ylabel("all 5 attributes right (%)")
        axes[1, col].set_ylabel("Shapes FID")
        axes[1, col].set_yscale("log")
        axes[1, col].set_xlabel("sampler steps")
        axes[0, col].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-t2i")
    parser.add_argument("--n", type=int, default=500, help="prompts per split")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1,
                        help="generate in K processes of one thread each")
    parser.add_argument("--shard", default=None, help=argparse.SUPPRESS)  # I/K, a worker
    parser.add_argument("--cache", default=str(ROOT / "docs" / "sampler_curves.jsonl"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "images" / "sampler_curves.png"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "sampler_curves"))
    args = parser.parse_args(argv)

    import torch

    import mmgen
    from mmgen.data import shapes

    settings = [(s, k) for s in args.samplers for k in args.steps]
    if REFERENCE not in settings:
        settings.append(REFERENCE)
    pipe = mmgen.load(args.model, fast=True)
    guidance = pipe.config.guidance
    keys = [(s, k, guidance, split, args.n) for s, k in settings for split in SPLITS]
    work = Path(args.work) / pipe.model_hash
    batches = {key: Batches(work, key, args.batch_size) for key in keys}

    data = {}
    for split in SPLITS:
        batch = shapes.ShapesDataset(split, length=args.n, seed=1).as_tensors()
        data[split] = (list(batch["caption"]), (batch["image"] + 1) / 2)

    if args.shard is not None:  # a generating worker
        index, count = (int(x) for x in args.shard.split("/"))
        torch.set_num_threads(1)
        for key in keys:
            batches[key].generate(pipe, data[key[3]][0], (index, count))
        return 0
    if args.workers > 1 and any(b.missing() for b in batches.values()):
        base = [sys.executable, __file__, "--model", args.model, "--n", str(args.n),
                "--batch-size", str(args.batch_size), "--work", args.work,
                "--samplers", *args.samplers, "--steps", *map(str, args.steps)]
        procs = [subprocess.Popen([*base, "--shard", f"{i}/{args.workers}"])
                 for i in range(args.workers)]
        if any(p.wait() for p in procs):
            print("error: a generating worker failed", file=sys.stderr)
            return 1

    cache = Path(args.cache)
    rows = [json.loads(line) for line in cache.read_text().splitlines()] \
        if cache.is_file() else []
    rows = [r for r in rows if r["model_hash"] == pipe.model_hash and r["n"] == args.n]
    done = {(r["sampler"], r["steps"], r["split"]) for r in rows}
    real = {split: shapes_features(data[split][1]) for split in SPLITS}
    for key in keys:
        sampler, steps, _, split, _ = key
        if (sampler, steps, split) in done:
            continue
        batches[key].generate(pipe, data[split][0])
        images, seconds, threads = batches[key].load()
        row = {"model_hash": pipe.model_hash, "n": args.n, "sampler": sampler, "steps": steps,
               "guidance": guidance, "split": split, "fast": True,
               **measure(images, data[split][0], real[split], batches[key].features()),
               "seconds_per_image": round(seconds, 4), "threads": threads}
        rows.append(row)
        with open(cache, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{sampler:8s} {steps:3d} {split:18s} all-5 {100 * row['adherence']:5.1f}% "
              f"FID {row['shapes_fid']:7.2f}", flush=True)
    plot(rows, Path(args.plot))
    print(json.dumps({"chosen": choose(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
