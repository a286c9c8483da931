"""Issue #24: does a Shapes CLIP read renders whose objects have generated ones' flaws
(:func:`~mmgen.data.shapes_augment.irregular_object`: colour drift, bent outline, uneven
fill)? Retrieval among all 1,296 canonical captions on the first N test items of each group,
each render given the flaws once (torch seed 0).

    python scripts/experiments/irregular_probe.py                       # three settings
    python scripts/experiments/irregular_probe.py --model DIR --drift 0.45 --warp 0 --fill 0
"""

from __future__ import annotations

import argparse

import torch

SETTINGS = {  # name -> irregular_object's keyword arguments
    "warp 2 px, fill 15 %": {"max_drift": 0.0, "max_warp": 2.0, "max_shading": 0.15},
    "warp 4 px, fill 35 %": {"max_drift": 0.0, "max_warp": 4.0, "max_shading": 0.35},
    "drift 45 %, warp 3 px, fill 25 %": {"max_drift": 0.45, "max_warp": 3.0,
                                         "max_shading": 0.25},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-clip")
    parser.add_argument("--n", type=int, default=500, help="items per group")
    parser.add_argument("--drift", type=float, help="one setting: max_drift (with --warp, "
                        "--fill) instead of the three above")
    parser.add_argument("--warp", type=float, default=0.0)
    parser.add_argument("--fill", type=float, default=0.0)
    args = parser.parse_args()

    import mmgen
    from mmgen.clip.zero_shot import encode_images, encode_texts
    from mmgen.data import shapes
    from mmgen.data.shapes_augment import irregular_object
    from mmgen.metrics.clip_robustness import GROUPS

    settings = SETTINGS if args.drift is None else {"asked": {
        "max_drift": args.drift, "max_warp": args.warp, "max_shading": args.fill}}
    model = mmgen.load(args.model).float().eval()
    every = shapes.all_combinations()
    combos = torch.tensor([a.labels for a in every])  # (1296, 5)
    captions = encode_texts(model, model.tokenize, [shapes.caption(a) for a in every])
    for name, kwargs in settings.items():
        line = [f"{name:<34}"]
        for group, split in GROUPS.items():
            batch = shapes.ShapesDataset(split, length=args.n, seed=1).as_tensors()
            labels = torch.stack([batch[a] for a in shapes.ATTRIBUTES], dim=1)  # (n, 5)
            torch.manual_seed(0)
            images = torch.stack([irregular_object(im, **kwargs) for im in batch["image"]])
            emb = encode_images(model, model.normalize_images((images + 1) / 2)).cpu()
            top = (emb @ captions.t()).argmax(dim=1)  # (n,) index into combos
            right = (combos[top] == labels).all(dim=1).double().mean()
            line.append(f"{group} {float(right):.1%}")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
