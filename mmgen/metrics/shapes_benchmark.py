"""The Shapes evaluations of the bundled models, one per family: CLIP zero-shot
classification and retrieval, VAE reconstruction, text-to-image adherence (and the guidance
scale that maximises it). Each takes a loaded model and returns ``{result key: value}``, the
keys the recipes' targets name.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import torch

from mmgen.clip.zero_shot import class_embeddings, encode_images, encode_texts, retrieve
from mmgen.data import shapes
from mmgen.device import batched
from mmgen.metrics.reconstruction import psnr
from mmgen.metrics.shapes import shapes_adherence

# ----------------------------------------------------------------------------- CLIP


def _over(pattern: str, **values: tuple[str, ...]) -> list[str]:
    """``pattern`` with every combination of ``values`` filled in, ``{}`` left for the class."""
    names = list(values)
    return [pattern.format("{}", **dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*(values[n] for n in names))]


# Zero-shot prompts, built from the attribute names only: each class embedding is the mean
# over prompts that name the class together with every value of the object's colour and
# shape (prompt ensembling, Radford et al. 2021 sec. 3.1.4). A caption-trained CLIP knows
# "a red circle in the top left" far better than "a shape in the top left", a phrase its
# training captions never contain.
ATTRIBUTE_TEMPLATES = {
    "color": _over("a {} {shape}", shape=shapes.SHAPES),
    "shape": _over("a {color} {}", color=shapes.COLORS),
    "size": _over("a {} {color} {shape}", color=shapes.COLORS, shape=shapes.SHAPES),
    "position": _over("a {color} {shape} in the {}", color=shapes.COLORS, shape=shapes.SHAPES),
    "background": _over("a {color} {shape} on a {} background", color=shapes.COLORS,
                        shape=shapes.SHAPES),
}


def attribute_templates(attribute: str) -> list[str]:
    """Prompt templates for zero-shot classification of one Shapes attribute."""
    if attribute not in ATTRIBUTE_TEMPLATES:
        raise ValueError(f"unknown Shapes attribute {attribute!r}; expected one of "
                         f"{shapes.ATTRIBUTES}")
    return list(ATTRIBUTE_TEMPLATES[attribute])


def clip_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Shapes images in [-1, 1] -> the CLIP model's normalised input."""
    return model.normalize_images((images + 1) / 2)


@torch.no_grad()
def evaluate_shapes_clip(model: torch.nn.Module, tokenize, n: int = 1000) -> dict[str, float]:
    """Zero-shot accuracy per attribute and split (``test``, ``test_compositional``; ``n``
    images each), and text -> image retrieval on ``test``: the fraction of canonical-caption
    queries whose top hit has all five attributes of the query."""
    model.eval()
    results: dict[str, float] = {}
    for split in ("test", "test_compositional"):
        batch = shapes.ShapesDataset(split, length=n, seed=1).as_tensors()
        image_emb = encode_images(model, clip_input(model, batch["image"]))  # (n, D)
        for attr in shapes.ATTRIBUTES:
            classes = class_embeddings(model, tokenize, shapes.CLASS_NAMES[attr],
                                       attribute_templates(attr)).cpu()  # (C, D)
            pred = (image_emb @ classes.t()).argmax(1)
            results[f"{split}/zero_shot_{attr}"] = round(
                (pred == batch[attr]).float().mean().item(), 5)
        if split == "test":
            results["test/retrieval_all5"] = _retrieval(model, tokenize, batch, image_emb)
    return results


def _retrieval(model, tokenize, batch: dict[str, Any], image_emb: torch.Tensor) -> float:
    queries = encode_texts(model, tokenize, batch["caption"])  # (n, D)
    _, top = retrieve(queries, image_emb, k=1)  # (n, 1)
    labels = torch.stack([batch[a] for a in shapes.ATTRIBUTES], 1)  # (n, 5)
    hit = (labels[top[:, 0]] == labels).all(1)
    return round(hit.float().mean().item(), 5)


# ----------------------------------------------------------------------------- VAE


@torch.no_grad()
def evaluate_vae(vae: torch.nn.Module, n: int = 1000) -> dict[str, float]:
    """PSNR of reconstructions (through the posterior mode) and their Shapes adherence."""
    results: dict[str, float] = {}
    for split in ("test", "test_compositional"):
        batch = shapes.ShapesDataset(split, length=n, seed=1).as_tensors()
        x = batch["image"]  # (n, 3, 64, 64) in [-1, 1]
        recon = batched(lambda b: vae.decode(vae.encode(b).mode()).clamp(-1, 1), x)
        real, fake = (x + 1) / 2, (recon + 1) / 2
        results[f"{split}/psnr"] = round(psnr(fake, real, data_range=1.0).value, 3)
        adherence = shapes_adherence(fake, batch["caption"], progress=False)
        results[f"{split}/adherence_all5"] = round(adherence.all.value, 5)
    return results


# ----------------------------------------------------------------------------- text-to-image


@torch.no_grad()
def evaluate_t2i(pipe: Any, n: int = 500, sampler: str = "ddim", steps: int = 25,
                 guidance: float | None = None,
                 splits: tuple[str, ...] = ("test", "test_compositional"),
                 batch_size: int = 100, prompt_seed: int = 1) -> dict[str, float]:
    """Shapes adherence of images generated by a text-to-image ``pipe`` from ``n`` canonical
    prompts per split (the split's items ``0..n-1`` for ``prompt_seed``; image seed = prompt
    index), and the sampling seconds per image."""
    results: dict[str, float] = {}
    for split in splits:
        prompts = [shapes.caption(shapes.sample_attrs(split, prompt_seed, i))
                   for i in range(n)]
        start = time.perf_counter()
        images = pipe(prompts, sampler=sampler, steps=steps, guidance=guidance, seed=0,
                      batch_size=batch_size, progress=False)
        seconds = (time.perf_counter() - start) / n
        adherence = shapes_adherence(images, prompts, progress=False)
        results[f"{split}/adherence_all5"] = round(adherence.all.value, 5)
        for attr, rate in adherence.per_attribute.items():
            results[f"{split}/{attr}"] = round(rate, 5)
        results[f"{split}/seconds_per_image"] = round(seconds, 4)
    return results


def select_guidance(pipe: Any, candidates: tuple[float, ...], n: int = 100
                    ) -> tuple[float, dict[str, float]]:
    """The candidate guidance scale with the best mean all-5 adherence of ``test`` and
    ``test_compositional`` (DDIM 25) on ``n`` prompts per split drawn with seed 2 (the
    evaluation uses seed 1), and the rates measured for each candidate."""
    rates = {}
    for g in candidates:
        r = evaluate_t2i(pipe, n, guidance=g, prompt_seed=2)
        rates[g] = (r["test/adherence_all5"] + r["test_compositional/adherence_all5"]) / 2
        print(f"[guidance {g}] mean all-5 adherence {rates[g]:.3f} (selection prompts)",
              flush=True)
    best = max(candidates, key=lambda g: rates[g])
    return best, {f"selection/guidance_{g}/adherence_all5": round(v, 5)
                  for g, v in rates.items()} | {"guidance": best}
