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
    from mmgen.data import shapes
    from mmgen.data.shapes_augment import irregular_object
    from mmgen.metrics.clip_robustness import GROUPS, caption_retrieval

    settings = SETTINGS if args.drift is None else {"asked": {
        "max_drift": args.drift, "max_warp": args.warp, "max_shading": args.fill}}
    model = mmgen.load(args.model).float().eval()
    for name, kwargs in settings.items():
        line = [f"{name:<34}"]
        for group, split in GROUPS.items():
            renders = shapes.ShapesDataset(split, length=args.n, seed=1).as_tensors()["image"]
            prompts = [shapes.caption(shapes.sample_attrs(split, 1, k)) for k in range(args.n)]
            torch.manual_seed(0)
            images = torch.stack([irregular_object(im, **kwargs) for im in renders])
            right = caption_retrieval(model, (images + 1) / 2, prompts)
            line.append(f"{group} {right:.1%}")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
