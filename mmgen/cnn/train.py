"""Training and evaluating classifiers: the objective, augmentation and accuracy.

The objective plugs into :class:`mmgen.train.Trainer`; batches are ``(images, labels)`` for
single-label data, or ``(images, {attribute: labels})`` for multi-head classifiers (the
Shapes attribute classifier), whose models return ``{attribute: logits}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


@dataclass
class ClassificationObjective:
    """Cross-entropy (summed over heads for multi-head models), with accuracy logged."""

    label_smoothing: float = 0.0  # label smoothing of the cross-entropy

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = model(images)
        if isinstance(logits, torch.Tensor):
            logits, labels = {"": logits}, {"": labels}
        out: dict[str, torch.Tensor] = {}
        losses = []
        for name, head_logits in logits.items():
            losses.append(F.cross_entropy(head_logits, labels[name],
                                          label_smoothing=self.label_smoothing))
            key = f"acc_{name}" if name else "acc"
            out[key] = (head_logits.argmax(1) == labels[name]).float().mean()
        out["loss"] = torch.stack(losses).sum()
        return out


class Augmented(Dataset):
    """Wrap ``(image, label)`` items: map the image through ``transform`` (draws from torch's
    global RNG, which the Trainer checkpoints, so resumed runs see the same augmentations)."""

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, label = self.dataset[i]
        return self.transform(image), label


def affine_augmentation(degrees: float = 10.0, translate: float = 0.1,
                        scale: tuple[float, float] = (0.9, 1.1)) -> v2.Transform:
    """Small random rotations, shifts and zooms: the classic augmentation for digits."""
    return v2.RandomAffine(degrees=degrees, translate=(translate, translate), scale=scale)


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> Any:
    """Stack the model's outputs over ``dataset`` (eval mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    outputs = []
    for images, _ in DataLoader(dataset, batch_size=batch_size):
        outputs.append(model(images))
    model.train(was_training)
    if isinstance(outputs[0], dict):
        return {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
    return torch.cat(outputs)


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Top-1 accuracy on ``dataset``: ``{"accuracy": a}``, or one entry per head."""
    logits = predict(model, dataset, batch_size)
    labels = [label for _, label in DataLoader(dataset, batch_size=batch_size)]
    if isinstance(logits, dict):
        return {name: (head.argmax(1) == torch.cat([lab[name] for lab in labels]))
                .float().mean().item() for name, head in logits.items()}
    return {"accuracy": (logits.argmax(1) == torch.cat(labels)).float().mean().item()}
