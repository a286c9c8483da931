"""How the bundled one-step generators are measured (the ``evaluate`` step of their recipes,
and ``scripts/onestep_results.py``): always through the saved pipeline, so the numbers are
those of what a user loads.

* :func:`mnist_generator_results`: class-conditional MNIST samples read by the bundled
  ``mnist-lenet5`` (accuracy overall and per digit), and FID / precision / recall in LeNet's
  feature space against the MNIST test split, next to the floor (as many real training
  digits against the same test split).
* :func:`shapes_generator_results`: all-five-attribute adherence on the canonical captions
  of ``test`` and ``test_compositional`` (the protocol of the text-to-image models), and
  Shapes FID against real images of each split.
* :func:`shapes_vector_arithmetic`: "red circle" - "red" + "blue" on the generator's input
  vectors, groups chosen by what the Shapes classifier reads (:mod:`mmgen.latents`).
* :func:`vae_likelihood_results`: the ELBO and the importance-weighted log-likelihood
  (K samples) of a VAE on a split, in bits/dim and nats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmgen.latents import attribute_vector
from mmgen.metrics.fid import fid
from mmgen.metrics.precision_recall import precision_recall


class NoSamples(ValueError):
    """No sample of the group an arithmetic starts from."""


def to_tensor(images: list[Any]) -> torch.Tensor:
    """PIL images -> (N, C, H, W) float in [0, 1] (one channel for grayscale)."""
    arr = np.stack([np.asarray(im) for im in images]).astype(np.float32) / 255.0
    x = torch.from_numpy(arr)
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)


def lenet_input(classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Digits (N, 1, 28, 28) in [0, 1] -> the classifier's input (its recorded
    normalisation)."""
    pre = classifier.info["preprocess"]
    return (x - pre["mean"][0]) / pre["std"][0]


