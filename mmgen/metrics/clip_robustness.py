"""Does a Shapes CLIP read real images, not only exact renders? (issue #24's evaluation)

For the items of ``test`` (colour-shape pairs seen in training: *seen*) and of
``test_compositional`` (the held-out pairs: *held_out*), each image is read two ways:

* **retrieval**: the image's embedding ranks all 1,296 canonical captions (every attribute
  combination); right when the top caption is the image's own (all five attributes);
* **zero-shot** per attribute, with the prompt ensembles of
  :func:`mmgen.metrics.shapes_benchmark.attribute_templates`.

on the clean renders, on each perturbation of :data:`PERTURBATIONS` alone (Gaussian blur
sigma 1, pixel noise sigma 8/255, JPEG quality 70, a shift of up to 2 px per axis) and on all
of them combined, and on images a text-to-image model generated from the same captions (passed
in: ``scripts/clip_robustness.py`` makes them with ``shapes-t2i``). Results are keyed
``GROUP/INPUT/METRIC``, e.g. ``held_out/jpeg/retrieval`` or ``seen/generated/zero_shot_color``.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from mmgen.clip.zero_shot import class_embeddings, encode_images, encode_texts
from mmgen.data import shapes
from mmgen.data.shapes_augment import jpeg, translate
from mmgen.metrics.shapes_benchmark import attribute_templates

GROUPS = {"seen": "test", "held_out": "test_compositional"}  # group -> Shapes split
PERTURBATIONS = ("blur", "noise", "jpeg", "shift", "combined")
BLUR_SIGMA = 1.0  # Gaussian blur (pixels)
NOISE_SIGMA = 8 / 255  # pixel noise, images in [0, 1]
JPEG_QUALITY = 70
MAX_SHIFT = 2  # pixels per axis


def perturb(images: torch.Tensor, name: str, seed: int = 0) -> torch.Tensor:
    """``images`` (N, 3, H, W) in [0, 1] after perturbation ``name`` (one of
    :data:`PERTURBATIONS`; "combined" applies shift, blur, noise and JPEG in that order, as a
    generated image saved to disk would meet them). Random draws come from ``seed``."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; expected one of {PERTURBATIONS}")
    rng = np.random.default_rng(seed)
    steps = ("shift", "blur", "noise", "jpeg") if name == "combined" else (name,)
    x = images
    for step in steps:
        if step == "shift":
            moves = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(len(x), 2))
            x = torch.stack([translate(im, int(dx), int(dy)) for im, (dx, dy) in zip(x, moves,
                                                                                     strict=True)])
        elif step == "blur":
            x = TF.gaussian_blur(x, kernel_size=7, sigma=BLUR_SIGMA)
        elif step == "noise":
            noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
            x = (x + NOISE_SIGMA * noise).clamp(0, 1)
        else:
            x = torch.stack([jpeg(im, JPEG_QUALITY) for im in x])
    return x


@torch.no_grad()
def read_images(model: torch.nn.Module, tokenize, images: torch.Tensor, labels: torch.Tensor,
                caption_emb: torch.Tensor, combos: torch.Tensor,
                attribute_emb: dict[str, torch.Tensor]) -> dict[str, float]:
    """Retrieval among all canonical captions and per-attribute zero-shot accuracy of
    ``images`` (N, 3, H, W) in [0, 1] whose attributes are ``labels`` (N, 5)."""
    emb = encode_images(model, model.normalize_images(images)).cpu()  # (N, D)
    top = (emb @ caption_emb.t()).argmax(dim=1)  # (N,) index into combos
    out = {"retrieval": float((combos[top] == labels).all(dim=1).double().mean())}
    for i, attr in enumerate(shapes.ATTRIBUTES):
        pred = (emb @ attribute_emb[attr].t()).argmax(dim=1)
        out[f"zero_shot_{attr}"] = float((pred == labels[:, i]).double().mean())
    return out


@torch.no_grad()
def caption_retrieval(model: torch.nn.Module, images, prompts: list[str]) -> float:
    """How often an image's prompt (a canonical Shapes caption) is the best of all 1,296
    canonical captions for it: the retrieval above for any images (PIL or (N, 3, H, W) in
    [0, 1]) and prompts, e.g. a text-to-image model's outputs."""
    captions = [shapes.caption(a) for a in shapes.all_combinations()]
    index = {c: i for i, c in enumerate(captions)}
    if unknown := [p for p in prompts if p not in index]:
        raise ValueError(f"not a canonical Shapes caption: {unknown[0]!r}")
    emb = encode_images(model, model.preprocess(images)).cpu()  # (N, D)
    top = (emb @ encode_texts(model, model.tokenize, captions).t()).argmax(dim=1)  # (N,)
    return float((top == torch.tensor([index[p] for p in prompts])).double().mean())


@torch.no_grad()
def clip_robustness(model: torch.nn.Module, tokenize, n: int = 500,
                    generated: dict[str, torch.Tensor] | None = None,
                    seed: int = 0, item_seed: int = 1) -> dict[str, float]:
    """The evaluation of the module docstring on the first ``n`` items of each group's split
    (``item_seed`` 1: the items every Shapes evaluation uses; another seed draws other renders
    of the same combinations, e.g. to choose a checkpoint without looking at the test items).
    ``generated`` maps a group to the images (n, 3, H, W) in [0, 1] generated from those
    items' canonical captions."""
    model.eval()
    every = shapes.all_combinations()  # 1,296 attribute combinations
    combos = torch.tensor([a.labels for a in every])  # (1296, 5)
    caption_emb = encode_texts(model, tokenize, [shapes.caption(a) for a in every])  # (1296, D)
    attribute_emb = {a: class_embeddings(model, tokenize, shapes.CLASS_NAMES[a],
                                         attribute_templates(a)).cpu()
                     for a in shapes.ATTRIBUTES}
    results: dict[str, float] = {}
    for group, split in GROUPS.items():
        batch = shapes.ShapesDataset(split, length=n, seed=item_seed).as_tensors()
        clean = (batch["image"] + 1) / 2  # (n, 3, 64, 64)
        labels = torch.stack([batch[a] for a in shapes.ATTRIBUTES], dim=1)  # (n, 5)
        inputs = {"clean": clean} | {p: perturb(clean, p, seed) for p in PERTURBATIONS}
        if generated is not None and group in generated:
            inputs["generated"] = generated[group][:n]
        for name, images in inputs.items():
            read = read_images(model, tokenize, images, labels, caption_emb, combos,
                               attribute_emb)
            results |= {f"{group}/{name}/{k}": round(v, 5) for k, v in read.items()}
    return results

