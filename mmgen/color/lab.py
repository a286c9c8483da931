"""CIE Lab for colorization: conversions (scikit-image's), the ab colour classes of Zhang et
al. 2016 and their decoding.

Colorization predicts the two chroma channels ab from the lightness L and keeps L as given,
so every conversion here goes through :mod:`skimage.color` (D65, sRGB), and the way back
never changes L (:func:`lab_to_rgb`): where an (L, a, b) colour lies outside the sRGB gamut,
its chroma is scaled down (its hue and L kept) until it fits, instead of clipping R, G and B,
which would shift L.

Value ranges: RGB in [0, 1]; L in [0, 100]; a, b roughly in [-110, 110]. Networks read
``(L - 50) / 100`` and, for regression, write ``ab / 110`` (Zhang et al.'s normalisation).

The classes (Zhang et al. 2016, Sec. 2.1): ab quantised on a grid of step 10, keeping each
cell of the grid that holds an sRGB colour at some lightness (:func:`ab_bins`: 261 cells;
Zhang et al.'s 313 are the cells ImageNet's pixels fall in). Training targets are soft:
each pixel's 5 nearest cell centres weighted by a Gaussian of sigma 5
(:func:`soft_encode`). Rare colours are weighted up by the inverse of the smoothed class
prior mixed with uniform (:func:`rebalancing_weights`). Predictions are decoded by the
annealed mean (:func:`annealed_mean`): the distribution sharpened by a temperature T, then
averaged; T = 1 is the mean (desaturated), T -> 0 the mode (colourful, patchy); the paper's
0.38 is the default.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from skimage import color as skcolor

L_CENTER, L_NORM, AB_NORM = 50.0, 100.0, 110.0  # Zhang et al.'s normalisation
BIN_STEP = 10.0  # ab grid step of the colour classes
AB_RANGE = 110.0  # the grid covers [-AB_RANGE, AB_RANGE] in a and b
NEIGHBOURS, SIGMA = 5, 5.0  # soft encoding: nearest cell centres and their Gaussian's sigma
PRIOR_SIGMA, PRIOR_MIX = 5.0, 0.5  # class rebalancing: prior smoothing and uniform mix lambda
DEFAULT_TEMPERATURE = 0.38  # the annealed mean's T (Zhang et al. 2016, Sec. 2.3)
GAMUT_STEPS = 12  # bisection steps of the chroma scale in lab_to_rgb (2^-12 of the chroma)
GAMUT_TOLERANCE = 0.05  # Lab distance of a round trip within which a colour is in gamut


def _check(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"{name} must be a (N, 3, H, W) tensor, got {shape}")


def _to_hwc(images: torch.Tensor) -> np.ndarray:
    return images.detach().cpu().double().permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)


def _from_hwc(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    out = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    return out.to(device=like.device, dtype=torch.float32 if not like.is_floating_point()
                  else like.dtype)


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> Lab (N, 3, H, W) (scikit-image, D65)."""
    _check(images, "images")
    return _from_hwc(skcolor.rgb2lab(_to_hwc(images.clamp(0, 1))), images)


