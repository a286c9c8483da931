"""The Shapes evaluation: does a generated image show what its prompt asked for?

``shapes_adherence`` reads the five attributes of each image with the bundled
``shapes-classifier`` and compares them with the attributes parsed from its prompt.
``shapes_fid`` is FID in the classifier's penultimate feature space (256-d), which knows
what Shapes images look like, unlike an ImageNet network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmgen.metrics.features import extract_features
from mmgen.metrics.fid import fid
from mmgen.metrics.result import MetricResult

CLASSIFIER = "shapes-classifier"


class ShapesFeatures(nn.Module):
    """Maps images in ``[0, 1]`` (N, 3, 64, 64) to the classifier's features or attributes."""

    def __init__(self, classifier: nn.Module | str = CLASSIFIER):
        super().__init__()
        if isinstance(classifier, str):
            from mmgen.hub import load

            classifier = load(classifier)
        self.classifier = classifier.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, 3, 64, 64) -> (N, 256)
        return self.classifier.forward_features(self._prepare(images))

    def attributes(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted label indices per attribute, ``{name: (N,)}``."""
        logits = self.classifier(self._prepare(images))
        return {name: out.argmax(1) for name, out in logits.items()}

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        size = self.classifier.config.input_size
        if images.shape[-2:] != (size, size):
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                               antialias=True, align_corners=False)
        return images * 2 - 1  # the classifier was trained on [-1, 1]


@dataclass(frozen=True)
class Adherence:
    """Shapes adherence: the fraction of images whose attributes all match the prompt."""

    all: MetricResult  # all five attributes right
    per_attribute: dict[str, float]  # rate per attribute
    correct: torch.Tensor  # (N, 5) bool: which attribute of which image was right

    def __str__(self) -> str:
        rates = ", ".join(f"{k} {v:.1%}" for k, v in self.per_attribute.items())
        return f"{self.all} ({rates})"


@torch.no_grad()
def shapes_adherence(images: Any, prompts: Sequence[str],
                     classifier: nn.Module | str = CLASSIFIER,
                     batch_size: int = 100, progress: bool = True) -> Adherence:
    """Check generated Shapes images against their prompts.

    Args:
        images: (N, 3, H, W) tensor in [0, 1], a list of PIL images, or batches of them.
        prompts: the N canonical captions the images were generated from (parsed with
            :func:`mmgen.data.shapes.parse`; a prompt that does not parse is an error).
        classifier: the attribute classifier (a loaded model or a bundled name).
        batch_size: images per classifier call.
        progress: show a progress bar.
    """
    from mmgen.data.shapes import ATTRIBUTES, parse

    wanted = torch.tensor([parse(p).labels for p in prompts])  # (N, 5)
    judge = ShapesFeatures(classifier)
    predicted = extract_features(
        images, lambda x: torch.stack([judge.attributes(x)[a] for a in ATTRIBUTES], 1),
        batch_size, progress).long()  # (N, 5)
    if predicted.shape != wanted.shape:
        raise ValueError(f"got {predicted.shape[0]} images for {wanted.shape[0]} prompts")
    correct = predicted == wanted
    rates = {a: correct[:, i].float().mean().item() for i, a in enumerate(ATTRIBUTES)}
    all_right = correct.all(1).float().mean().item()
    return Adherence(MetricResult("adherence", all_right, len(prompts)), rates, correct)


def shapes_fid(real: Any, fake: Any, classifier: nn.Module | str = CLASSIFIER,
               batch_size: int = 100, progress: bool = True) -> MetricResult:
    """FID in the Shapes classifier's feature space (printed as ``ShapesFID@n``).

    Args:
        real, fake: images in [0, 1] (tensor, PIL list or batches).
        classifier: the attribute classifier (a loaded model or a bundled name).
    """
    judge = ShapesFeatures(classifier)
    result = fid(extract_features(real, judge, batch_size, progress),
                 extract_features(fake, judge, batch_size, progress))
    return MetricResult("ShapesFID", result.value, result.n, n_ref=result.n_ref)
