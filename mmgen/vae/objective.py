"""Training objectives of the VAEs: :class:`ELBOObjective` (the ConvVAE's, below) and
:class:`VAEObjective`, the KL-regularised autoencoder's (Rombach et al. 2022, sec. 3 and
appendix G): reconstruct the image through a sampled latent, with a weak KL pull of the
posterior towards N(0, I) so that the latent space stays smooth for the diffusion model.

    loss = |x - D(z)|_1 + (x - D(z))^2 + kl_weight * KL(q(z|x) || N(0, I)) / (pixels of x)

with z ~ q(z|x). Dividing the summed KL by the number of pixel values gives the LDM paper's
weighting (there both terms are sums over the image; 1e-6 is its KL weight). The paper's
perceptual and adversarial terms need pretrained networks and are left out: on flat images
such as Shapes, L1 + L2 already reconstruct to within a few grey levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.train.batch import unpack_batch


@dataclass
class VAEObjective:
    """``objective(model, batch)`` for :class:`mmgen.train.Trainer`; ``batch`` holds images
    (B, 3, H, W) in [-1, 1] in any form :func:`mmgen.train.batch.unpack_batch` reads."""

    kl_weight: float = 1e-6  # weight of the KL term (per pixel value, see module docstring)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, _ = unpack_batch(batch)  # (B, 3, H, W)
        posterior = model.encode(x)
        recon = model.decode(posterior.sample()).float()  # (B, 3, H, W)
        l1 = F.l1_loss(recon, x)
        mse = F.mse_loss(recon, x)
        kl = posterior.kl().float().mean() / x[0].numel()  # per pixel value
        return {"loss": l1 + mse + self.kl_weight * kl, "l1": l1.detach(),
                "mse": mse.detach(), "kl": kl.detach()}


@dataclass
class ELBOObjective:
    """``objective(model, batch)`` for :class:`~mmgen.vae.ConvVAE`: minimise the negative
    ELBO, -E_q[log p(x | z)] + beta KL(q(z | x) || p(z)), in nats per pixel value (one z per
    image). beta = 1 is the VAE's bound on -log p(x); beta > 1 trades reconstruction for a
    latent closer to the prior, which disentangles factors (beta-VAE, Higgins et al. 2017).
    ``batch``: images (B, C, H, W) in [0, 1] in any form :func:`mmgen.train.batch.unpack_batch`
    reads (labels are ignored)."""

    beta: float = 1.0  # weight of the KL term

    def __post_init__(self):
        if not self.beta >= 0:
            raise ValueError(f"ELBOObjective.beta must be >= 0, got {self.beta}")

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, _ = unpack_batch(batch)  # (B, C, H, W)
        out = model.elbo(x, self.beta)
        dims = x[0].numel()
        return {"loss": -out["elbo"].mean() / dims,
                "reconstruction": -out["reconstruction"].detach().mean() / dims,
                "kl": out["kl"].detach().mean() / dims}
