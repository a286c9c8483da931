"""CLIP's image preprocessing: open_clip's evaluation transform (resize, centre crop,
normalise with the image tower's mean and std).

Shapes: N batch, S the tower's ``image_size``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

# OpenAI's image normalisation (the statistics of CLIP's training images).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageSettings(Protocol):
    """What preprocessing reads from a config (:class:`mmgen.clip.VisionConfig` has it)."""

    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


def preprocess(images: Any, config: ImageSettings) -> torch.Tensor:
    """Images -> model input, as open_clip's evaluation transform: resize the shorter side to
    ``image_size`` (bicubic), centre-crop to a square, normalise with the config's mean/std.

    Args:
        images: a PIL image, a sequence of PIL images, or a float tensor in [0, 1] of shape
            (3, H, W) or (N, 3, H, W).
        config: the vision tower's config (image_size, image_mean, image_std).

    Returns:
        Float tensor (N, 3, image_size, image_size) on the input's device (CPU for PIL).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    size = config.image_size
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)  # (1, 3, H, W)
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"expected float images (N, 3, H, W) or (3, H, W) in [0, 1], got "
                             f"{images.dtype} of shape {tuple(images.shape)}")
        if images.shape[-2:] != (size, size):
            images = TF.resize(images, size, InterpolationMode.BICUBIC, antialias=True)
            images = TF.center_crop(images, [size, size]).clamp(0, 1)  # bicubic overshoots
        return normalize_images(images, config)
    pil = [images] if hasattr(images, "convert") else list(images)
    if not pil or not all(hasattr(im, "convert") for im in pil):
        raise TypeError("preprocess takes a PIL image, a list of PIL images or a tensor, got "
                        f"{type(images).__name__}")
    batch = [TF.to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), size,
                                                   InterpolationMode.BICUBIC), [size, size]))
             for im in pil]  # N x (3, S, S) in [0, 1]
    return normalize_images(torch.stack(batch), config)


def normalize_images(images: torch.Tensor, config: ImageSettings) -> torch.Tensor:
    """(images - mean) / std per channel for images (N, 3, H, W) in [0, 1]."""
    mean = torch.tensor(config.image_mean, device=images.device, dtype=images.dtype)
    std = torch.tensor(config.image_std, device=images.device, dtype=images.dtype)
    return (images - mean[:, None, None]) / std[:, None, None]
