"""Shapes as training data for each family: labelled images (classifiers), images (VAEs),
(image, labels) pairs (conditional GANs), (image, caption) pairs (CLIP) and (latent, caption)
pairs (latent text-to-image); and captioned pairs from a folder of images.

Every random choice of an item is a pure function of (seed, index), so a resumed run sees the
same data; torch's global RNG (checkpointed by the Trainer) is left to augmentations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmgen.data import shapes
from mmgen.data.folder import ImageFolderDataset
from mmgen.data.shapes_augment import move_and_zoom, off_palette_colors, recolor
from mmgen.data.shapes_text import (
    dataset_caption_mode,
    named_attributes,
    training_caption,
    without_color,
)

_COLOR = shapes.ATTRIBUTES.index("color")
Transform = Callable[[torch.Tensor], torch.Tensor]


class ShapesItems(Dataset):
    """Shapes items as ``(image in [-1, 1], {attribute: label})`` pairs.

    ``split=None`` draws uniformly from all 1,296 combinations, the held-out pairs included:
    an attribute classifier is a *judge* of generated images, so it must know every
    combination a prompt can ask for. (The held-out pairs are held out from generative models.)
    """

    def __init__(self, split: str | None, length: int, seed: int = 0):
        self.split, self.length, self.seed = split, length, seed
        self.dataset = shapes.ShapesDataset(split, size=64, length=length, seed=seed) \
            if split else None
        self.combinations = shapes.all_combinations()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, int]]:
        if self.dataset is not None:
            item = self.dataset[i]
            return item["image"], {a: item[a] for a in shapes.ATTRIBUTES}
        k = np.random.default_rng([self.seed, 7919, i]).integers(len(self.combinations))
        attrs = self.combinations[k]
        image = shapes.to_tensor(shapes.render_array(attrs))
        return image, dict(zip(shapes.ATTRIBUTES, attrs.labels, strict=True))


class ShapesImages(Dataset):
    """The ``image`` tensors (3, 64, 64) in [-1, 1] of a Shapes split."""

    def __init__(self, split: str, length: int):
        self.data = shapes.ShapesDataset(split, length=length)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]["image"]


class ShapesConditions(Dataset):
    """Shapes ``split`` items as (image (3, 64, 64) in [-1, 1], labels (5,)) pairs, for
    generators conditioned on the five attributes."""

    def __init__(self, split: str, length: int):
        self.data = shapes.ShapesDataset(split, length=length)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        attrs = self.data.attrs(i)
        return shapes.to_tensor(shapes.render_array(attrs)), torch.tensor(attrs.labels)


class GeneratedShapes(Dataset):
    """Images a text-to-image model made from the canonical captions of Shapes ``split`` items
    0..n-1 (dataset ``seed``), as ``(image (3, H, W) in [-1, 1], attributes, caption)``; the
    caption is the item's own in ``caption_mode`` ("canonical" or "varied").

    Args:
        images: uint8 (n, H, W, 3): image k made from ``shapes.caption(attrs of item k)``.
    """

    def __init__(self, images: np.ndarray, split: str, seed: int,
                 caption_mode: str = "canonical"):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"generated images must be uint8 (n, H, W, 3), got "
                             f"{images.dtype} {images.shape}")
        self.images = images
        self.data = shapes.ShapesDataset(split, length=len(images), seed=seed,
                                         caption_mode=caption_mode)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, shapes.ShapeAttrs, str]:
        attrs = self.data.attrs(k)
        caption = shapes.sample_caption(self.data.split, self.data.seed, k,
                                        self.data.caption_mode, self.data.omit_prob)
        return shapes.to_tensor(self.images[k]), attrs, caption


class ShapesPairs(Dataset):
    """Shapes items as {"image": transform(image), "caption": str, "labels": (5,) long,
    "named": (5,) bool} (``named``: the attributes the caption states), for contrastive
    training. ``mode`` is a :data:`~mmgen.data.shapes_text.TRAINING_CAPTION_MODES` entry.

    With ``recolor_prob`` > 0, that fraction of the objects is painted in a random colour far
    from every Shapes colour (:func:`~mmgen.data.shapes_augment.off_palette_colors`) and
    captioned without a colour; "another colour" counts as its colour (label -1, named), so
    these images and their captions are positives only of each other. ``shift`` / ``scale``:
    see :func:`~mmgen.data.shapes_augment.move_and_zoom`. With ``generated`` images and
    ``generated_prob`` > 0, that share of the items is a random one of them instead, with
    its own attributes and caption, neither recoloured nor moved.

    Args:
        transform: maps an image (3, H, W) in [-1, 1] to the model's input.
    """

    def __init__(self, split: str, length: int, mode: str, transform: Transform,
                 seed: int = 0, recolor_prob: float = 0.0, shift: int = 0,
                 scale: float = 0.0, generated: GeneratedShapes | None = None,
                 generated_prob: float = 0.0):
        self.data = shapes.ShapesDataset(split, length=length,
                                         caption_mode=dataset_caption_mode(mode))
        self.mode, self.seed, self.transform = mode, seed, transform
        self.recolor_prob, self.shift, self.scale = recolor_prob, shift, scale
        if generated_prob and (generated is None or not len(generated)):
            raise ValueError("generated_prob > 0 needs generated images")
        if not 0 <= generated_prob <= 1:
            raise ValueError(f"generated_prob must be in [0, 1], got {generated_prob}")
        self.generated, self.generated_prob = generated, generated_prob

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, 77, i])  # a pure function of (seed, i)
        if self.generated_prob and rng.random() < self.generated_prob:  # a generated image,
            #   as it is (no recolouring, moves or zooms: the generator made its own)
            image, attrs, caption = self.generated[int(rng.integers(len(self.generated)))]
            text = training_caption(caption, attrs, self.mode, rng)
            return {"image": self.transform(image), "caption": text,
                    "labels": torch.tensor(attrs.labels),
                    "named": torch.tensor(named_attributes(text, attrs))}
        item, attrs = self.data[i], self.data.attrs(i)
        text = training_caption(item["caption"], attrs, self.mode, rng)
        image, labels = item["image"], torch.tensor(attrs.labels)
        named = torch.tensor(named_attributes(text, attrs))
        if self.recolor_prob and rng.random() < self.recolor_prob:
            image = recolor(image, attrs, off_palette_colors(1, rng, attrs.shape)[0])
            if attrs.color in text.split():
                text = without_color(text, attrs)
            # "another colour" is this caption's colour: it matches recoloured images only
            labels[_COLOR], named[_COLOR] = -1, True
        if self.shift or self.scale:
            image = move_and_zoom(image, attrs, rng, self.shift, self.scale)
        return {"image": self.transform(image), "caption": text, "labels": labels,
                "named": named}


def collate_captions(items: Sequence[dict[str, Any]], key: str = "image") -> dict[str, Any]:
    """Stack ``item[key]`` tensors and keep the captions as a list."""
    return {key: torch.stack([it[key] for it in items]),
            "caption": [it["caption"] for it in items]}


def shapes_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """:class:`ShapesPairs` items -> images, captions, ``labels`` (N, 5) and
    ``positives[i, j]``: image i has every attribute that caption j names (so "a red shape"
    matches all red images)."""
    batch = collate_captions(items)
    labels = torch.stack([it["labels"] for it in items])  # (N, 5)
    named = torch.stack([it["named"] for it in items])  # (N, 5)
    agree = labels[:, None, :] == labels[None, :, :]  # (N_img, N_txt, 5)
    batch["positives"] = (agree | ~named[None, :, :]).all(-1)  # identical captions included
    batch["labels"] = labels
    return batch


class FolderPairs(Dataset):
    """Captioned images of a folder (``captions.jsonl`` or sidecar ``.txt``) as
    {"image": transform(image in [0, 1]), "caption": str}."""

    def __init__(self, root: str, size: int, transform: Transform):
        self.data = ImageFolderDataset(root, size=size)
        missing = [f for f, c in zip(self.data.files, self.data.captions, strict=True) if not c]
        if missing:
            raise ValueError(f"{len(missing)} image(s) in {root} have no caption (e.g. "
                             f"{missing[0]}); add captions.jsonl or sidecar .txt files")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        return {"image": self.transform(item["image"]), "caption": item["caption"]}


def latent_table(encode: Transform) -> dict[tuple[int, ...], torch.Tensor]:
    """``encode(images)`` (scaled latents) of every training combination, keyed by labels:
    the ``train`` split has only 1,080 distinct images, so they are encoded once."""
    combos = shapes.all_combinations("train")
    images = torch.stack([shapes.to_tensor(shapes.render_array(a)) for a in combos])
    latents = encode(images)  # (n, C, h, w)
    return {a.labels: z for a, z in zip(combos, latents, strict=True)}


class LatentPairs(Dataset):
    """Shapes items as {"latent": (C, h, w) scaled latent, "caption": str}, the latents
    looked up in a :func:`latent_table`. ``caption_mode="mixed"``: half of the captions are
    varied ones, half factored (a random subset of the attributes); a U-Net that also learns
    what each attribute alone asks for treats colour and shape as separate controls, which a
    colour-shape pair it never saw needs."""

    def __init__(self, split: str, length: int, caption_mode: str,
                 table: dict[tuple[int, ...], torch.Tensor], seed: int = 0):
        self.mode = caption_mode
        self.data = shapes.ShapesDataset(split, length=length, seed=seed,
                                         caption_mode=dataset_caption_mode(caption_mode))
        self.table = table  # attribute labels -> latent

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        attrs = self.data.attrs(i)
        caption = shapes.sample_caption(self.data.split, self.data.seed, i,
                                        self.data.caption_mode)
        rng = np.random.default_rng([self.data.seed, 78, i])  # a pure function of i
        caption = training_caption(caption, attrs, self.mode, rng)
        return {"latent": self.table[attrs.labels], "caption": caption}
