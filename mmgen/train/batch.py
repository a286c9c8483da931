"""The batch forms objectives accept: an image tensor, an ``(images, labels)`` pair (what
``default_collate`` makes of ``(image, label)`` samples, e.g. :class:`mmgen.data.MNIST`) or a
dict with ``"image"`` and optionally ``"label"``."""

from __future__ import annotations

from typing import Any

import torch


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images (B, C, H, W), labels (B, K) or None): a (B,) label becomes (B, 1)."""
    if isinstance(batch, dict):
        images, labels = batch["image"], batch.get("label")
    elif isinstance(batch, (tuple, list)):
        images, labels = batch
    else:
        images, labels = batch, None
    if labels is not None and labels.ndim == 1:
        labels = labels[:, None]  # (B, 1): one condition
    return images, labels
