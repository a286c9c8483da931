"""Classifying image files with a saved classifier (what ``mmgen classify`` runs).

A bundled classifier carries its preprocessing in ``model.info["preprocess"]`` (input size,
channels, normalisation, whether to invert light backgrounds as for MNIST-style digits) and
its class names in ``model.info["labels"]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmgen.data.folder import UnreadableImageError, open_image


def load_image(path: str | os.PathLike, preprocess: dict[str, Any]) -> torch.Tensor:
    """Read ``path`` and turn it into the model's input (C, H, W), normalised.

    Raises:
        ValueError: the file is not a readable image, or it is smaller than the model input.
    """
    try:
        image = open_image(path, "L" if preprocess["channels"] == 1 else "RGB")
    except UnreadableImageError as e:
        raise ValueError(str(e)) from None
    size = preprocess["size"]
    if min(image.size) < size:
        raise ValueError(f"{path}: image is {image.size[0]}x{image.size[1]} px; this model "
                         f"needs at least {size}x{size}")
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)  # (C, H, W) in [0, 1]
    if preprocess.get("invert_light_background") and x.mean() > 0.5:
        x = 1.0 - x  # MNIST digits are light on dark
    mean = torch.tensor(preprocess["mean"]).view(-1, 1, 1)
    std = torch.tensor(preprocess["std"]).view(-1, 1, 1)
    return (x - mean) / std


def _top(probs: torch.Tensor, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    values, indices = probs.topk(min(k, probs.numel()))
    return [{"label": labels[i], "prob": round(v, 6)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


@torch.no_grad()
def classify_files(paths: Sequence[str | os.PathLike], net: nn.Module,
                   top_k: int = 1) -> list[dict[str, Any]]:
    """Predict each image's class (or, for multi-head models, each attribute).

    Args:
        paths: image files.
        net: a classifier saved by a classifier recipe (``mmgen.load("mnist-lenet5")``).
        top_k: how many classes to report per image (per attribute).

    Returns:
        One dict per file: ``{"file", "top": [{"label", "prob"}, ...]}``, or
        ``{"file", "attributes": {name: [{"label", "prob"}, ...]}}`` for multi-head models,
        or ``{"file", "error": why}`` for a file that could not be used (the others are
        still classified).
    """
    info = getattr(net, "info", {})
    if "preprocess" not in info or "labels" not in info:
        name = getattr(net, "model_name", None) or type(net).__name__
        raise ValueError(f"{name} does not record its preprocessing and labels; it was not "
                         "saved by a classifier recipe")
    inputs, rows = [], []
    for path in paths:
        try:
            inputs.append(load_image(path, net.info["preprocess"]))
            rows.append({"file": str(path)})
        except ValueError as e:  # this file only: the others are still classified
            rows.append({"file": str(path), "error": str(e)})
    if not inputs:
        return rows
    logits = net(torch.stack(inputs))
    labels = net.info["labels"]
    for n, row in enumerate(r for r in rows if "error" not in r):
        if isinstance(logits, dict):
            row["attributes"] = {a: _top(logits[a][n].softmax(-1), labels[a], top_k)
                                 for a in logits}
        else:
            row["top"] = _top(logits[n].softmax(-1), labels, top_k)
    return rows
