"""Training captions for Shapes: captions that name only some attributes, and the words of
every Shapes caption (the vocabulary a Shapes text tower needs).

The dataset's own captions (:func:`mmgen.data.shapes.caption`, ``caption_mode`` "canonical"
or "varied") name all five attributes. Training may also use "factored" ones, naming a random
subset ("a green shape", "a triangle in the top left"), or "mixed" (half varied, half
factored): :data:`TRAINING_CAPTION_MODES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mmgen.data import shapes

TRAINING_CAPTION_MODES = ("varied", "canonical", "factored", "mixed")


def factored_caption(attrs: shapes.ShapeAttrs, rng: np.random.Generator,
                     canonical_prob: float = 0.4, keep_prob: float = 0.5) -> str:
    """A caption naming a random subset of the attributes ("a green shape", "a triangle in
    the top left", ...), or the canonical one with probability ``canonical_prob``.

    Naming attributes on their own teaches a text tower one concept per attribute, which is
    what lets CLIP generalise to colour-shape pairs it never saw and classify each attribute
    zero-shot from its name alone. Such a caption matches every image of a batch that has
    the named attributes (:func:`mmgen.data.shapes_training.shapes_collate`)."""
    if rng.random() < canonical_prob:
        return shapes.caption(attrs)
    keep = dict(zip(shapes.ATTRIBUTES, rng.random(5) < keep_prob, strict=True))
    if not any(keep.values()):
        keep[shapes.ATTRIBUTES[rng.integers(5)]] = True
    words = [attrs.size if keep["size"] else "", attrs.color if keep["color"] else "",
             attrs.shape if keep["shape"] else "shape"]
    text = "a " + " ".join(w for w in words if w)
    if keep["position"]:
        text += f" in the {attrs.position}"
    if keep["background"]:
        text += f" on a {attrs.background} background"
    return text


def named_attributes(text: str, attrs: shapes.ShapeAttrs) -> tuple[bool, ...]:
    """Which attributes a Shapes caption (canonical, varied or factored) states."""
    words = f" {text} "
    said = {"color": f" {attrs.color} " in words, "shape": f" {attrs.shape} " in words,
            "size": f" {attrs.size} " in words, "position": f" in the {attrs.position}" in words,
            "background": f" {attrs.background} background" in words}
    return tuple(said[a] for a in shapes.ATTRIBUTES)


def dataset_caption_mode(mode: str) -> str:
    """The :class:`~mmgen.data.shapes.ShapesDataset` caption mode behind a training caption
    ``mode`` (one of :data:`TRAINING_CAPTION_MODES`)."""
    if mode not in TRAINING_CAPTION_MODES:
        raise ValueError(f"unknown caption mode {mode!r}; expected one of "
                         f"{TRAINING_CAPTION_MODES}")
    return {"factored": "canonical", "mixed": "varied"}.get(mode, mode)


def training_caption(caption: str, attrs: shapes.ShapeAttrs, mode: str,
                     rng: np.random.Generator) -> str:
    """The caption an item is trained with: the dataset's ``caption``, or a
    :func:`factored_caption` ("factored"; "mixed": with probability 1/2)."""
    if mode == "factored" or (mode == "mixed" and rng.random() < 0.5):
        return factored_caption(attrs, rng)
    return caption


def without_color(text: str, attrs: shapes.ShapeAttrs) -> str:
    """``text`` with the object's colour word removed (and "an"/"a" before it fixed)."""
    words = text.split()
    i = words.index(attrs.color)
    del words[i]
    if i > 0 and words[i - 1] in ("a", "an"):
        words[i - 1] = "an" if words[i][0] in "aeiou" else "a"
    return " ".join(words)


def shapes_vocabulary(tokenize: Callable[[Sequence[str]], torch.Tensor]) -> list[int]:
    """Every token id of Shapes captions (canonical, varied, and factored ones), plus start /
    end / padding, for ``tokenize`` (a CLIP model's ``tokenize``)."""
    texts = [shapes.caption(a) for a in shapes.all_combinations()]
    texts += [shapes.sample_caption("train", 0, i, "varied") for i in range(5000)]
    texts += ["a shape", "an image of a picture of a drawing of", ""]
    return sorted(set(tokenize(texts).flatten().tolist()))
