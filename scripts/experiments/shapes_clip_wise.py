"""Weight-space interpolation (WiSE-FT, Wortsman et al. 2022) between the bundled shapes-clip
and a tune of it (issue #24): every floating-point image-tower weight (and the logit
scale) is ``(1 - alpha) * bundled + alpha * tuned``; the text tower, frozen in the tunes,
stays bit-identical (checked). DIR is a tune's ``--out`` (scripts/experiments/
shapes_clip_stage2.py, e.g. shapes-clip-irregular); results in docs/clip.md.

    python scripts/experiments/shapes_clip_wise.py DIR/model --alpha 0.3 0.5 --out WISE
    python scripts/clip_robustness.py --model WISE/a0.5 --no-docs [--item-seed 7 --n 300]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmgen.hub import load


def interpolate(base: torch.nn.Module, tuned: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """``base`` with every floating-point weight moved ``alpha`` of the way to ``tuned``'s."""
    tuned_state = tuned.state_dict()
    mixed = {}
    for name, w in base.state_dict().items():
        t = tuned_state[name]
        if not (name.startswith("visual.") or name == "logit_scale") \
                or not w.is_floating_point():
            if not torch.equal(w, t.to(w.dtype)):
                raise SystemExit(f"{name} differs between the two models: not a tune of the "
                                 "image tower")
            mixed[name] = w
        else:
            mixed[name] = torch.lerp(w.float(), t.float(), alpha)
    base.load_state_dict(mixed)
    return base


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tuned", help="a model folder tuned from the bundled shapes-clip")
    parser.add_argument("--base", default="shapes-clip")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    tuned = load(args.tuned).float()
    for alpha in args.alpha:
        model = interpolate(load(args.base).float(), tuned, alpha)
        model.info = {**model.info, "wise_ft": {"base": args.base, "tuned": args.tuned,
                                                "alpha": alpha}}
        path = model.save_pretrained(Path(args.out) / f"a{alpha:g}", dtype=torch.float16)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
