"""Issue #24: read every checkpoint of a ``shapes_clip_robust.py`` run (its EMA weights, in
fp16 as exported) on *validation* renders: other items (``item_seed``) of the same splits than
the test items of :func:`~mmgen.metrics.clip_robustness.clip_robustness`, clean and perturbed.
Prints the lowest retrieval over the inputs per group, per checkpoint.

    python scripts/experiments/select_checkpoint.py runs/c1000s4 --tower robust
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from shapes_clip_robust import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the --out folder of shapes_clip_robust.py")
    parser.add_argument("--tower", default="robust")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--item-seed", type=int, default=7)
    args = parser.parse_args()

    from mmgen.checkpoint import load_state_dict
    from mmgen.metrics.clip_robustness import clip_robustness

    model = build(args.tower)
    for ckpt in sorted((Path(args.run) / "run" / "checkpoints").glob("step_*")):
        weights = load_state_dict(ckpt / "ema.safetensors")
        model.load_state_dict({k: v.half().float() for k, v in weights.items()})
        res = clip_robustness(model, model.tokenize, args.n, item_seed=args.item_seed)
        line = [ckpt.name]
        for group in ("seen", "held_out"):
            worst = min((v, k) for k, v in res.items()
                        if k.startswith(group) and k.endswith("/retrieval"))
            mean = sum(v for k, v in res.items() if k.startswith(group)
                       and k.endswith("/retrieval")) / 6
            line.append(f"{group}: min {worst[0]:.3f} ({worst[1].split('/')[1]}) "
                        f"mean {mean:.3f}")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
