"""The adversarial objective for :class:`mmgen.train.Trainer` with two optimizers: pass 0 steps
the discriminator D, pass 1 the generator G, on every batch (the DCGAN paper's k = 1).

Losses, with D's logits d = D(x) on real images and D(G(z)) on generated ones:

* ``"non_saturating"`` (Goodfellow et al. 2014, sec. 3): D minimises
  softplus(-d_real) + softplus(d_fake) (binary cross-entropy), G minimises softplus(-d_fake)
  (maximises log D(G(z)), which keeps G's gradients large early on).
* ``"hinge"`` (Lim & Ye 2017; Miyato et al. 2018): D minimises relu(1 - d_real) +
  relu(1 + d_fake), G minimises -d_fake.
* ``"wgan-gp"`` (Gulrajani et al. 2017, Algorithm 1): D (the critic) minimises d_fake - d_real
  + lambda (|grad D(x_hat)| - 1)^2 at random points x_hat between real and generated images;
  G minimises -d_fake. The penalty is per sample, so D must not use batch norm.

``aux_weight`` > 0 adds AC-GAN's auxiliary classification loss (Odena et al. 2017) for a
model built with ``aux_classifier=True``: D learns to predict each condition of real images
(cross-entropy), and G is penalised by the same cross-entropy on its samples for the labels
it was asked for, which pushes every sample to read as its requested class.

``l1_weight`` > 0 adds pix2pix's L1 term (Isola et al. 2017) to G's loss: the mean absolute
difference between G(z, y) and the real image of the batch that has the labels y. It only
makes sense where the labels fix the image (Shapes: one render per attribute combination),
and it keeps D from winning early by telling exact renders from G's first noisy attempts.

``instance_noise`` > 0 adds Gaussian noise of that standard deviation to every image D sees,
real or generated (Sønderby et al. 2017; Arjovsky & Bottou 2017): where real images are
exact renders, D could otherwise tell them from G's first attempts by their noise-free
flatness alone and stop giving G useful gradients.

z (and the instance noise) come from the global torch RNG, which checkpoints save, so a
resumed run draws the same z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.train.batch import unpack_batch

LOSSES = ("non_saturating", "hinge", "wgan-gp")


@dataclass
class GANObjective:
    """``objective(model, batch, opt_idx)``; ``batch`` is an image tensor (B, C, H, W) in
    [-1, 1], an ``(images, labels)`` pair or a dict with ``"image"`` and ``"label"``: labels
    (B,) or (B, K), read only by a conditional model."""

    loss: str = "non_saturating"  # "non_saturating", "hinge" or "wgan-gp"
    gp_weight: float = 10.0  # lambda of WGAN-GP's gradient penalty (the paper's 10)
    aux_weight: float = 0.0  # weight of the AC-GAN classification loss (0: off)
    l1_weight: float = 0.0  # weight of the L1 distance of G(z, y) to the real image (0: off)
    instance_noise: float = 0.0  # std of the Gaussian noise added to D's inputs (0: off)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"GAN loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("aux_weight", "l1_weight", "instance_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"GANObjective.{name} must be >= 0, got {getattr(self, name)}")

    def check_model(self, model: nn.Module) -> None:
        """A clear error for a model this loss cannot train."""
        if self.loss == "wgan-gp" and model.config.discriminator_norm == "batch":
            raise ValueError("wgan-gp penalises each sample's gradient, which batch norm in D "
                             "mixes across the batch: use discriminator_norm='none' (or a "
                             "non_saturating / hinge loss)")
        if self.aux_weight and not getattr(model.config, "aux_classifier", False):
            raise ValueError("aux_weight > 0 needs a model built with aux_classifier=True")

    def __call__(self, model: nn.Module, batch: Any, opt_idx: int) -> dict[str, torch.Tensor]:
        x, labels = unpack_batch(batch)  # (B, C, H, W), (B, K) or None
        labels = labels if model.config.conditions else None
        if self.aux_weight:
            self.check_model(model)
        z = model.sample_latents(len(x))  # (B, nz)
        if opt_idx == 0:
            return self.discriminator_loss(model, x, z, labels)
        fake = model.generator(z, labels)  # (B, C, H, W)
        d_fake, classes = self.discriminate(model, self.noisy(fake), labels)  # (B,), [(B, n)]
        loss, out = generator_loss(d_fake, self.loss), {}
        if self.aux_weight:
            aux = classification_loss(classes, labels)
            loss, out["aux_fake"] = loss + self.aux_weight * aux, aux.detach()
        if self.l1_weight:
            l1 = (fake.float() - x.float()).abs().mean()
            loss, out["l1"] = loss + self.l1_weight * l1, l1.detach()
        return {"loss": loss, **out}

    def noisy(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` with the instance noise added (unchanged when it is 0)."""
        if not self.instance_noise:
            return images
        return images + self.instance_noise * torch.randn_like(images)

    def discriminate(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """D's logits (B,) in float32, and its class logits when the AC-GAN loss is on."""
        if not self.aux_weight:
            return model.discriminator(x, labels).float(), []
        logit, classes = model.discriminator(x, labels, with_classes=True)
        return logit.float(), classes

    def discriminator_loss(self, model: nn.Module, x: torch.Tensor, z: torch.Tensor,
                           labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = model.generator(z, labels)  # (B, C, H, W): no gradient into G here
        x, fake = self.noisy(x), self.noisy(fake)
        d_real, classes = self.discriminate(model, x, labels)  # (B,), [(B, n_i)]
        d_fake = model.discriminator(fake, labels).float()  # (B,)
        out = {"d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
        aux = classification_loss(classes, labels) if self.aux_weight else 0.0
        if self.aux_weight:
            out["aux_real"] = aux.detach()
        if self.loss != "wgan-gp":
            loss = discriminator_loss(d_real, d_fake, self.loss)
        else:
            self.check_model(model)
            gp = gradient_penalty(model.discriminator, x, fake, labels)
            loss = d_fake.mean() - d_real.mean() + self.gp_weight * gp
            out["gradient_penalty"] = gp.detach()
        return {"loss": loss + self.aux_weight * aux, **out}


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, loss: str) -> torch.Tensor:
    """D's loss on its logits for real and generated images (any shape), ``"non_saturating"``
    or ``"hinge"`` (the module docstring; WGAN-GP's needs D itself for its penalty)."""
    if loss == "non_saturating":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if loss == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    raise ValueError(f"discriminator_loss takes 'non_saturating' or 'hinge', got {loss!r}")


def generator_loss(d_fake: torch.Tensor, loss: str) -> torch.Tensor:
    """G's adversarial loss on D's logits for its images: softplus(-d) for
    ``"non_saturating"``, -d for ``"hinge"`` and ``"wgan-gp"``."""
    return F.softplus(-d_fake).mean() if loss == "non_saturating" else -d_fake.mean()


def classification_loss(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Mean over conditions of the cross-entropy of (B, n_i) logits against labels (B, K)."""
    return sum(F.cross_entropy(x.float(), labels[:, i]) for i, x in enumerate(logits)) / len(logits)


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     labels: torch.Tensor | None) -> torch.Tensor:
    """E[(|grad_x D(x_hat)|_2 - 1)^2], x_hat uniformly between paired real and fake images."""
    eps = torch.rand(len(real), 1, 1, 1, device=real.device, dtype=real.dtype)  # (B, 1, 1, 1)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat, labels).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
