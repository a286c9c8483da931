"""The DiT study on Shapes (docs/dit.md, the tables at the end of docs/results.md): the U-Net
against a DiT at equal training compute, the DiT's two text conditionings, and the paper's
scaling experiment (Peebles & Xie 2023, Sec. 5 and Fig. 6: quality against the denoiser's
GMACs per call, model size x patch size).

Every configuration below is trained with the recipe of the bundled ``shapes-dit`` (same
data, objective, optimizer, seed) for ``--steps`` steps, the U-Net's training compute at
shapes-dit's size; the bundled ``shapes-t2i`` and ``shapes-dit`` are measured alongside.
Every row gets the same evaluation: Shapes adherence (all five attributes right) and Shapes
FID on ``--n`` canonical prompts of ``test`` and ``test_compositional`` (DDIM 25, the model's
guidance), GMACs per denoiser call counted by :func:`mmgen.metrics.count_flops` (attention
included), training compute = steps x batch x 3 x the forward's MACs; then the timings of all
rows in one process (a training step at batch 64, sampling seconds per image).

    python scripts/dit_study.py                       # train what is missing, measure, write
    python scripts/dit_study.py --only dit-b-2 --no-render   # one row (processes may share)
    python scripts/dit_study.py --steps 200 --n 50 --out /tmp/study --results /tmp/s.json \
        --plot /tmp/s.png --doc /tmp/s.md             # a quick look

Runs are resumable (``runs/dit-study/NAME``; an interrupted training continues from its
newest checkpoint) and each measured row is cached beside its run, so the study can be
spread over several processes and sessions. It writes ``docs/dit_study.json``,
``docs/images/dit_scaling.png`` and the DiT section of ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# The U-Net's training compute (shapes-t2i: 5500 steps x 64 images x 3 x 0.142 GMACs = 150 T
# multiply-adds) buys dit-b-2 (= shapes-dit's network, 0.233 GMACs) this many steps: every
# trained row uses it, so dit-b-2 is also the DiT of the matched-compute comparison.
MATCHED_STEPS = 3350
# name -> (hidden size, depth, heads, patch size, text conditioning). The first four are the
# paper's grid at Shapes scale, two widths x two patch sizes (16x16x4 latents: patch 2 -> 64
# tokens, patch 4 -> 16); all cross-attend to the text tokens like shapes-dit. The last is
# shapes-dit's other conditioning design: mean-pooled text added to the adaLN condition.
CONFIGS = {
    "dit-s-4": (128, 4, 2, 4, "cross-attention"),
    "dit-s-2": (128, 4, 2, 2, "cross-attention"),
    "dit-b-4": (192, 6, 3, 4, "cross-attention"),
    "dit-b-2": (192, 6, 3, 2, "cross-attention"),
    "dit-b-2-pooled": (192, 6, 3, 2, "pooled text"),
}
SCALING = ("dit-s-4", "dit-s-2", "dit-b-4", "dit-b-2")
# Bundled models measured alongside, each at its own recipe's length and guidance.
BUNDLED = ("shapes-t2i", "shapes-dit")
SPLITS = ("test", "test_compositional")


def recipe_for(name: str, steps: int):
    """The shapes-dit recipe with this configuration's network (guidance fixed at the recipe's
    default 3.0, so every row is sampled alike)."""
    from mmgen.recipes import get_recipe

    base = get_recipe("shapes-dit")
    width, depth, heads, patch, conditioning = CONFIGS[name]
    network = {**base.network, "hidden_size": width, "depth": depth, "num_heads": heads,
               "patch_size": patch, "cross_attention": conditioning == "cross-attention",
               "pooled_text": conditioning == "pooled text"}
    return replace(base, network=network, train=base.train.with_steps(steps),
                   guidance_candidates=(), eval_prompts=50,
                   description=f"{name}: shapes-dit's recipe at width {width}, depth {depth}, "
                               f"patch {patch}, {conditioning}")


def gmacs_per_call(pipe) -> float:
    """Multiply-adds (G) of one denoiser call at the pipeline's image size, batch 1."""
    from mmgen.metrics import count_flops

    f = pipe.latent_factor
    x = torch.zeros(1, pipe.unet.config.in_channels, pipe.config.height // f,
                    pipe.config.width // f)
    context = pipe.encode_prompt(["a red circle"])  # (1, L, E)
    return count_flops(pipe.unet, x, torch.tensor([500]), context).macs / 1e9


def measure(name: str, model: str | Path, n: int, steps: int, batch: int) -> dict:
    """Everything but the timings: size, compute, Shapes adherence and FID on ``n`` canonical
    prompts per split (image i seeded i, the pipeline's own guidance, DDIM 25)."""
    import mmgen
    from mmgen.data import shapes
    from mmgen.hub import model_dir
    from mmgen.metrics.shapes import shapes_adherence, shapes_fid

    pipe = mmgen.load(model)
    gmacs = gmacs_per_call(pipe)
    info = json.loads((model_dir(model) / "unet" / "config.json").read_text()).get("info", {})
    row = {"name": name, "denoiser": type(pipe.unet).__name__,
           "conditioning": "cross-attention" if getattr(pipe.unet.config, "cross_attention",
                                                        True) else "pooled text",
           "parameters": sum(p.numel() for p in pipe.unet.parameters()),
           "gmacs_per_call": round(gmacs, 4), "steps": steps, "batch_size": batch,
           "train_tmacs": round(3 * gmacs * steps * batch / 1e3, 1),
           "train_seconds_recorded": info.get("train_seconds"),
           "guidance": pipe.config.guidance, "n": n}
    for split in SPLITS:
        data = shapes.ShapesDataset(split, length=n, seed=1).as_tensors()
        prompts = list(data["caption"])
        images = pipe(prompts, seed=0, progress=False)
        adherence = shapes_adherence(images, prompts, progress=False)
        row[f"{split}/adherence_all5"] = round(adherence.all.value, 4)
        row[f"{split}/shapes_fid"] = round(
            shapes_fid((data["image"] + 1) / 2, images, progress=False).value, 3)
    return row


def timings(model: str | Path, batch: int, prompts: int = 50, repeats: int = 8) -> dict:
    """Seconds per training step of the denoiser (forward, backward and AdamW on ``batch``
    latents, as in training) and sampling seconds per image (DDIM 25 with guidance, the first
    ``prompts`` test prompts), measured in this process so that all rows compare."""
    import copy
    import time

    import mmgen
    from mmgen.data import shapes

    pipe = mmgen.load(model)
    net = copy.deepcopy(pipe.unet).float().train()  # trained below; sampling uses pipe.unet
    f = pipe.latent_factor
    x = torch.randn(batch, net.config.in_channels, pipe.config.height // f,
                    pipe.config.width // f)
    context = pipe.encode_prompt(["a red circle"] * batch)  # (B, L, E)
    t = torch.randint(0, 1000, (batch,))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    seconds = []
    for _ in range(repeats + 2):  # two warm-up steps
        start = time.perf_counter()
        loss = net(x, t, context).float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    text = list(shapes.ShapesDataset("test", length=prompts, seed=1).as_tensors()["caption"])
    start = time.perf_counter()
    pipe(text, seed=0, progress=False)
    return {"train_step_seconds": round(sorted(seconds[2:])[repeats // 2], 4),
            "seconds_per_image": round((time.perf_counter() - start) / prompts, 4),
            "threads": torch.get_num_threads()}


def plot(rows: list[dict], path: Path) -> None:
    """FID and adherence against GMACs per call: one line per model size across its patch
    sizes (as the paper's Figure 6 draws them), solid for test, dashed for
    test_compositional."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(9, 3.8), layout="tight")
    FigureCanvasAgg(fig)
    sizes = sorted({CONFIGS[r["name"]][:3] for r in rows})  # (width, depth, heads)
    for i, (key, label) in enumerate([("shapes_fid", "Shapes FID (lower is better)"),
                                      ("adherence_all5", "all 5 attributes right")]):
        ax = fig.add_subplot(1, 2, i + 1)
        for size, color in zip(sizes, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            group = sorted((r for r in rows if CONFIGS[r["name"]][:3] == size),
                           key=lambda r: r["gmacs_per_call"])
            for split, style in zip(SPLITS, ("-", "--"), strict=True):
                ax.plot([r["gmacs_per_call"] for r in group],
                        [r[f"{split}/{key}"] for r in group], style, marker="o", color=color,
                        label=f"width {size[0]}, depth {size[1]}: {split}")
            for r in group:
                ax.annotate(f"patch {CONFIGS[r['name']][3]}",
                            (r["gmacs_per_call"], r[f"test/{key}"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        if key == "shapes_fid":
            ax.set_yscale("log")
        ticks = (0.02, 0.05, 0.1, 0.2, 0.5)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("GMACs per denoiser call")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _cells(r: dict) -> str:
    return (f"{r['test/adherence_all5']:.1%} | {r['test_compositional/adherence_all5']:.1%} | "
            f"{r['test/shapes_fid']:.2f} | {r['test_compositional/shapes_fid']:.2f} |")


def render(rows: dict[str, dict], plot_link: str, n: int) -> str:
    """The docs/results.md section: the matched-compute table and the scaling study."""
    head = ("| all 5 right, test | all 5 right, test_compositional | Shapes FID, test | "
            "Shapes FID, test_compositional |")
    compare = [r for r in (rows.get(k) for k in ("shapes-t2i", "dit-b-2", "shapes-dit",
                                                  "dit-b-2-pooled")) if r]
    table_a = (
        "| model | denoiser, conditioning | parameters | GMACs / call | training steps x "
        "batch | training TMACs | training wall time | " + head[2:] + " s / image | "
        "guidance |\n" + "|---" * 13 + "|\n" + "".join(
            f"| `{r['name']}` | {r['denoiser']}, {r['conditioning']} | {r['parameters']:,} | "
            f"{r['gmacs_per_call']:.3f} | {r['steps']} x {r['batch_size']} | "
            f"{r['train_tmacs']:.0f} | {r['steps'] * r['train_step_seconds'] / 60:.0f} min "
            f"({r['train_step_seconds']:.2f} s / step) | {_cells(r)} "
            f"{r['seconds_per_image']:.3f} | {r['guidance']} |\n" for r in compare))
    scaling = sorted((rows[k] for k in SCALING if k in rows), key=lambda r: r["gmacs_per_call"])
    table_b = (
        "| configuration | width, depth, patch | tokens | parameters | GMACs / call | "
        + head[2:] + "\n" + "|---" * 9 + "|\n" + "".join(
            f"| `{r['name']}` | {CONFIGS[r['name']][0]}, {CONFIGS[r['name']][1]}, "
            f"{CONFIGS[r['name']][3]} | {(16 // CONFIGS[r['name']][3]) ** 2} | "
            f"{r['parameters']:,} | {r['gmacs_per_call']:.3f} | {_cells(r)}\n"
            for r in scaling))
    return (
        "## U-Net against DiT at matched training compute\n\n"
        f"Produced by `python scripts/dit_study.py` (rows cached in `docs/dit_study.json`). "
        f"Every row is measured alike: the canonical captions of the first {n} items of "
        "`test` and `test_compositional`, image i seeded i, DDIM 25 at the model's own "
        "guidance; *GMACs / call* is one denoiser call on one 16x16x4 latent counted by "
        "`mmgen.metrics.count_flops` (attention included); *training TMACs* = steps x batch x "
        "3 x GMACs / call (forward and backward); *training wall time* = steps x the seconds "
        "of one training step (batch 64, AdamW) timed for all rows in one process with "
        f"{compare[0]['threads'] if compare else '?'} threads, and *s / image* is sampling "
        "50 prompts in that process (guidance included). `dit-b-2` is `shapes-dit`'s network "
        f"trained by its recipe for {MATCHED_STEPS} steps, the U-Net's training compute; "
        "`dit-b-2-pooled` is the same with the text pooled into adaLN instead of "
        "cross-attention (the conditioning comparison of docs/dit.md).\n\n" + table_a
        + "\n## DiT scaling on Shapes\n\n"
        "The DiT paper's experiment (its Figure 6: quality against GMACs per call, model size "
        f"x patch size): four configurations trained by the same recipe for {MATCHED_STEPS} "
        "steps at batch 64, measured as above (all at guidance 3.0); docs/dit.md reads the "
        "result.\n\n" + table_b
        + f"\n![DiT scaling]({plot_link})\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=MATCHED_STEPS,
                        help="training steps of every trained row")
    parser.add_argument("--n", type=int, default=500, help="prompts per split")
    parser.add_argument("--only", nargs="*", default=[*CONFIGS, *BUNDLED],
                        choices=[*CONFIGS, *BUNDLED])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "dit-study")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "dit_study.json")
    parser.add_argument("--plot", type=Path,
                        default=ROOT / "docs" / "images" / "dit_scaling.png")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md",
                        help="the markdown file whose DiT section is rewritten")
    parser.add_argument("--no-render", action="store_true",
                        help="train and measure only (e.g. several processes at once)")
    args = parser.parse_args(argv)

    from mmgen.recipes import get_recipe
    from mmgen.train.state import list_checkpoints

    rows = {}
    for name in args.only:  # each row is cached beside its run: processes may share --out
        cache = args.out / name / "row.json"
        if cache.is_file() and json.loads(cache.read_text())["n"] == args.n:
            rows[name] = json.loads(cache.read_text())
            continue
        if name in BUNDLED:
            model, train = name, get_recipe(name).train
        else:
            recipe = recipe_for(name, args.steps)
            model, train = args.out / name / "model", recipe.train
            if not (model / "pipeline.json").is_file():
                recipe.run(args.out / name, name=name,
                           resume=bool(list_checkpoints(args.out / name / "run")))
        rows[name] = measure(name, model, args.n, train.steps, train.batch_size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(rows[name]) + "\n")
        print(json.dumps(rows[name]), flush=True)
    if args.no_render:
        return 0
    for name, row in rows.items():  # timings: all rows in this one process
        row.update(timings(name if name in BUNDLED else args.out / name / "model",
                           row["batch_size"]))
    args.results.write_text(json.dumps(list(rows.values()), indent=1) + "\n")
    plot([rows[k] for k in SCALING if k in rows], args.plot)
    from docs_sections import replace_section  # beside this script

    replace_section(args.doc, "dit-study", render(
        rows, Path(os.path.relpath(args.plot, args.doc.parent)).as_posix(), args.n))
    print(f"wrote {args.results}, {args.plot} and the DiT section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
