"""Turning images into features: input checks, batching, and batched extraction.

Every image metric starts here. Images are float ``(N, 3, H, W)`` in ``[0, 1]`` (``uint8`` in
``[0, 255]`` is accepted and scaled). They may come as one tensor, a list of PIL images (converted
to RGB), or any iterable of batches such as a ``DataLoader`` (a batch may be a tensor or a tuple
whose first element is the image tensor, like ``(images, labels)``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import pil_to_tensor
from tqdm.auto import tqdm

# A little slack for images that went through resizing/interpolation in float.
_RANGE_TOLERANCE = 1e-4

Extractor = Callable[[torch.Tensor], torch.Tensor]


def check_images(images: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Check a batch of images and return it as float in ``[0, 1]``.

    Args:
        images: ``(N, C, H, W)`` float in ``[0, 1]`` or ``uint8`` in ``[0, 255]``.
        channels: the required channel count ``C``.

    Raises:
        TypeError: not a tensor, or neither floating point nor ``uint8``.
        ValueError: wrong number of dimensions or channels, or values outside ``[0, 1]``.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected an image tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(
            f"expected images of shape (N, {channels}, H, W), got {tuple(images.shape)}")
    if images.shape[1] != channels:
        raise ValueError(
            f"expected {channels} channels (N, {channels}, H, W), got shape {tuple(images.shape)}; "
            "channels-last images need x.permute(0, 3, 1, 2), grayscale x.expand(-1, 3, -1, -1)"
        )
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise TypeError(f"expected float images in [0, 1] or uint8 in [0, 255], got {images.dtype}")
    if images.numel():
        lo, hi = images.min().item(), images.max().item()
        if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"expected float images in [0, 1], got values in [{lo:.3f}, {hi:.3f}]; "
                "map [-1, 1] images with (x + 1) / 2, and [0, 255] floats with x / 255"
            )
    return images


def _pil_batch(images: list[Image.Image]) -> torch.Tensor:
    """Stack PIL images (converted to RGB) into a uint8 tensor (N, 3, H, W)."""
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise ValueError(f"PIL images have different sizes {sorted(sizes)}; resize to one size")
    return torch.stack([pil_to_tensor(im.convert("RGB")) for im in images])


def _batch_tensor(batch: Any) -> torch.Tensor:
    """The image tensor of one item of an iterable of batches."""
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]  # (images, labels, ...) as a DataLoader yields them
    if isinstance(batch, torch.Tensor):
        return batch
    raise TypeError(
        f"each batch must be an image tensor or a tuple (images, ...), got {type(batch).__name__}"
    )


def count_batches(images: Any, batch_size: int) -> int | None:
    """Number of batches :func:`iter_image_batches` will yield, if it can be known up front."""
    if isinstance(images, torch.Tensor) or _is_pil_list(images):
        return math.ceil(len(images) / batch_size)
    return len(images) if hasattr(images, "__len__") else None


def _is_pil_list(images: Any) -> bool:
    return isinstance(images, (list, tuple)) and bool(images) and all(
        isinstance(im, Image.Image) for im in images)


def iter_image_batches(images: Any, batch_size: int = 50, channels: int = 3
                       ) -> Iterator[torch.Tensor]:
    """Yield checked float batches ``(B, C, H, W)`` in ``[0, 1]``.

    Args:
        images: a tensor ``(N, C, H, W)``, a list of PIL images, or an iterable of batches.
        batch_size: batch size for tensors and PIL lists (an iterable keeps its own batches).
        channels: the required channel count.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, torch.Tensor):
        check_images(images[:0], channels)  # shape errors before any work
        for start in range(0, len(images), batch_size):
            yield check_images(images[start:start + batch_size], channels)
    elif _is_pil_list(images):
        for start in range(0, len(images), batch_size):
            yield check_images(_pil_batch(list(images[start:start + batch_size])), channels)
    elif isinstance(images, Iterable):
        for batch in images:
            yield check_images(_batch_tensor(batch), channels)
    else:
        raise TypeError(f"cannot read images from {type(images).__name__}")


def _owner(fn: Any) -> Any:
    """The module behind a bound method such as ``extractor.logits``, else ``fn`` itself."""
    return getattr(fn, "__self__", fn)


def module_device(fn: Any) -> torch.device:
    """The device of a module's parameters (CPU for plain callables or parameter-free modules)."""
    fn = _owner(fn)
    if isinstance(fn, nn.Module):
        for p in fn.parameters():
            return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(fn: Any) -> Iterator[None]:
    """Put a module in eval mode (BatchNorm/Dropout frozen) and restore its mode afterwards."""
    fn = _owner(fn)
    was_training = isinstance(fn, nn.Module) and fn.training
    if isinstance(fn, nn.Module):
        fn.eval()
    try:
        yield
    finally:
        if was_training:
            fn.train()


@torch.no_grad()
def extract_features(images: Any, extractor: Extractor, batch_size: int = 50,
                     progress: bool = True) -> torch.Tensor:
    """Run ``extractor`` over all images in batches and return the features ``(N, D)``.

    Args:
        images: a tensor ``(N, 3, H, W)``, a list of PIL images, or an iterable of batches
            (see the module docstring); values in ``[0, 1]``.
        extractor: a callable or module mapping ``(B, 3, H, W)`` images to ``(B, D)`` features;
            modules run in eval mode on their own device.
        batch_size: images per forward pass (ignored for an iterable of batches).
        progress: show a tqdm progress bar.

    Returns:
        float32 features on the CPU, shape ``(N, D)``.
    """
    device = module_device(extractor)
    out: list[torch.Tensor] = []
    batches = iter_image_batches(images, batch_size)
    bar = tqdm(batches, total=count_batches(images, batch_size), desc="features",
               unit="batch", disable=not progress)
    with eval_mode(extractor):
        for batch in bar:
            feats = extractor(batch.to(device))
            if not isinstance(feats, torch.Tensor) or feats.shape[:1] != batch.shape[:1] \
                    or feats.ndim != 2:
                got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats)
                raise ValueError(
                    f"extractor must return features of shape ({len(batch)}, D), got {got}"
                )
            if out and feats.shape[1] != out[0].shape[1]:
                raise ValueError(f"extractor changed its feature size: {out[0].shape[1]} -> "
                                 f"{feats.shape[1]}")
            out.append(feats.float().cpu())
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)


def as_feature_matrix(features: torch.Tensor | np.ndarray, what: str = "features"
                      ) -> torch.Tensor:
    """Features as a float64 CPU tensor ``(N, D)``; ``what`` names them in errors."""
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor)
                        else features.detach())
    if x.ndim != 2:
        raise ValueError(f"{what} must have shape (N, D), got {tuple(x.shape)}")
    return x.to("cpu", torch.float64)


def check_same_dim(real: torch.Tensor, fake: torch.Tensor) -> None:
    """Raise if real and fake features have different dimensions."""
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real features have dimension {real.shape[1]} but fake features {fake.shape[1]}; "
            "extract both with the same extractor"
        )
