"""Colour preservation for style transfer (Gatys, Bethge, Hertzmann & Shechtman 2016,
"Preserving Color in Neural Artistic Style Transfer", arXiv:1606.05897).

Style transfer copies the style image's colours along with its strokes. The paper gives two
remedies, both here for [0, 1] RGB tensors (N, 3, H, W):

* :func:`luminance_only` ("luminance-only transfer"): keep the stylised image's luminance
  and take the chroma of the content image, in YIQ space (NTSC), where Y is luminance and
  I, Q are colour.
* :func:`match_color` ("color histogram matching", here by mean and covariance): before the
  transfer, recolour the style image with the affine map x -> A x + b that gives its pixels
  the mean and covariance of the content's pixels, A = Sigma_c^(1/2) Sigma_s^(-1/2) (the
  symmetric square roots of Image Analogies, Hertzmann et al. 2001), b = mu_c - A mu_s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# NTSC RGB -> YIQ (FCC 1953 coefficients); the inverse is computed, so the round trip is exact
# to float precision.
RGB_TO_YIQ = torch.tensor([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
], dtype=torch.float64)
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def _check_rgb(images: torch.Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be RGB images (N, 3, H, W) in [0, 1], got shape "
                         f"{tuple(images.shape)}")


def _apply(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-pixel 3x3 colour transform: (3, 3) @ (N, 3, H, W) -> (N, 3, H, W)."""
    return torch.einsum("ij,njhw->nihw", matrix.to(images), images)


def rgb_to_yiq(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 3, H, W) YIQ; Y in [0, 1], I in about +-0.6, Q in +-0.52."""
    _check_rgb(images, "images")
    return _apply(RGB_TO_YIQ, images)


def yiq_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) YIQ -> (N, 3, H, W) RGB (not clamped: some YIQ values are out of gamut)."""
    _check_rgb(images, "images")
    return _apply(YIQ_TO_RGB, images)


def luminance_only(stylised: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The luminance of ``stylised`` with the chroma (I, Q) of ``content``, clamped to [0, 1].

    Args:
        stylised: (N, 3, H, W), the style transfer's output.
        content: (N or 1, 3, H', W'); resized (bilinear) to H x W if its size differs.
    """
    _check_rgb(stylised, "stylised")
    _check_rgb(content, "content")
    if content.shape[-2:] != stylised.shape[-2:]:
        content = F.interpolate(content, size=stylised.shape[-2:], mode="bilinear",
                                align_corners=False, antialias=True)
    y = rgb_to_yiq(stylised)[:, :1]  # (N, 1, H, W)
    iq = rgb_to_yiq(content)[:, 1:].expand(stylised.shape[0], -1, -1, -1)  # (N, 2, H, W)
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def _sqrt_psd(cov: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    """cov^power of symmetric positive semi-definite (N, 3, 3) matrices via eigh."""
    values, vectors = torch.linalg.eigh(cov)  # (N, 3), (N, 3, 3)
    scaled = vectors * values.clamp_min(eps).pow(power).unsqueeze(1)  # (N, 3, 3)
    return scaled @ vectors.transpose(1, 2)


def _moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image pixel mean (N, 3) and covariance (N, 3, 3), in float64."""
    pixels = images.flatten(2).double()  # (N, 3, HW)
    mean = pixels.mean(2)  # (N, 3)
    centred = pixels - mean.unsqueeze(2)
    return mean, centred @ centred.transpose(1, 2) / pixels.shape[2]  # (N, 3), (N, 3, 3)


def match_color(style: torch.Tensor, content: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Recolour ``style`` so its pixels have the mean and covariance of ``content``'s
    (Gatys et al. 2016b), clamped to [0, 1]. Use the result as the style image.

    Args:
        style: (N, 3, H, W) in [0, 1].
        content: (N or 1, 3, H', W') in [0, 1]; any size.
        eps: floor on covariance eigenvalues (a flat colour channel has variance 0).
    """
    _check_rgb(style, "style")
    _check_rgb(content, "content")
    if content.shape[0] not in (1, style.shape[0]):
        raise ValueError(f"match_color needs one content image or one per style image, got "
                         f"{content.shape[0]} content and {style.shape[0]} style images")
    mu_s, cov_s = _moments(style)  # (N, 3), (N, 3, 3)
    mu_c, cov_c = _moments(content)
    a = _sqrt_psd(cov_c, 0.5, eps) @ _sqrt_psd(cov_s, -0.5, eps)  # (N, 3, 3)
    b = mu_c - (a @ mu_s.unsqueeze(2)).squeeze(2)  # (N, 3)
    pixels = style.flatten(2).double()  # (N, 3, HW)
    out = a @ pixels + b.unsqueeze(2)  # (N, 3, HW)
    return out.reshape(style.shape).to(style.dtype).clamp(0, 1)
