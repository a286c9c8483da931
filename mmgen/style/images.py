"""Images in and out of style transfer: the one tensor check and the size check (the
conversions of what users hand in, any PIL mode to RGB and PIL <-> tensor, are in
:mod:`mmgen.data.images`)."""

from __future__ import annotations

import torch
from PIL import Image

from mmgen.limits import MAX_INPUT_PIXELS

MIN_SIDE = 32  # smallest input image side: below it, too little to stylise or copy a style from


def check_images(images: torch.Tensor, name: str, owner: str, min_size: int = 1,
                 value_range: str = "[0, 1]") -> torch.Tensor:
    """``images`` if it is a float RGB batch (N, 3, H, W) with H, W >= ``min_size``; a
    ``ValueError`` saying what was wrong and how to fix it otherwise.

    Args:
        images: the tensor to check.
        name: what it is, for the message ("content", "style", "images").
        owner: who expects it, for the message ("gatys", "TransformerNet", "AdaIN").
        min_size: smallest H and W the owner can process.
        value_range: the range the owner expects, for the message.
    """
    is_tensor = isinstance(images, torch.Tensor)
    if not is_tensor or images.ndim != 4 or images.shape[1] != 3 \
            or min(images.shape[-2:]) < min_size:
        shape = tuple(images.shape) if is_tensor else type(images).__name__
        sides = f" with H, W >= {min_size}" if min_size > 1 else ""
        hint = "; add a batch dimension with x[None]" if is_tensor and images.ndim == 3 else ""
        raise ValueError(f"{owner} expects {name} of shape (N, 3, H, W){sides}, got {shape}: "
                         f"RGB images in {value_range}{hint}")
    if not images.is_floating_point():
        raise ValueError(f"{owner} expects {name} as a float tensor in {value_range}, got "
                         f"{images.dtype}; convert uint8 images with x.float() (/ 255 for "
                         "[0, 1])")
    return images


def check_size(image: Image.Image, what: str, min_side: int = MIN_SIDE) -> None:
    """A ``ValueError`` with the sizes if ``image`` is smaller than ``min_side`` a side or
    larger than ``MMGEN_MAX_INPUT_PIXELS`` (:mod:`mmgen.limits`)."""
    w, h = image.size
    if min(w, h) < min_side:
        raise ValueError(f"{what} is {w}x{h} px; style transfer needs images of at least "
                         f"{min_side} px a side")
    MAX_INPUT_PIXELS.check(w * h, f"{what}: image size {w}x{h} ({w * h:,} pixels)")