@torch.no_grad()
def mnist_generator_results(pipe: Any, n: int = 1000, classifier: str = "mnist-lenet5",
                            seed: int = 0) -> dict[str, float]:
    """``n`` samples of a class-conditional MNIST pipeline (class i % 10 for image i, seeds
    ``seed + i``), judged by ``classifier``; see the module docstring."""
    from mmgen.data.mnist import MNIST
    from mmgen.hub import load

    lenet = load(classifier).eval()
    wanted = torch.arange(n) % 10  # (n,)
    fake = to_tensor(pipe(wanted.tolist(), seed=seed))  # (n, 1, 28, 28)
    fake_features = lenet.forward_features(lenet_input(lenet, fake))  # (n, D)
    predicted = lenet.head(fake_features).argmax(dim=1)  # (n,)
    right = (predicted == wanted).double()
    per_digit = {f"digit_{d}_accuracy": round(float(right[wanted == d].mean()), 4)
                 for d in range(10)}

    def features(split: str, per_class: int) -> torch.Tensor:  # real digits, balanced
        data = MNIST(split)
        keep = torch.cat([torch.nonzero(data.labels == d)[:per_class, 0] for d in range(10)])
        x = torch.stack([data[int(i)][0] for i in keep])  # (10 per_class, 1, 28, 28)
        return lenet.forward_features(lenet_input(lenet, x))

    test = features("test", 100)
    train = features("train", max(1, n // 10))
    precision, recall = precision_recall(test, fake_features)
    floor_p, floor_r = precision_recall(test, train)
    return {"label_accuracy": round(float(right.mean()), 4),
            "worst_digit_accuracy": min(per_digit.values()), **per_digit,
            "lenet_fid": round(fid(test, fake_features).value, 3),
            "lenet_fid_floor": round(fid(test, train).value, 3),
            "precision": round(precision.value, 4), "recall": round(recall.value, 4),
            "precision_floor": round(floor_p.value, 4), "recall_floor": round(floor_r.value, 4)}


@torch.no_grad()
def shapes_generator_results(pipe: Any, n: int = 500, prompt_seed: int = 1,
                             splits: tuple[str, ...] = ("test", "test_compositional")
                             ) -> dict[str, float]:
    """Adherence (all five attributes, and each) and Shapes FID of ``pipe`` on ``n``
    canonical captions per split (the split's items for ``prompt_seed``; image seed = index)."""
    from mmgen.data import shapes
    from mmgen.metrics.shapes import shapes_adherence, shapes_fid

    results: dict[str, float] = {}
    for split in splits:
        batch = shapes.ShapesDataset(split, length=n, seed=prompt_seed).as_tensors()
        prompts = batch["caption"]  # canonical captions, and the renders of them
        images = pipe(prompts, seed=0)
        adherence = shapes_adherence(images, prompts, progress=False)
        results[f"{split}/adherence_all5"] = round(adherence.all.value, 5)
        for attr, rate in adherence.per_attribute.items():
            results[f"{split}/{attr}"] = round(rate, 5)
        results[f"{split}/shapes_fid"] = round(
            shapes_fid((batch["image"] + 1) / 2, images, progress=False).value, 3)
    return results


@torch.no_grad()
def shapes_vector_arithmetic(pipe: Any, source: str = "red", target: str = "blue",
                             shape: str = "circle", n: int = 2000, seed: int = 0
                             ) -> dict[str, float]:
    """Vector arithmetic on a Shapes generator (Radford et al. 2016, sec. 6.3).

    ``n`` samples of random ``train`` captions (seeds ``seed + i``) are read by the Shapes
    classifier; v = mean input vector of the samples read as ``target`` colour - that of the
    samples read as ``source`` colour. Every sample read as a ``source`` ``shape`` gets v added
    and is generated again; the result is the share read as a ``target`` ``shape`` (and the
    share that also kept its size, position and background; all 0 if no sample was read as
    a ``source`` ``shape``)."""
    try:
        run = _arithmetic(pipe, source, target, shape, n, seed)
    except NoSamples:  # a generator that makes none: nothing turned
        return {"arithmetic/samples": 0.0, "arithmetic/turned": 0.0,
                "arithmetic/turned_and_kept_rest": 0.0}
    before, after = run["before"], run["after"]
    turned = (after[:, 0] == run["target"][0]) & (after[:, 1] == run["target"][1])
    kept = turned & (after[:, 2:] == before[:, 2:]).all(dim=1)
    return {"arithmetic/samples": float(len(after)),
            "arithmetic/turned": round(float(turned.double().mean()), 4),
            "arithmetic/turned_and_kept_rest": round(float(kept.double().mean()), 4)}


@torch.no_grad()
def shapes_arithmetic_pairs(pipe: Any, count: int = 8, **options: Any
                            ) -> tuple[list[Any], list[Any]]:
    """The first ``count`` samples that :func:`shapes_vector_arithmetic` moves, before and
    after (PIL images)."""
    run = _arithmetic(pipe, **options)
    keep = slice(0, count)
    before = pipe.render(run["vectors"][keep], run["prompts"][keep], run["seeds"][keep])
    after = pipe.render(run["moved"][keep], run["prompts"][keep], run["seeds"][keep])
    return before, after


def _arithmetic(pipe: Any, source: str = "red", target: str = "blue", shape: str = "circle",
                n: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Input vectors of the ``source`` ``shape`` samples before and after the arithmetic, and
    what the classifier reads in each (see :func:`shapes_vector_arithmetic`)."""
    from mmgen.data import shapes
    from mmgen.metrics.shapes import ShapesFeatures

    judge = ShapesFeatures()
    prompts = [shapes.caption(shapes.sample_attrs("train", 7, i)) for i in range(n)]
    recorded, labels = pipe.conditions(prompts)
    seeds = [seed + i for i in range(n)]
    w = pipe.model.input_vector(pipe.latents(seeds), labels)  # (n, W)

    def read(vectors: torch.Tensor, at: list[int]) -> torch.Tensor:  # (N, 5) attributes
        images = pipe.render(vectors, [recorded[i] for i in at], [seeds[i] for i in at])
        out = judge.attributes(to_tensor(images))
        return torch.stack([out[a] for a in shapes.ATTRIBUTES], dim=1)

    attrs = read(w, list(range(n)))
    color, form = shapes.COLORS.index, shapes.SHAPES.index
    is_source = attrs[:, 0] == color(source)
    members = is_source & (attrs[:, 1] == form(shape))
    if not members.any():
        raise NoSamples(f"no sample was read as a {source} {shape}: nothing to move")
    v = attribute_vector(w, is_source, attrs[:, 0] == color(target))  # (W,)
    at = torch.nonzero(members)[:, 0].tolist()
    moved = w[members] + v  # (m, W)
    return {"vectors": w[members], "moved": moved, "prompts": [recorded[i] for i in at],
            "seeds": [seeds[i] for i in at], "before": attrs[members], "after": read(moved, at),
            "target": (color(target), form(shape))}


@torch.no_grad()
def vae_likelihood_results(model: torch.nn.Module, images: torch.Tensor, samples: int = 1000,
                           batch_size: int = 100, seed: int = 0,
                           prefix: str = "test", progress: bool = True) -> dict[str, float]:
    """ELBO and importance-weighted log p(x) (``samples`` = K) of a ConvVAE on ``images``
    (N, C, H, W) in [0, 1]: negative, as nats per image and bits/dim."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    elbo, iwae = [], []
    for lo in tqdm(range(0, len(images), batch_size), desc=f"{prefix} NLL (K={samples})",
                   leave=False, disable=not progress):
        x = images[lo:lo + batch_size]
        elbo.append(model.elbo(x, generator=generator)["elbo"])
        iwae.append(model.log_likelihood(x, samples, generator=generator))
    elbo_t, iwae_t = torch.cat(elbo), torch.cat(iwae)  # (N,) nats
    return {f"{prefix}/nll_nats": round(float(-iwae_t.mean()), 3),
            f"{prefix}/nll_bits_per_dim": round(float(model.bits_per_dim(iwae_t).mean()), 5),
            f"{prefix}/negative_elbo_nats": round(float(-elbo_t.mean()), 3),
            f"{prefix}/negative_elbo_bits_per_dim": round(
                float(model.bits_per_dim(elbo_t).mean()), 5),
            f"{prefix}/iwae_samples": float(samples)}
