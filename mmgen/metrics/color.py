"""Measures of colorization (issue #20), on RGB images (1, 3, H, W) in [0, 1]:

* :func:`psnr` and :func:`ssim` against the true colour photo (scikit-image's, on the
  8-bit-quantised images; SSIM over the three channels, a 7 px window);
* :func:`colorfulness`: Hasler & Suesstrunk 2003, "Measuring colourfulness in natural
  images": with rg = R - G and yb = (R + G) / 2 - B on the 0..255 scale,
  M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2); 0 for a gray image,
  about 33 "moderately", 59 "quite", 82 "highly" colourful (their Table 2);
* :func:`ab_histogram_distance`: how far apart two images' colour distributions are, the
  chi-square distance of their 2-D ab histograms (CIE Lab; bins of 10 over
  [-110, 110]^2, each normalised to sum 1; 0: the same, 2: disjoint), with pixels of
  chroma < 5 (near-gray) left out, so that what is compared is the palette.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mmgen.color.lab import AB_RANGE, BIN_STEP, rgb_to_lab

GRAY_CHROMA = 5.0  # ab histograms leave out pixels of chroma below this


def _uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> uint8 (H, W, 3)."""
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image (1, 3, H, W), got {tuple(image.shape)}")
    pixels = (image[0].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of ``image`` against ``target`` (8-bit)."""
    return float(peak_signal_noise_ratio(_uint8(target), _uint8(image), data_range=255))


def ssim(image: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM of ``image`` against ``target`` (8-bit, per channel, averaged)."""
    return float(structural_similarity(_uint8(target), _uint8(image), channel_axis=2,
                                       data_range=255))


def colorfulness(image: torch.Tensor) -> float:
    """Hasler & Suesstrunk's colourfulness M (module docstring)."""
    rgb = _uint8(image).astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ab_histogram(image: torch.Tensor) -> np.ndarray:
    """The normalised ab histogram (22, 22) of ``image``'s pixels of chroma >= GRAY_CHROMA
    (all zeros for a gray image)."""
    ab = rgb_to_lab(image.float())[0, 1:].flatten(1).numpy()  # (2, H * W)
    ab = ab[:, np.hypot(*ab) >= GRAY_CHROMA]
    edges = np.arange(-AB_RANGE, AB_RANGE + 1, BIN_STEP)  # 23 edges
    hist, _, _ = np.histogram2d(ab[0], ab[1], bins=[edges, edges])
    return hist / max(hist.sum(), 1.0)


def ab_histogram_distance(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Chi-square distance sum (p - q)^2 / (p + q) of the two images' ab histograms."""
    p, q = ab_histogram(image), ab_histogram(reference)
    both = (p + q) > 0
    return float(((p - q)[both] ** 2 / (p + q)[both]).sum())
