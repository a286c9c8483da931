"""Training objective of the KL-regularised autoencoder (Rombach et al. 2022, sec. 3 and
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


@dataclass
class VAEObjective:
    """``objective(model, batch)`` for :class:`mmgen.train.Trainer`; ``batch`` is an image
    tensor (B, 3, H, W) in [-1, 1] or a dict with one under ``"image"``."""

    kl_weight: float = 1e-6  # weight of the KL term (per pixel value, see module docstring)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x = batch["image"] if isinstance(batch, dict) else batch  # (B, 3, H, W)
        posterior = model.encode(x)
        recon = model.decode(posterior.sample()).float()  # (B, 3, H, W)
        l1 = F.l1_loss(recon, x)
        mse = F.mse_loss(recon, x)
        kl = posterior.kl().float().mean() / x[0].numel()  # per pixel value
        return {"loss": l1 + mse + self.kl_weight * kl, "l1": l1.detach(),
                "mse": mse.detach(), "kl": kl.detach()}
