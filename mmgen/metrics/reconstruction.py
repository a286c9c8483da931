"""Paired image metrics: PSNR and SSIM, computed per image pair and averaged over pairs.

* PSNR = 10 log10(R² / MSE), R the data range (identical images give ``inf``).
* SSIM (Wang et al., 2004, "Image Quality Assessment: From Error Visibility to Structural
  Similarity") with the paper's 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03.

Both come from ``torchmetrics.functional``; this module adds the input checks and the
per-image averaging convention (``dim=(1, 2, 3)`` for PSNR, so each pair counts once).
Border convention (torchmetrics'): the SSIM map is computed on reflect-padded images and averaged
over the whole image; Wang's MATLAB code and scikit-image average only the interior the window
fits in, which differs slightly (~1e-3) on small images.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from mmgen.metrics.result import MetricResult

SSIM_WINDOW = 11  # Gaussian window size of Wang et al. (2004)
SSIM_SIGMA = 1.5  # its standard deviation


def _check_pair(preds: torch.Tensor, target: torch.Tensor, data_range: float) -> None:
    """Same-shape float batches (N, C, H, W) with values in [0, data_range]."""
    if not (isinstance(preds, torch.Tensor) and isinstance(target, torch.Tensor)):
        raise TypeError("preds and target must be tensors (N, C, H, W)")
    if preds.ndim != 4 or preds.shape != target.shape:
        raise ValueError(f"preds and target must have the same shape (N, C, H, W), got "
                         f"{tuple(preds.shape)} and {tuple(target.shape)}")
    if not (preds.is_floating_point() and target.is_floating_point()):
        raise TypeError(f"expected float images, got {preds.dtype} and {target.dtype}; "
                        "convert uint8 with x.float() / 255 and data_range=1.0")
    for what, x in (("preds", preds), ("target", target)):
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > data_range * (1 + 1e-4):
            raise ValueError(f"{what} values lie in [{lo:.3f}, {hi:.3f}], outside [0, "
                             f"{data_range}]; rescale the images or pass the right data_range")


def psnr(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> MetricResult:
    """Peak signal-to-noise ratio in dB, averaged over image pairs.

    Args:
        preds: ``(N, C, H, W)`` reconstructed/generated images in ``[0, data_range]``.
        target: ``(N, C, H, W)`` reference images.
        data_range: the maximum possible value (1.0 for float images, 255.0 for 8-bit scale).
    """
    _check_pair(preds, target, data_range)
    per_image = peak_signal_noise_ratio(preds, target, data_range=data_range,
                                        reduction="none", dim=(1, 2, 3))  # (N,)
    return MetricResult("PSNR", float(per_image.mean()), n=preds.shape[0])


def ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> MetricResult:
    """Structural similarity (Gaussian window 11, σ = 1.5), averaged over image pairs.

    Args:
        preds: ``(N, C, H, W)`` images in ``[0, data_range]``, H and W at least 11.
        target: ``(N, C, H, W)`` reference images.
        data_range: the maximum possible value.
    """
    _check_pair(preds, target, data_range)
    if min(preds.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {tuple(preds.shape[-2:])}")
    per_image = structural_similarity_index_measure(
        preds, target, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_WINDOW,
        data_range=data_range, reduction="none")  # (N,)
    return MetricResult("SSIM", float(per_image.mean()), n=preds.shape[0])
