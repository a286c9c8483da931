"""Measures of a style transfer that owe nothing to the network that made it.

A style transfer is trained and judged on feature statistics (Gram matrices, channel means and
deviations) of some network; these three numbers look at pixels instead, so they can confirm
(or contradict) what the feature losses say::

    color_histogram_distance(output, style)   # 0 = same colours, 1 = no colour in common
    texture_distance(output, style)           # 0 = same local texture statistics, up to 1
    structure_similarity(output, content)     # 1 = same (blurred) edges, 0 = unrelated

* Colour: chi-square distance ``0.5 * sum_i (p_i - q_i)^2 / (p_i + q_i)`` (in [0, 1]) between
  the joint RGB histograms of the two images, 8 x 8 x 8 bins (Swain & Ballard 1991, "Color
  Indexing"). Spatial layout plays no part.
* Texture: the mean of three chi-square distances between histograms of the luminance:
  uniform local binary patterns (Ojala, Pietikäinen & Mäenpää 2002; 8 neighbours at radius 1
  and at radius 3, 10 bins each) and Sobel gradient magnitudes (16 bins equally spaced in the
  square root of the magnitude on [0, 0.5], so finer near 0 where most pixels are; larger
  values in the last bin). LBPs see the local micro-pattern whatever its contrast; the
  gradient magnitudes see the contrast. Spatial layout plays no part.
* Structure: the Pearson correlation between the Sobel edge magnitudes of the two luminances,
  both first blurred by a Gaussian of ``sigma`` px, so that contours and large shapes count
  and fine texture (what a style adds) does not. An image without edges scores 0.

Luminance is NTSC Y (:data:`mmgen.style.color.RGB_TO_YIQ`). Images are float tensors in
[0, 1], ``(3, H, W)`` or a batch ``(N, 3, H, W)``; the second argument may be one image for
the whole batch. A batch gives the mean over its pairs. The histogram distances compare
distributions, so the two images may differ in size; ``structure_similarity`` compares
positions and needs equal sizes.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.feature import local_binary_pattern
from skimage.filters import gaussian, sobel

from mmgen.style.color import RGB_TO_YIQ

COLOR_BINS = 8  # per RGB channel: 8^3 = 512 joint bins
LBP_POINTS = 8  # neighbours of a local binary pattern ("uniform": P + 2 = 10 codes)
LBP_RADII = (1, 3)  # px: the finest texture and a slightly coarser one
GRADIENT_BINS = 16  # histogram of Sobel magnitudes, equal steps of sqrt(magnitude)
GRADIENT_MAX = 0.5  # skimage's Sobel of a 0 -> 1 step edge is 0.71; photos' 99th percentile
#   is 0.2-0.45 (larger values land in the last bin)


def chi_square(p: np.ndarray, q: np.ndarray) -> float:
    """``0.5 * sum_i (p_i - q_i)^2 / (p_i + q_i)`` of two histograms that each sum to 1
    (bins empty in both are skipped): 0 for equal histograms, 1 for disjoint ones."""
    total = p + q
    used = total > 0
    return float(0.5 * np.sum((p[used] - q[used]) ** 2 / total[used]))


def color_histogram_distance(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Chi-square distance between 8 x 8 x 8-bin joint RGB histograms, in [0, 1].

    Args:
        images: (N, 3, H, W) or (3, H, W), in [0, 1].
        reference: (N or 1, 3, H', W') or (3, H', W'), in [0, 1]; sizes may differ.

    Returns:
        The mean distance over the pairs: 0 for images with the same colour distribution.
    """
    return _mean_over_pairs(images, reference, lambda a, b: chi_square(
        _color_histogram(a), _color_histogram(b)))


