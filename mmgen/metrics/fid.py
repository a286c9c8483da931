"""Fréchet Inception Distance (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium"), with any feature extractor.

FID is the Fréchet distance (:mod:`mmgen.metrics.frechet`) between Gaussians fitted to the
features of real and generated images. Lower is better. It is biased upwards for small sample
counts, which is why the result prints ``FID@n``; compare numbers only at equal ``n`` and with
the same extractor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmgen.metrics.features import Extractor, as_feature_matrix, extract_features
from mmgen.metrics.frechet import feature_statistics, frechet_distance
from mmgen.metrics.reference import ReferenceStats
from mmgen.metrics.result import MetricResult

Features = torch.Tensor | np.ndarray


def _statistics(x: Features | ReferenceStats, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(mu, sigma, n) from features (N, D) or from cached reference statistics."""
    if isinstance(x, ReferenceStats):
        return x.mu, x.sigma, x.n
    feats = as_feature_matrix(x, what)
    if feats.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 {what}, got {feats.shape[0]}")
    mu, sigma = feature_statistics(feats)
    return mu, sigma, feats.shape[0]


def fid(real: Features | ReferenceStats, fake: Features | ReferenceStats) -> MetricResult:
    """FID between real and generated features.

    Args:
        real: real-image features ``(N, D)`` or their :class:`ReferenceStats`.
        fake: generated-image features ``(M, D)`` (or statistics).

    Returns:
        ``MetricResult("FID", value, n=M, n_ref=N)``.
    """
    mu1, s1, n_real = _statistics(real, "real features")
    mu2, s2, n_fake = _statistics(fake, "fake features")
    if mu1.shape != mu2.shape:
        raise ValueError(f"real features have dimension {mu1.shape[0]} but fake features "
                         f"{mu2.shape[0]}; extract both with the same extractor")
    return MetricResult("FID", frechet_distance(mu1, s1, mu2, s2), n=n_fake, n_ref=n_real)


def compute_fid(real: Any, fake: Any, extractor: Extractor, batch_size: int = 50,
                progress: bool = True) -> MetricResult:
    """FID from images: extract features of both sets with ``extractor``, then :func:`fid`.

    Args:
        real: real images (tensor, PIL list or iterable of batches) or cached
            :class:`ReferenceStats` computed with the same extractor.
        fake: generated images in the same forms.
        extractor: maps ``(B, 3, H, W)`` images in ``[0, 1]`` to ``(B, D)`` features, e.g.
            :class:`~mmgen.metrics.InceptionExtractor`.
        batch_size: images per forward pass.
        progress: show progress bars.
    """
    if not isinstance(real, ReferenceStats):
        real = extract_features(real, extractor, batch_size, progress)
    return fid(real, extract_features(fake, extractor, batch_size, progress))
