"""The DiT paper's central result on Shapes: sample quality follows the denoiser's compute
(GMACs per call), not its parameter count alone (Peebles & Xie 2023, Sec. 5 and Fig. 6).

Every configuration below, model size x patch size, is trained with the same recipe as the
bundled ``shapes-dit`` (same data, objective, optimizer, steps, seed: ``--steps`` of them),
then measured with the same evaluation: Shapes adherence (all five attributes right) and
Shapes FID on ``--n`` canonical prompts of ``test`` and ``test_compositional`` (DDIM 25, the
recipe's guidance), and GMACs per denoiser call counted by :func:`mmgen.metrics.count_flops`
(attention included). Training compute is steps x batch x 3 x the forward's MACs.

    python scripts/dit_scaling.py                     # train what is missing, measure, plot
    python scripts/dit_scaling.py --only dit-b-2      # one configuration
    python scripts/dit_scaling.py --steps 200 --n 50 --out /tmp/scaling   # a quick look

Runs are resumable (``runs/dit-scaling/NAME``; an interrupted training continues from its
newest checkpoint), and measured rows are kept in ``docs/dit_scaling.json``, so the study can
be spread over several sessions. The plot is ``docs/images/dit_scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# name -> (hidden size, depth, heads, patch size): two widths x two patch sizes, the paper's
# grid at Shapes scale (16x16x4 latents: patch 2 -> 64 tokens, patch 4 -> 16 tokens).
CONFIGS = {
    "dit-s-4": (128, 4, 2, 4),
    "dit-s-2": (128, 4, 2, 2),
    "dit-b-4": (192, 6, 3, 4),
    "dit-b-2": (192, 6, 3, 2),
}
SPLITS = ("test", "test_compositional")


def recipe_for(name: str, steps: int):
    """The shapes-dit recipe with this configuration's size (guidance fixed at the recipe's
    default, so every row is sampled alike)."""
    from mmgen.recipes import get_recipe

    base = get_recipe("shapes-dit")
    width, depth, heads, patch = CONFIGS[name]
    network = {**base.network, "hidden_size": width, "depth": depth, "num_heads": heads,
               "patch_size": patch}
    return replace(base, network=network, train=base.train.with_steps(steps),
                   guidance_candidates=(), eval_prompts=50,
                   description=f"{name}: shapes-dit's recipe at width {width}, depth {depth}, "
                               f"patch {patch}")


def gmacs_per_call(pipe) -> float:
    """Multiply-adds (G) of one denoiser call at the pipeline's image size, batch 1."""
    from mmgen.metrics import count_flops

    f = pipe.latent_factor
    x = torch.zeros(1, pipe.unet.config.in_channels, pipe.config.height // f,
                    pipe.config.width // f)
    context = pipe.encode_prompt(["a red circle"])  # (1, L, E)
    return count_flops(pipe.unet, x, torch.tensor([500]), context).macs / 1e9


def measure(name: str, folder: Path, n: int, steps: int, batch: int) -> dict:
    import mmgen
    from mmgen.data import shapes
    from mmgen.metrics.shapes import shapes_adherence, shapes_fid

    pipe = mmgen.load(folder)
    gmacs = gmacs_per_call(pipe)
    row = {"name": name, "parameters": sum(p.numel() for p in pipe.unet.parameters()),
           "gmacs_per_call": round(gmacs, 4), "steps": steps, "batch_size": batch,
           "train_tmacs": round(3 * gmacs * steps * batch / 1e3, 2), "n": n}
    for split in SPLITS:
        data = shapes.ShapesDataset(split, length=n, seed=1).as_tensors()
        prompts = list(data["caption"])
        images = pipe(prompts, seed=0, progress=False)
        adherence = shapes_adherence(images, prompts, progress=False)
        row[f"{split}/adherence_all5"] = round(adherence.all.value, 4)
        row[f"{split}/shapes_fid"] = round(
            shapes_fid((data["image"] + 1) / 2, images, progress=False).value, 3)
    return row


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="tight")
    FigureCanvasAgg(fig)
    for i, (key, label) in enumerate([("shapes_fid", "Shapes FID (lower is better)"),
                                      ("adherence_all5", "all 5 attributes right")]):
        ax = fig.add_subplot(1, 2, i + 1)
        for split, marker in zip(SPLITS, "os", strict=True):
            pts = sorted((r["gmacs_per_call"], r[f"{split}/{key}"], r["name"]) for r in rows)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=split)
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("GMACs per denoiser call")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every run")
    parser.add_argument("--n", type=int, default=500, help="prompts per split")
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "dit-scaling")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "dit_scaling.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "images" / "dit_scaling.png")
    args = parser.parse_args(argv)

    from mmgen.train.state import list_checkpoints

    rows = {r["name"]: r for r in json.loads(args.results.read_text())} \
        if args.results.is_file() else {}
    for name in args.only:
        if name in rows and (rows[name]["steps"], rows[name]["n"]) == (args.steps, args.n):
            continue  # measured already
        recipe = recipe_for(name, args.steps)
        out = args.out / name
        if not (out / "model" / "pipeline.json").is_file():
            recipe.run(out, name=name, resume=bool(list_checkpoints(out / "run")))
        rows[name] = measure(name, out / "model", args.n, args.steps, recipe.train.batch_size)
        print(json.dumps(rows[name]), flush=True)
        args.results.write_text(json.dumps(list(rows.values()), indent=1) + "\n")
    plot(list(rows.values()), args.plot)
    print(f"wrote {args.results} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