def texture_distance(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean chi-square distance between local-binary-pattern histograms (radii 1 and 3) and
    Sobel-magnitude histograms of the luminances, in [0, 1].

    Args:
        images: (N, 3, H, W) or (3, H, W), in [0, 1].
        reference: (N or 1, 3, H', W') or (3, H', W'), in [0, 1]; sizes may differ.

    Returns:
        The mean distance over the pairs: 0 for images with the same texture statistics.
    """
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        ha, hb = _texture_histograms(_luminance(a)), _texture_histograms(_luminance(b))
        return float(np.mean([chi_square(p, q) for p, q in zip(ha, hb, strict=True)]))

    return _mean_over_pairs(images, reference, distance)


def structure_similarity(images: torch.Tensor, reference: torch.Tensor,
                         sigma: float = 2.0) -> float:
    """Pearson correlation between the Sobel edge magnitudes of the two luminances, each
    blurred by a Gaussian of ``sigma`` px first: 1 for the same contours, about 0 for
    unrelated images.

    Args:
        images: (N, 3, H, W) or (3, H, W), in [0, 1].
        reference: (N or 1, 3, H, W) or (3, H, W), in [0, 1]: the same size as ``images``.
        sigma: blur in pixels; style strokes finer than about this do not count (2 px suits
            256 px images).

    Returns:
        The mean correlation over the pairs, in [-1, 1].
    """
    if images.shape[-2:] != reference.shape[-2:]:
        raise ValueError(f"structure_similarity compares positions, so both images need the "
                         f"same size; got {tuple(images.shape[-2:])} and "
                         f"{tuple(reference.shape[-2:])} (resize one first)")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 px, got {sigma}")

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        ea = sobel(gaussian(_luminance(a), sigma)).ravel()  # (H * W,)
        eb = sobel(gaussian(_luminance(b), sigma)).ravel()
        ea, eb = ea - ea.mean(), eb - eb.mean()
        norm = np.sqrt(np.sum(ea ** 2) * np.sum(eb ** 2))
        return float(np.sum(ea * eb) / norm) if norm > 0 else 0.0

    return _mean_over_pairs(images, reference, correlation)


# ----------------------------------------------------------------------------- helpers


def _as_batch(images: torch.Tensor, name: str) -> np.ndarray:
    """(N, H, W, 3) float64 numpy array of a [0, 1] image tensor or batch; clear errors."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4) \
            or images.shape[-3] != 3 or not images.is_floating_point():
        got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ValueError(f"{name} must be float RGB images (3, H, W) or (N, 3, H, W) in "
                         f"[0, 1], got {got}; divide uint8 images by 255")
    batch = images.detach().double().cpu().reshape(-1, *images.shape[-3:])
    lo, hi = float(batch.min()), float(batch.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name} values lie in [{lo:.3f}, {hi:.3f}], outside [0, 1]; clamp "
                         "the images (e.g. out.clamp(0, 1)) or divide by 255")
    return batch.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _mean_over_pairs(images: torch.Tensor, reference: torch.Tensor, fn) -> float:
    a, b = _as_batch(images, "images"), _as_batch(reference, "reference")
    if len(b) not in (1, len(a)):
        raise ValueError(f"reference must hold one image per image or one for all: got "
                         f"{len(b)} reference images for {len(a)} images")
    return float(np.mean([fn(x, b[i % len(b)]) for i, x in enumerate(a)]))


def _luminance(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) NTSC luminance in [0, 1]."""
    return image @ RGB_TO_YIQ[0].numpy()


def _color_histogram(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> the normalised (512,) joint histogram of 8 bins per channel."""
    q = np.minimum((image * COLOR_BINS).astype(np.int64), COLOR_BINS - 1)  # (H, W, 3)
    index = (q[..., 0] * COLOR_BINS + q[..., 1]) * COLOR_BINS + q[..., 2]  # (H, W)
    counts = np.bincount(index.ravel(), minlength=COLOR_BINS ** 3).astype(np.float64)
    return counts / counts.sum()


def _texture_histograms(luma: np.ndarray) -> list[np.ndarray]:
    """Normalised histograms of uniform LBP codes (one per radius) and Sobel magnitudes."""
    gray = np.round(luma * 255).astype(np.uint8)  # LBP on floats would split hairs
    histograms = []
    for radius in LBP_RADII:
        codes = local_binary_pattern(gray, LBP_POINTS, radius, method="uniform")  # 0..P+1
        counts = np.bincount(codes.astype(np.int64).ravel(), minlength=LBP_POINTS + 2)
        histograms.append(counts / counts.sum())
    root = np.sqrt(np.minimum(sobel(luma), GRADIENT_MAX))  # (H, W)
    counts, _ = np.histogram(root, bins=GRADIENT_BINS, range=(0.0, np.sqrt(GRADIENT_MAX)))
    histograms.append(counts / counts.sum())
    return histograms
