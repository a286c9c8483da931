"""Improved precision and recall (Kynkäänniemi et al., 2019, "Improved Precision and Recall
Metric for Assessing Generative Models").

Each set's manifold is approximated by balls around its samples whose radius is the distance to
the sample's k-th nearest neighbour within the same set. Then

    precision = fraction of generated samples inside the real manifold   (fidelity)
    recall    = fraction of real samples inside the generated manifold   (coverage)

The paper uses k = 3 on VGG-16 features of 50,000 images per set; any extractor works here.
"""

from __future__ import annotations

import numpy as np
import torch

from mmgen.metrics.features import check_same_dim
from mmgen.metrics.reference import ReferenceStats, stored_features
from mmgen.metrics.result import MetricResult

# Rows of the distance matrix computed at once: (1024, N) float64 is 8 MB per 1,000 samples.
_ROWS = 1024


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each sample (N, D) to its k-th nearest neighbour in the set, self excluded."""
    radii = []
    for start in range(0, features.shape[0], _ROWS):
        dist = torch.cdist(features[start:start + _ROWS], features)  # (B, N)
        # The smallest distance is the sample to itself (0), so the k-th neighbour is k + 1-th.
        radii.append(dist.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def manifold_coverage(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``points`` (M, D) inside at least one ball ``(centers (N, D), radii (N,))``."""
    inside = 0
    for start in range(0, points.shape[0], _ROWS):
        dist = torch.cdist(points[start:start + _ROWS], centers)  # (B, N)
        inside += int((dist <= radii[None]).any(dim=1).sum())
    return inside / points.shape[0]


def precision_recall(real: torch.Tensor | np.ndarray | ReferenceStats,
                     fake: torch.Tensor | np.ndarray, k: int = 3
                     ) -> tuple[MetricResult, MetricResult]:
    """k-NN precision and recall of generated features against real features.

    Args:
        real: real features ``(N, D)``, or :class:`ReferenceStats` that kept their features.
        fake: generated features ``(M, D)``.
        k: neighbourhood size of the manifold estimate (both sets need more than ``k`` samples).

    Returns:
        ``(precision, recall)`` as :class:`MetricResult`, each with ``n=M, n_ref=N``.
    """
    x, y = stored_features(real, "real"), stored_features(fake, "fake")
    check_same_dim(x, y)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    for what, feats in (("real", x), ("fake", y)):
        if feats.shape[0] <= k:
            raise ValueError(f"precision/recall with k={k} needs more than {k} {what} samples, "
                             f"got {feats.shape[0]}")
    precision = manifold_coverage(y, x, knn_radii(x, k))
    recall = manifold_coverage(x, y, knn_radii(y, k))
    n, n_ref = y.shape[0], x.shape[0]
    return (MetricResult("precision", precision, n=n, n_ref=n_ref),
            MetricResult("recall", recall, n=n, n_ref=n_ref))
