"""Losses of optimisation-based style transfer (Gatys et al. 2016, "Image Style Transfer Using
Convolutional Neural Networks"), as pure functions of feature maps.

Feature dicts map layer names to activations (N, C_l, H_l, W_l), as returned by
:class:`mmgen.style.features.FeatureNetwork`. :class:`StyleTargets` computes what the
optimisation compares against (content features, blended style Grams) once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# (images (N, 3, H, W), layer names) -> {name: (N, C_l, H_l, W_l)}
FeatureFn = Callable[[torch.Tensor, Sequence[str]], dict[str, torch.Tensor]]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of channel correlations, normalised by C * H * W.

    Gatys et al. 2016, eq. 3 define G_ij = sum_k F_ik F_jk over the M = H * W positions and
    divide the squared error by 4 N^2 M^2 (eq. 4, N = C channels). Dividing G itself by
    N * M = C * H * W keeps the same relative layer weighting, makes G independent of the
    image size (so styles of any size compare and blend) and keeps values O(1 / C):
    Gatys' E_l equals C^2 / 4 times the mean squared error of these normalised Grams.

    Args:
        features: (N, C, H, W).

    Returns:
        (N, C, C), symmetric.
    """
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)  # (N, C, M)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)  # (N, C, C)


def style_loss(features: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
               layer_weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """Sum over layers of w_l * MSE(Gram(features_l), target_l) (Gatys et al. 2016, eq. 5).

    Args:
        features: {layer: (N, C, H, W)} of the image being optimised.
        target_grams: {layer: (N or 1, C, C)} style Grams; only these layers are used.
        layer_weights: w_l per layer; ``None`` gives every layer 1 / L (the paper's choice).
    """
    weights = layer_weights or {name: 1.0 / len(target_grams) for name in target_grams}
    total = features[next(iter(target_grams))].new_zeros(())
    for name, target in target_grams.items():
        gram = gram_matrix(features[name])  # (N, C, C)
        total = total + weights[name] * F.mse_loss(gram, target.expand_as(gram))
    return total


def content_loss(features: Mapping[str, torch.Tensor],
                 target_features: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum over layers of MSE(features_l, target_l) (Gatys et al. 2016, eq. 1, as a mean
    instead of half a sum, so the value does not grow with the image size).

    Args:
        features: {layer: (N, C, H, W)} of the image being optimised.
        target_features: {layer: (N, C, H, W)} of the content image; only these layers count.
    """
    total = features[next(iter(target_features))].new_zeros(())
    for name, target in target_features.items():
        total = total + F.mse_loss(features[name], target)
    return total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Squared total variation (Mahendran & Vedaldi 2015, R_V^beta with beta = 2), as means:
    mean((x[i+1, j] - x[i, j])^2) + mean((x[i, j+1] - x[i, j])^2).

    0 for a constant image; a^2 for a ramp rising by a per pixel along one axis.

    Args:
        images: (N, C, H, W), H and W >= 2.
    """
    dy = images[:, :, 1:, :] - images[:, :, :-1, :]  # (N, C, H-1, W)
    dx = images[:, :, :, 1:] - images[:, :, :, :-1]  # (N, C, H, W-1)
    return dy.square().mean() + dx.square().mean()


@dataclass
class StyleTargets:
    """What the optimisation matches: content features and (blended) style Grams."""

    content: dict[str, torch.Tensor]  # {layer: (1, C, H, W)} of the content image
    grams: dict[str, torch.Tensor]  # {layer: (1, C, C)}: sum_s blend_s * Gram(style_s)

    @classmethod
    @torch.no_grad()
    def compute(cls, features: FeatureFn, content: torch.Tensor,
                styles: Sequence[torch.Tensor], content_layers: Sequence[str],
                style_layers: Sequence[str],
                blend: Sequence[float] | None = None) -> StyleTargets:
        """Run the feature network once on the content and once per style image.

        Args:
            features: the feature network, ``features(images, layers) -> {name: map}``.
            content: (1, 3, H, W) in [0, 1].
            styles: style images, each (1, 3, H_s, W_s) in [0, 1]; sizes may differ.
            content_layers, style_layers: layer names.
            blend: one non-negative weight per style image (normalised to sum 1): the Grams
                are mixed, as Gatys et al. 2016 mix two styles; ``None``: equal weights.
        """
        if not styles:
            raise ValueError("StyleTargets needs at least one style image")
        weights = torch.tensor([1.0] * len(styles) if blend is None else list(blend),
                               dtype=torch.float64)
        if len(weights) != len(styles) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"blend needs {len(styles)} non-negative weight(s), one per style "
                             f"image, with a positive sum; got {list(blend or [])}")
        weights = weights / weights.sum()
        grams: dict[str, torch.Tensor] = {}
        for style, weight in zip(styles, weights.tolist(), strict=True):
            maps = features(style, style_layers)
            for name in style_layers:
                gram = weight * gram_matrix(maps[name]).mean(0, keepdim=True)  # (1, C, C)
                grams[name] = grams[name] + gram if name in grams else gram
        return cls(content=dict(features(content, content_layers)), grams=grams)
