"""Kernel Inception Distance (Bińkowski et al., 2018, "Demystifying MMD GANs").

KID is the unbiased estimate of the squared maximum mean discrepancy (Gretton et al., 2012,
eq. 3) between real and generated features, with the cubic polynomial kernel

    k(x, y) = (x·y / d + 1)³        (d = feature dimension)

averaged over random subsets of ``subset_size`` real and generated samples; the spread over
subsets is reported as ``std``. Unlike FID it is unbiased in the sample count, but still noisy for
small sets. Same estimator and defaults as torchmetrics' ``KernelInceptionDistance``.
"""

from __future__ import annotations

import numpy as np
import torch

from mmgen.metrics.features import check_same_dim
from mmgen.metrics.reference import ReferenceStats, stored_features
from mmgen.metrics.result import MetricResult


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x·y / d + 1)³ for all pairs: (M, D), (N, D) -> (M, N)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² between samples ``x`` (M, D) and ``y`` (N, D), polynomial kernel.

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (M(M-1)) + Σ_{i≠j} k(y_i, y_j) / (N(N-1)) − 2 mean k(x_i, y_j)
    """
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * polynomial_kernel(x, y).mean())


def kid(real: torch.Tensor | np.ndarray | ReferenceStats, fake: torch.Tensor | np.ndarray,
        subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> MetricResult:
    """KID between real and generated features: mean and std of MMD² over random subsets.

    Args:
        real: real features ``(N, D)``, or :class:`ReferenceStats` that kept their features.
        fake: generated features ``(M, D)``.
        subsets: number of random subsets.
        subset_size: samples per subset, drawn without replacement from each set
            (at most ``min(N, M)``).
        seed: seed of the subset draws, so the result is reproducible.

    Returns:
        ``MetricResult("KID", mean, n=M, std=population std over subsets, n_ref=N)``.
    """
    x, y = stored_features(real, "real"), stored_features(fake, "fake")
    check_same_dim(x, y)
    if subset_size < 2 or subsets < 1:
        raise ValueError(f"KID needs subset_size >= 2 and subsets >= 1, got {subset_size}, "
                         f"{subsets}")
    for what, feats in (("real", x), ("fake", y)):
        if feats.shape[0] < subset_size:
            raise ValueError(
                f"KID subset_size={subset_size} is larger than the {what} set "
                f"({feats.shape[0]} samples); lower subset_size or use more samples"
            )
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        # Same draw order as torchmetrics (real permutation, then fake), so a shared seed
        # picks the same subsets.
        xs = x[torch.randperm(x.shape[0], generator=gen)[:subset_size]]
        ys = y[torch.randperm(y.shape[0], generator=gen)[:subset_size]]
        scores.append(mmd2_unbiased(xs, ys))
    values = np.asarray(scores)
    return MetricResult("KID", float(values.mean()), n=y.shape[0], std=float(values.std()),
                        n_ref=x.shape[0])
