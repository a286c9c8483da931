"""Metrics for generated images. Every reported number names its sample count (``FID@1000``).

Distribution metrics take features ``(N, D)`` from any extractor (:func:`extract_features`);
paired metrics (PSNR, SSIM) take image batches. See ``docs/metrics.md``.
"""

from mmgen.metrics.clip_score import (
    CLIPModel,
    ScoringCLIP,
    clip_score,
    clip_score_from_embeddings,
)
from mmgen.metrics.features import check_images, extract_features, iter_image_batches
from mmgen.metrics.fid import compute_fid, fid
from mmgen.metrics.flops import FlopCount, count_flops
from mmgen.metrics.frechet import feature_statistics, frechet_distance
from mmgen.metrics.inception import InceptionExtractor
from mmgen.metrics.inception_score import compute_inception_score, inception_score
from mmgen.metrics.kid import kid, mmd2_unbiased, polynomial_kernel
from mmgen.metrics.precision_recall import knn_radii, precision_recall
from mmgen.metrics.reconstruction import psnr, ssim
from mmgen.metrics.reference import ReferenceStats, default_cache_dir, reference_statistics
from mmgen.metrics.result import MetricResult
from mmgen.metrics.shapes import Adherence, ShapesFeatures, shapes_adherence, shapes_fid

__all__ = [
    "Adherence",
    "ShapesFeatures",
    "shapes_adherence",
    "shapes_fid",
    "CLIPModel",
    "FlopCount",
    "InceptionExtractor",
    "MetricResult",
    "ReferenceStats",
    "check_images",
    "ScoringCLIP",
    "clip_score",
    "clip_score_from_embeddings",
    "compute_fid",
    "compute_inception_score",
    "count_flops",
    "default_cache_dir",
    "extract_features",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "inception_score",
    "iter_image_batches",
    "kid",
    "knn_radii",
    "mmd2_unbiased",
    "polynomial_kernel",
    "precision_recall",
    "psnr",
    "reference_statistics",
    "ssim",
]
