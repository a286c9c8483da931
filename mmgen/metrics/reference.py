"""Reference statistics of real data, computed once and cached on disk.

Extracting features of 50,000 real images takes far longer than the metric itself, so the
statistics (mean, covariance and optionally the features) are stored under a key naming
everything they depend on: dataset, split, image size, feature extractor and sample count.

Files are ``.safetensors`` (tensors only, nothing to unpickle), written atomically, in
``$MMGEN_CACHE/stats`` (default ``~/.cache/mmgen/stats``) unless a ``cache_dir`` is given.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from mmgen.checkpoint import atomic_path
from mmgen.metrics.features import as_feature_matrix
from mmgen.metrics.frechet import feature_statistics


def default_cache_dir() -> Path:
    """``$MMGEN_CACHE/stats`` if the variable is set, else ``~/.cache/mmgen/stats``."""
    root = os.environ.get("MMGEN_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mmgen") / "stats"


@dataclass(eq=False)
class ReferenceStats:
    """Feature statistics of a reference (real) image set."""

    mu: np.ndarray  # (D,) float64 feature mean
    sigma: np.ndarray  # (D, D) float64 feature covariance (unbiased)
    n: int  # number of images the statistics were computed from
    features: np.ndarray | None = None  # (N, D) float32, kept for KID and precision/recall

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray,
                      keep_features: bool = False) -> ReferenceStats:
        """Statistics of ``features`` (N, D); keep the features themselves if asked."""
        x = as_feature_matrix(features, "reference features")
        mu, sigma = feature_statistics(x)
        kept = x.numpy().astype(np.float32) if keep_features else None
        return cls(mu=mu, sigma=sigma, n=x.shape[0], features=kept)

    @staticmethod
    def cache_key(dataset: str, split: str, size: int | tuple[int, int], extractor: str,
                  n: int) -> str:
        """A file-name-safe key naming everything the statistics depend on.

        Args:
            dataset: dataset name, e.g. ``"cifar10"``.
            split: dataset split, e.g. ``"train"``.
            size: image resolution the images were resized to (int or ``(H, W)``).
            extractor: a name identifying the feature extractor *and its weights*.
            n: number of reference images.
        """
        fields = (dataset, split, size, extractor, n)
        size_text = "x".join(map(str, size)) if isinstance(size, tuple) else str(size)
        readable = f"{dataset}-{split}-{size_text}px-{extractor}-n{n}"
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable)
        # The hash of the exact fields keeps keys distinct even where sanitising collides.
        digest = hashlib.sha1(repr(fields).encode()).hexdigest()[:8]
        return f"{readable}-{digest}"

    def save(self, path: str | os.PathLike) -> None:
        """Write to a ``.safetensors`` file atomically."""
        tensors = {"mu": self.mu, "sigma": self.sigma}
        if self.features is not None:
            tensors["features"] = self.features
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"n": str(self.n)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceStats:
        """Read statistics written by :meth:`save`."""
        with safe_open(str(path), framework="np") as f:
            names = set(f.keys())
            if not {"mu", "sigma"} <= names:
                raise ValueError(f"{path} is not a reference-statistics file (has {sorted(names)})")
            meta = f.metadata() or {}
            if "n" not in meta:
                raise ValueError(f"{path} lacks the sample count 'n' in its metadata")
            n = int(meta["n"])
            features = f.get_tensor("features") if "features" in names else None
            return cls(mu=f.get_tensor("mu"), sigma=f.get_tensor("sigma"), n=n,
                       features=features)


def reference_statistics(key: str, compute_fn: Callable[[], torch.Tensor | np.ndarray],
                         cache_dir: str | os.PathLike | None = None,
                         keep_features: bool = False) -> ReferenceStats:
    """Load cached statistics for ``key``, or compute them with ``compute_fn`` and cache them.

    Args:
        key: from :meth:`ReferenceStats.cache_key`.
        compute_fn: returns the reference features ``(N, D)``; called only on a cache miss.
        cache_dir: where the files live; ``None`` means :func:`default_cache_dir`.
        keep_features: also store the features (needed for KID and precision/recall). A cached
            file without features is recomputed when they are asked for.
    """
    if not key or re.search(r"[^A-Za-z0-9._-]", key):
        raise ValueError(f"invalid cache key {key!r}; build it with ReferenceStats.cache_key")
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{key}.safetensors"
    if path.is_file():
        stats = ReferenceStats.load(path)
        if not keep_features or stats.features is not None:
            return stats
    stats = ReferenceStats.from_features(compute_fn(), keep_features=keep_features)
    stats.save(path)
    return stats


def stored_features(x: torch.Tensor | np.ndarray | ReferenceStats, what: str) -> torch.Tensor:
    """Features (N, D) as float64, from a tensor/array or from statistics that kept them."""
    if isinstance(x, ReferenceStats):
        if x.features is None:
            raise ValueError(
                f"these {what} statistics were stored without features, which this metric needs; "
                "compute them with reference_statistics(..., keep_features=True)"
            )
        x = x.features
    return as_feature_matrix(x, what)
