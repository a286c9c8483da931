"""Latent-space tools shared by mmgen's one-step generators (DCGAN, ConvVAE).

Every one-step generator maps an input vector w to an image: ``model.input_vector(z, labels)``
gives w (B, W), ``model.synthesize(w)`` the images. Its first ``latent_dim`` entries are the
Gaussian latent z; a conditional GAN appends the embedding of its labels (so W = nz + E), a
VAE's w is z itself.

* Interpolation: :func:`lerp` (a straight line) and :func:`slerp` (along the great circle,
  White 2016, "Sampling Generative Networks": it keeps a Gaussian latent's norm near sqrt(nz),
  where the generator was trained, while a straight line between two samples passes through
  lower norms). :func:`interpolate` walks z by either and the label embedding by a straight
  line.
* Vector arithmetic (Radford et al. 2016, sec. 6.3): :func:`group_mean` averages the input
  vectors of a group of samples (e.g. those a classifier reads as "red"), and
  :func:`attribute_vector` is the difference of two group means, which added to a sample's
  vector changes that attribute ("red circle" - "red" + "blue" -> "blue circle").
"""

from __future__ import annotations

import torch

METHODS = ("slerp", "lerp")


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """(1 - t) a + t b, for vectors (..., D) and t broadcasting against them."""
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float,
          eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation between the rows of ``a`` and ``b`` (..., D), t in [0, 1] (a
    float or a tensor broadcasting as (..., 1)): sin((1-t) W)/sin W a + sin(t W)/sin W b, where
    W is the angle between a and b. Nearly parallel vectors fall back to :func:`lerp`."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=eps)[..., None]  # (..., 1)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-4
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / safe
    return torch.where(parallel, lerp(a, b, t), spherical)


def interpolate(start: torch.Tensor, end: torch.Tensor, frames: int, latent_dim: int,
                method: str = "slerp") -> torch.Tensor:
    """``frames`` input vectors (frames, W) from ``start`` to ``end`` (W,), both included: the
    first ``latent_dim`` entries (z) by ``method``, the rest (a label embedding) by lerp."""
    if method not in METHODS:
        raise ValueError(f"interpolation method must be one of {METHODS}, got {method!r}")
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    if start.shape != end.shape or start.ndim != 1:
        raise ValueError(f"start and end must be vectors of one size, got {tuple(start.shape)} "
                         f"and {tuple(end.shape)}")
    t = torch.linspace(0, 1, frames, dtype=start.dtype, device=start.device)[:, None]  # (F, 1)
    a, b = start.expand(frames, -1), end.expand(frames, -1)  # (F, W)
    walk = slerp if method == "slerp" else lerp
    z = walk(a[:, :latent_dim], b[:, :latent_dim], t)  # (F, nz)
    rest = lerp(a[:, latent_dim:], b[:, latent_dim:], t)  # (F, W - nz)
    return torch.cat([z, rest], dim=1)


def group_mean(vectors: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """The mean (W,) of the rows of ``vectors`` (N, W) selected by the bool mask ``members``
    (N,); a ``ValueError`` for an empty group."""
    if members.shape != vectors.shape[:1] or members.dtype != torch.bool:
        raise ValueError("members must be a bool mask with one entry per vector")
    if not members.any():
        raise ValueError("the group is empty: no vector to average")
    return vectors[members].mean(dim=0)


def attribute_vector(vectors: torch.Tensor, source: torch.Tensor,
                     target: torch.Tensor) -> torch.Tensor:
    """mean(target group) - mean(source group) (W,): adding it to a member of ``source``
    moves it towards ``target`` (masks (N,) over ``vectors`` (N, W))."""
    return group_mean(vectors, target) - group_mean(vectors, source)
