"""The other text-conditioning design of shapes-dit (docs/dit.md), for the comparison: the
text reaches the DiT only as its mean-pooled tokens added to the adaLN condition (as the
paper conditions on classes), no cross-attention. Everything else is shapes-dit's recipe.

    python scripts/experiments/shapes_dit.py --list
    python scripts/experiments/shapes_dit.py shapes-dit-pooled [--out runs/NAME] [--resume]
"""

from __future__ import annotations

from dataclasses import replace

from mmgen.recipes import get_recipe

_BASE = get_recipe("shapes-dit")
EXPERIMENTS = {
    "shapes-dit-pooled": replace(
        _BASE, network={**_BASE.network, "cross_attention": False, "pooled_text": True},
        description="shapes-dit with the mean-pooled text in adaLN instead of cross-attention"),
}

if __name__ == "__main__":
    from runner import experiment_main  # beside this file: only when run as a script

    experiment_main(EXPERIMENTS, __doc__)
