"""Colorizing with a trained network at its resolution, detail kept from the full image.

A colorizer is any module with ``predict_ab(L (N, 1, h, w) in [0, 100], temperature) ->
ab (N, 2, h, w)`` (:class:`~mmgen.color.net.ColorNet`, the Zhang et al. networks of
:mod:`mmgen.color.zhang`). :func:`colorize_tensor` runs it on the image resized so that its
long side is ``size``, upsamples the predicted ab (bilinear) to the full image and puts them
with the full image's own L: the output's lightness is the input's (within the 8-bit
rounding of the RGB output: < 0.25 L units), and only colour is added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmgen.color.lab import DEFAULT_TEMPERATURE, lab_to_rgb, rgb_to_lab
from mmgen.data.images import fit_long_side

DEFAULT_SIZE = 256  # long side at which the networks see the image


def gray_lab(images: torch.Tensor) -> torch.Tensor:
    """Lab (N, 3, H, W) of RGB images (N, 3, H, W) in [0, 1] with their colour removed
    (a = b = 0): what a black-and-white photo of them holds."""
    lab = rgb_to_lab(images)
    lab[:, 1:] = 0
    return lab


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """RGB images (N, 3, H, W) in [0, 1] -> their gray versions (the same L, a = b = 0)."""
    return lab_to_rgb(gray_lab(images))


def model_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) of an image of ``height`` x ``width`` whose long side is ``size``, >= 16 each."""
    w, h = fit_long_side(width, height, size)
    return max(16, h), max(16, w)


def network_input(images: torch.Tensor, size: int = DEFAULT_SIZE
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Lab (N, 3, H, W) of RGB ``images`` (N, 3, H, W) in [0, 1], L (N, 1, h, w) of the
    images resized to long side ``size``: what the network reads)."""
    lab = rgb_to_lab(images)
    small = F.interpolate(images.float(), size=model_size(*lab.shape[-2:], size),
                          mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return lab, rgb_to_lab(small)[:, :1]


def with_colour(lab: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W): the full-size L of ``lab`` (N, 3, H, W) with the predicted ``ab``
    (N, 2, h, w) upsampled (bilinear) to H x W."""
    lab = lab.clone()
    lab[:, 1:] = F.interpolate(ab.float().cpu(), size=lab.shape[-2:], mode="bilinear",
                               align_corners=False)
    return lab_to_rgb(lab)


@torch.no_grad()
def colorize_tensor(model: torch.nn.Module, images: torch.Tensor, size: int = DEFAULT_SIZE,
                    temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """RGB images (N, 3, H, W) in [0, 1] (their colour, if any, is ignored: only L is read)
    -> colorized RGB (N, 3, H, W) in [0, 1] with the input's L (module docstring)."""
    lab, lightness = network_input(images, size)
    device = next(model.parameters()).device
    return with_colour(lab, model.predict_ab(lightness.to(device), temperature))