def _round_trip_error(lab: np.ndarray) -> np.ndarray:
    """|Lab -> sRGB (clipped by scikit-image) -> Lab - Lab| per pixel: 0 inside the gamut."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lab2rgb warns about the values it clips
        back = skcolor.rgb2lab(skcolor.lab2rgb(lab))
    return np.abs(back - lab).max(axis=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab (N, 3, H, W) -> sRGB (N, 3, H, W) in [0, 1] with L kept: an out-of-gamut colour's
    chroma (a, b) is scaled down, hue and L kept, to the largest scale in gamut (bisection,
    to 2^-GAMUT_STEPS of its chroma); gray (a = b = 0) is always in gamut."""
    _check(lab, "lab")
    array = _to_hwc(lab)
    array[..., 0] = array[..., 0].clip(0, 100)
    flat = array.reshape(-1, 3)  # a view: pixels (P, 3)
    out = np.flatnonzero(_round_trip_error(flat[None])[0] > GAMUT_TOLERANCE)
    if out.size:
        pixels = flat[out]  # (K, 3)
        low, high = np.zeros(len(out)), np.ones(len(out))  # low: in gamut
        for _ in range(GAMUT_STEPS):
            mid = (low + high) / 2
            trial = np.concatenate([pixels[:, :1], pixels[:, 1:] * mid[:, None]], axis=1)
            inside = _round_trip_error(trial[None])[0] <= GAMUT_TOLERANCE
            low, high = np.where(inside, mid, low), np.where(inside, high, mid)
        flat[out, 1:] *= low[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rgb = skcolor.lab2rgb(array.reshape(lab.shape[0], *lab.shape[2:], 3))
    return _from_hwc(rgb.clip(0, 1), lab)


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> the networks' input (L - 50) / 100."""
    return (lightness - L_CENTER) / L_NORM


@functools.cache
def _bins() -> np.ndarray:
    grid = np.arange(-AB_RANGE, AB_RANGE + 1, BIN_STEP)  # cell centres (23,)
    a, b = (c.ravel() for c in np.meshgrid(grid, grid, indexing="ij"))  # (529,)
    offsets = np.linspace(-BIN_STEP / 2, BIN_STEP / 2, 5)  # sample points across a cell
    da, db = (c.ravel() for c in np.meshgrid(offsets, offsets, indexing="ij"))  # (25,)
    lightness = np.linspace(1, 99, 50)
    lab = np.stack(np.broadcast_arrays(lightness[:, None, None], (a[:, None] + da)[None],
                                       (b[:, None] + db)[None]), axis=-1)  # (50, 529, 25, 3)
    inside = _round_trip_error(lab) <= GAMUT_TOLERANCE  # (50, 529, 25)
    keep = inside.any(axis=(0, 2))
    return np.stack([a[keep], b[keep]], axis=1)  # (Q, 2)


def ab_bins() -> torch.Tensor:
    """Centres (Q, 2) of the ab grid cells (step BIN_STEP over [-110, 110]^2) that hold an
    sRGB colour at some lightness: Q = 261."""
    return torch.from_numpy(_bins()).float()


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, neighbours: int = NEIGHBOURS,
                sigma: float = SIGMA) -> torch.Tensor:
    """ab (N, 2, H, W) -> soft class targets (N, Q, H, W): each pixel's ``neighbours``
    nearest bin centres (Q, 2) weighted by exp(-d^2 / 2 sigma^2), normalised to sum 1."""
    n, _, h, w = ab.shape
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()  # (P, 2)
    dist, index = torch.cdist(pixels, bins.to(pixels)).topk(neighbours, largest=False)  # (P, k)
    weight = torch.softmax(-dist.square() / (2 * sigma**2), dim=1)  # (P, k)
    target = torch.zeros(len(pixels), len(bins), device=ab.device).scatter_(1, index, weight)
    return target.view(n, h, w, -1).permute(0, 3, 1, 2)  # (N, Q, H, W)


def rebalancing_weights(prior: torch.Tensor, bins: torch.Tensor, mix: float = PRIOR_MIX,
                        sigma: float = PRIOR_SIGMA) -> torch.Tensor:
    """Class weights (Q,) from the empirical class frequencies ``prior`` (Q,): the prior
    smoothed by a Gaussian of ``sigma`` over ab, mixed with uniform by ``mix`` (lambda),
    inverted and scaled so that the prior's expected weight is 1 (Zhang et al., Eq. 4)."""
    prior = prior.double() / prior.sum()
    kernel = torch.exp(-torch.cdist(bins.double(), bins.double()).square() / (2 * sigma**2))
    smooth = kernel @ prior
    smooth = smooth / smooth.sum()
    weights = 1.0 / ((1 - mix) * smooth + mix / len(prior))
    return (weights / (weights * smooth).sum()).float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor,
                  temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Class logits (N, Q, H, W) -> ab (N, 2, H, W): softmax(logits / T) averaged over the
    bin centres (Q, 2) (= the distribution raised to 1/T and renormalised, Zhang et al.
    Eq. 5). ``temperature`` > 0; 1: the mean, small: the mode."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (1: the mean, near 0: the mode), got "
                         f"{temperature!r}")
    probs = F.softmax(logits.float() / temperature, dim=1)  # (N, Q, H, W)
    return torch.einsum("nqhw,qc->nchw", probs, bins.to(probs))  # (N, 2, H, W)
