"""Inception Score (Salimans et al., 2016, "Improved Techniques for Training GANs").

    IS = exp( E_x KL( p(y|x) || p(y) ) )

computed separately on ``splits`` consecutive chunks of the samples; the mean and (population)
standard deviation over chunks are reported, as in the original code (50,000 images, 10 splits).
It ranges from 1 (every image gets the same class distribution) to the number of classes
(confident and evenly spread predictions). Any classifier returning logits can be plugged in; the
number is only comparable to published ones with the original Inception network.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mmgen.metrics.features import Extractor, as_feature_matrix, extract_features
from mmgen.metrics.result import MetricResult


def inception_score(logits: torch.Tensor | np.ndarray, splits: int = 10) -> MetricResult:
    """Inception Score from classifier logits.

    Args:
        logits: ``(N, C)`` unnormalised class scores of the generated images.
        splits: number of consecutive chunks the score is computed on.

    Returns:
        ``MetricResult("IS", mean, n=N, std=std over splits)``.
    """
    log_p = as_feature_matrix(logits, "logits").log_softmax(dim=1)  # (N, C) log p(y|x)
    n = log_p.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"Inception Score needs 1 <= splits <= N, got splits={splits}, N={n}")
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]  # (B, C)
        log_marginal = part.logsumexp(dim=0) - math.log(part.shape[0])  # (C,) log p(y)
        kl = (part.exp() * (part - log_marginal)).sum(dim=1)  # (B,) KL(p(y|x) || p(y))
        scores.append(float(kl.mean().exp()))
    values = np.asarray(scores)
    return MetricResult("IS", float(values.mean()), n=n, std=float(values.std()))


def compute_inception_score(images: Any, classifier: Extractor, splits: int = 10,
                            batch_size: int = 50, progress: bool = True) -> MetricResult:
    """Inception Score from images: run ``classifier`` (images -> logits), then score.

    Args:
        images: generated images (tensor, PIL list or iterable of batches) in ``[0, 1]``.
        classifier: maps ``(B, 3, H, W)`` images to ``(B, C)`` logits.
        splits: number of chunks.
        batch_size: images per forward pass.
        progress: show a progress bar.
    """
    return inception_score(extract_features(images, classifier, batch_size, progress), splits)
