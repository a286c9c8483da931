"""The one-step generators' section of docs/results.md and their pictures in docs/images.

    python scripts/onestep_results.py                  # the bundled mnist-dcgan, shapes-dcgan,
                                                       # mnist-vae
    python scripts/onestep_results.py --measure        # measure again instead of reading the
                                                       # results their recipes recorded

The numbers are those each recipe measured on its exported weights (``mmgen train --recipe
NAME``; kept in the model's config.json) unless ``--measure`` runs the same measurements
(:mod:`mmgen.metrics.onestep`) again, which must give the same numbers (same seeds). The
pictures:

* ``mnist_dcgan.png``: digits 0-9 (rows) for 10 seeds (columns);
* ``mnist_dcgan_walk.png``: latent walks (slerp), one per row, between two digits and seeds;
* ``shapes_dcgan.png``: the first 8 canonical captions of ``test`` and of
  ``test_compositional`` (held-out colour-shape pairs);
* ``shapes_arithmetic.png``: red circles (top) and the same samples after
  + mean(blue) - mean(red) (bottom);
* ``mnist_vae.png``: test digits, their reconstructions, samples, and a traversal of the
  latent dimensions that matter most (one row each, -3 to +3 around a digit's mean latent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SECTION = "onestep"


def results(name: str, measure: bool) -> dict:
    """The results of bundled model ``name``: recorded by its recipe, or measured now."""
    import mmgen
    from mmgen.recipes import get_recipe

    if not measure:
        return dict(mmgen.load(name).model.info["results"])
    return get_recipe(name).evaluate(mmgen.hub.model_dir(name), None)


def mnist_pictures(out: Path) -> None:
    import mmgen
    from mmgen.diffusion.images import image_grid

    pipe = mmgen.load("mnist-dcgan")
    digits = [pipe(d, seed=s)[0] for d in range(10) for s in range(10)]
    image_grid(digits, cols=10, scale=3).save(out / "mnist_dcgan.png")
    walks = [(0, 6, 1, 2), (1, 7, 3, 4), (3, 8, 5, 6), (4, 9, 7, 8)]
    frames = [f for a, b, s, e in walks for f in pipe.interpolate(a, b, seed=s, end_seed=e,
                                                                    frames=10)]
    image_grid(frames, cols=10, scale=3).save(out / "mnist_dcgan_walk.png")


def shapes_pictures(out: Path) -> None:
    import mmgen
    from mmgen.data import shapes
    from mmgen.diffusion.images import image_grid
    from mmgen.metrics.onestep import shapes_arithmetic_pairs

    pipe = mmgen.load("shapes-dcgan")
    prompts = [shapes.caption(shapes.sample_attrs(split, 1, i))
               for split in ("test", "test_compositional") for i in range(8)]
    images = pipe(prompts, seed=0)
    image_grid(images, cols=8, scale=2, labels=prompts, label_width=18).save(
        out / "shapes_dcgan.png")
    before, after = shapes_arithmetic_pairs(pipe, count=8)
    image_grid(before + after, cols=8, scale=2).save(out / "shapes_arithmetic.png")


def vae_pictures(out: Path) -> None:
    import mmgen
    from mmgen.data.mnist import MNIST, binarize
    from mmgen.diffusion.images import image_grid
    from mmgen.onestep import to_pil

    pipe = mmgen.load("mnist-vae")
    vae = pipe.model.float()
    test = MNIST("test", transform=binarize)
    x = torch.stack([test[i * 100][0] for i in range(10)])  # one per digit: (10, 1, 28, 28)
    with torch.no_grad():
        q = vae.encode(x)
        recon = vae.synthesize(q.mean)  # (10, 1, 28, 28)
        samples = pipe(None, num_images=10, seed=0)
        used = _active_dims(vae, test)[:4]  # the dimensions the VAE uses most
        base = q.mean[3]  # a "3"
        rows = []
        for d in used.tolist():
            w = base.repeat(10, 1)
            w[:, d] = torch.linspace(-3, 3, 10)
            rows.append(vae.synthesize(w))
    tiles = to_pil(x * 2 - 1) + to_pil(recon) + samples + to_pil(torch.cat(rows))
    image_grid(tiles, cols=10, scale=3).save(out / "mnist_vae.png")


def _active_dims(vae, data) -> torch.Tensor:
    """Latent dimensions sorted by the variance of their posterior means over 1000 digits
    (Burda et al. 2016's activity measure): the ones the VAE uses come first."""
    x = torch.stack([data[i][0] for i in range(1000)])
    with torch.no_grad():
        means = vae.encode(x).mean  # (1000, D)
    return means.var(dim=0).argsort(descending=True)


def render(rows: dict[str, dict]) -> str:
    m, s, v = rows["mnist-dcgan"], rows["shapes-dcgan"], rows["mnist-vae"]
    digits = " | ".join(f"{m[f'digit_{d}_accuracy']:.1%}" for d in range(10))
    lines = [
        "## One-step generators: DCGAN and VAE",
        "",
        "Written by `python scripts/onestep_results.py` from the results each recipe measured "
        "on its exported weights (`mmgen train --recipe NAME`; `--measure` measures again). "
        "How they are trained and used: [gan.md](gan.md). Sampling speed: "
        "`python benchmarks/onestep.py`.",
        "",
        "### mnist-dcgan (class-conditional DCGAN)",
        "",
        "1,000 samples (digit i % 10 for sample i, seed i) read by the bundled `mnist-lenet5`; "
        "FID, precision and recall (k = 3) in LeNet's feature space against the 1,000 digits "
        "of the MNIST test split, next to the floor: 1,000 real training digits (100 per "
        "class) against the same test split.",
        "",
        "| LeNet reads the requested digit | weakest digit | LeNet FID (floor) | precision "
        "(floor) | recall (floor) |",
        "|---|---|---|---|---|",
        f"| {m['label_accuracy']:.1%} | {m['worst_digit_accuracy']:.1%} | "
        f"{m['lenet_fid']:.3f} ({m['lenet_fid_floor']:.3f}) | {m['precision']:.3f} "
        f"({m['precision_floor']:.3f}) | {m['recall']:.3f} ({m['recall_floor']:.3f}) |",
        "",
        "| digit | " + " | ".join(str(d) for d in range(10)) + " |",
        "|---" * 11 + "|",
        f"| read as requested | {digits} |",
        "",
        "![digits 0-9, 10 seeds each](images/mnist_dcgan.png)",
        "",
        "Latent walks (slerp on z, a straight line between the two digits' embeddings):",
        "",
        "![latent walks](images/mnist_dcgan_walk.png)",
        "",
        "### shapes-dcgan (conditioned on the five attributes)",
        "",
        "500 canonical captions of each split (the protocol of the text-to-image models: "
        "caption i of the split for seed 1, image seed i), all five attributes read by the "
        "bundled `shapes-classifier`; Shapes FID against the real renders of the same "
        "captions. `test_compositional` holds only the colour-shape pairs left out of "
        "training.",
        "",
        "| split | all 5 right | color | shape | size | position | background | Shapes FID |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split in ("test", "test_compositional"):
        lines.append(f"| {split} | {s[f'{split}/adherence_all5']:.1%} | " + " | ".join(
            f"{s[f'{split}/{a}']:.1%}" for a in ("color", "shape", "size", "position",
                                                 "background"))
            + f" | {s[f'{split}/shapes_fid']:.2f} |")
    lines += [
        "",
        "By the same protocol the bundled diffusion models reach 99.4 % / 98.0 % all-5 "
        "(`shapes-t2i`, DDIM 25) and 99.4 % / 93.4 % (`shapes-dit`) on `test` / "
        "`test_compositional` (tables above). The GAN is conditioned on the labels themselves, "
        "not on a caption read by a text encoder, which makes its task easier.",
        "",
        "![shapes-dcgan samples](images/shapes_dcgan.png)",
        "",
        f"Vector arithmetic: of {int(s['arithmetic/samples'])} samples read as red circles "
        "(among 2,000 samples of random training captions), "
        f"**{s['arithmetic/turned']:.1%}** are read as blue circles after adding "
        "mean(samples read as blue) - mean(samples read as red) to their generator input, and "
        f"{s['arithmetic/turned_and_kept_rest']:.1%} also keep their size, position and "
        "background. In this conditional GAN the attributes live in the label-embedding part "
        "of the input vector (z carries almost nothing: a caption fixes a Shapes image), so "
        "the arithmetic mostly swaps the colour embeddings; the group means come from what "
        "the classifier reads, not from the labels asked for. Top: red circles; bottom: the "
        "same samples after the arithmetic.",
        "",
        "![vector arithmetic](images/shapes_arithmetic.png)",
        "",
        "### mnist-vae (convolutional VAE, Bernoulli decoder, binarised MNIST)",
        "",
        f"Negative log-likelihood on 1,000 digits per split: importance-weighted with "
        f"K = {int(v['test/iwae_samples'])} samples (Burda et al. 2016), and the ELBO "
        "(K = 1); bits per pixel and nats per image.",
        "",
        "| split | NLL bits/dim | NLL nats | -ELBO bits/dim | -ELBO nats |",
        "|---|---|---|---|---|",
    ]
    for split in ("train", "test"):
        lines.append(f"| {split} | {v[f'{split}/nll_bits_per_dim']:.4f} | "
                     f"{v[f'{split}/nll_nats']:.2f} | "
                     f"{v[f'{split}/negative_elbo_bits_per_dim']:.4f} | "
                     f"{v[f'{split}/negative_elbo_nats']:.2f} |")
    gap = v["test/nll_nats"] - v["train/nll_nats"]
    lines += [
        "",
        f"The {gap:.1f}-nat gap between the splits is overfitting to the 4,000 training digits "
        "(the only MNIST that ships offline).",
        "",
        "Rows: one test digit per class; their reconstructions (the decoder's mean at the "
        "posterior mean); 10 samples; then a traversal of the four most active latent "
        "dimensions around the 3's posterior mean, from -3 to +3.",
        "",
        "![mnist-vae](images/mnist_vae.png)",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true",
                        help="measure again instead of reading the recorded results")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = {name: results(name, args.measure)
            for name in ("mnist-dcgan", "shapes-dcgan", "mnist-vae")}
    mnist_pictures(out / "images")
    shapes_pictures(out / "images")
    vae_pictures(out / "images")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from docs_sections import replace_section

    replace_section(out / "results.md", SECTION, render(rows))
    print(json.dumps(rows, indent=2))
    print(f"wrote {out / 'results.md'} (section {SECTION}) and its pictures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
