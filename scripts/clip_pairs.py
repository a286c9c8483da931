"""How a Shapes CLIP reads the shape of each held-out colour-shape pair.

For every pair of ``test_compositional`` (and overall), three readings of the shape:

* ``ensemble``: the zero-shot protocol of the recipe (class embedding = mean over the prompts
  "a {colour} {shape}" of all colours; ``mmgen.metrics.shapes_benchmark.ATTRIBUTE_TEMPLATES``);
* ``joint``: the shape of the best of the 24 prompts "a {colour} {shape}";
* ``shape-only``: the best of the 4 prompts "a {shape}".

and, per pair, what the ensemble reads instead when it is wrong. On the text side: the
cosine of each "a {shape}" with its ensemble class embedding, and the ensemble's reading of
each held-out pair's prompt ("a purple circle", ...).

    python scripts/clip_pairs.py                                     # the bundled shapes-clip
    python scripts/clip_pairs.py runs/shapes-clip-zoom/model         # an exported model
    python scripts/clip_pairs.py runs/X/run/checkpoints/step_00000250/ema.safetensors \\
        --recipe shapes-clip-zoom                                    # a checkpoint of a recipe
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch


def load(weights: str, recipe: str | None):
    """A CLIP from a bundled name or model folder, or from a state-dict file of ``recipe``."""
    import mmgen

    if not weights.endswith(".safetensors"):
        return mmgen.load(weights)
    if recipe is None:
        raise SystemExit("error: a .safetensors file needs --recipe (its architecture)")
    from mmgen.checkpoint import load_state_dict
    from mmgen.recipes import get_recipe
    from mmgen.registry import create_model

    if recipe.startswith("shapes-clip-") and recipe != "shapes-clip-joint":
        import experiments.shapes_clip_stage2  # noqa: F401  (registers the experiments)

    spec = get_recipe(recipe)
    model = create_model(spec.model, **spec.model_args)
    model.load_state_dict(load_state_dict(weights))
    return model


@torch.no_grad()
def readings(model, n: int) -> dict:
    from mmgen.clip.zero_shot import class_embeddings, encode_images
    from mmgen.data import shapes
    from mmgen.metrics.shapes_benchmark import attribute_templates, clip_input

    model.float().eval()
    tok = model.tokenize
    batch = shapes.ShapesDataset("test_compositional", length=n, seed=1).as_tensors()
    image = encode_images(model, clip_input(model, batch["image"]))  # (n, D)
    ensemble = class_embeddings(model, tok, shapes.SHAPES, attribute_templates("shape"))
    pairs = [(c, s) for c in shapes.COLORS for s in shapes.SHAPES]
    joint = model.encode_text(tok([f"a {c} {s}" for c, s in pairs]), normalize=True)
    alone = model.encode_text(tok([f"a {s}" for s in shapes.SHAPES]), normalize=True)
    read = {"ensemble": (image @ ensemble.t()).argmax(1),
            "joint": torch.tensor([shapes.SHAPES.index(pairs[i][1])
                                   for i in (image @ joint.t()).argmax(1).tolist()]),
            "shape-only": (image @ alone.t()).argmax(1)}
    truth = batch["shape"]
    out = {"n": n, **{k: round((v == truth).float().mean().item(), 4) for k, v in read.items()}}
    out["text: cosine of 'a {shape}' with its class"] = {
        s: round(c, 3) for s, c in zip(shapes.SHAPES, (alone * ensemble).sum(1).tolist(),
                                       strict=True)}
    held = sorted(shapes.HELD_OUT)
    prompts = model.encode_text(tok([f"a {c} {s}" for c, s in held]), normalize=True)
    out["text: ensemble reading of the held-out prompts"] = {
        f"a {c} {s}": shapes.SHAPES[i] for (c, s), i in zip(
            held, (prompts @ ensemble.t()).argmax(1).tolist(), strict=True)}
    for color, shape in held:
        sel = (batch["color"] == shapes.COLORS.index(color)) & (
            batch["shape"] == shapes.SHAPES.index(shape))
        wrong = Counter(shapes.SHAPES[i] for i in read["ensemble"][sel & (
            read["ensemble"] != truth)].tolist())
        out[f"{color} {shape}"] = {
            "images": int(sel.sum()),
            **{k: round((v[sel] == truth[sel]).float().mean().item(), 4)
               for k, v in read.items()},
            "ensemble_reads_instead": dict(wrong.most_common())}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="?", default="shapes-clip",
                        help="bundled name, model folder, or a recipe's .safetensors state dict")
    parser.add_argument("--recipe", help="the recipe whose architecture a .safetensors file has")
    parser.add_argument("--n", type=int, default=1000, help="test_compositional images")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if not args.weights.endswith(".safetensors") and "/" in args.weights and not Path(
            args.weights).is_dir():
        parser.error(f"no model folder {args.weights}")
    print(json.dumps(readings(load(args.weights, args.recipe), args.n), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
