"""Training objectives of the colorizers (:class:`~mmgen.color.net.ColorNet`), for
:class:`mmgen.train.Trainer`. Batches are RGB images (B, 3, H, W) in [0, 1] (or
``(images, labels)`` pairs, labels ignored), converted to Lab here (scikit-image); the
network reads L and is scored on ab at its half resolution (ab average-pooled 2x2).

* :class:`ClassObjective` (Zhang et al. 2016): cross-entropy against the soft-encoded ab
  classes, each pixel weighted by the rebalancing weight of its nearest class
  (:func:`~mmgen.color.lab.rebalancing_weights`), so that rare saturated colours count as
  much as the common desaturated ones.
* :class:`RegressionObjective`: L1 between predicted and true ab / 110 (pix2pix's
  reconstruction term alone; tends to the per-pixel median colour: desaturated).
* :class:`Pix2PixObjective` (Isola et al. 2017): the same L1 times ``l1_weight`` plus a
  conditional PatchGAN (:class:`~mmgen.gan.patchgan.PatchGAN`) on (L, ab) at full
  resolution; pass 0 steps D, pass 1 G (:class:`Pix2Pix` holds both).

``degrade`` gives the network's input L what real black-and-white photos have (film grain,
softness): with probability 1/2 Gaussian noise of sigma uniform in [0, 3] L units, with
probability 1/3 a Gaussian blur of sigma uniform in [0.3, 1.2] px; the target ab stays clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn

from mmgen.color.lab import AB_NORM, normalize_l, rgb_to_lab, soft_encode
from mmgen.color.net import ColorNet
from mmgen.gan.objective import discriminator_loss, generator_loss
from mmgen.gan.patchgan import PatchGAN
from mmgen.train.batch import unpack_batch


def lab_batch(batch: Any, degrade: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(L (B, 1, H, W), ab (B, 2, H, W)) of a batch of RGB images in [0, 1]; with ``degrade``
    the network's input L gets grain and blur (:func:`degrade_lightness`), ab stays clean."""
    images, _ = unpack_batch(batch)
    lab = rgb_to_lab(images.float())
    lightness = degrade_lightness(lab[:, :1]) if degrade else lab[:, :1]
    return lightness, lab[:, 1:]


def degrade_lightness(lightness: torch.Tensor) -> torch.Tensor:
    """L (B, 1, H, W) with random grain and blur (module docstring), per image; uses the
    global torch RNG (restored on resume)."""
    out = []
    for x in lightness:  # (1, H, W)
        if torch.rand(()) < 1 / 3:
            sigma = float(0.3 + 0.9 * torch.rand(()))
            x = TF.gaussian_blur(x[None], [5, 5], [sigma, sigma])[0]
        if torch.rand(()) < 1 / 2:
            x = x + 3.0 * torch.rand(()) * torch.randn_like(x)
        out.append(x.clamp(0, 100))
    return torch.stack(out)


def half(ab: torch.Tensor) -> torch.Tensor:
    """ab (B, 2, H, W) -> (B, 2, H/2, W/2), the network's output resolution."""
    return F.avg_pool2d(ab, 2)


@dataclass
class ClassObjective:
    """Rebalanced soft-class cross-entropy (module docstring); ``weights`` (Q,) per class."""

    weights: torch.Tensor
    degrade: bool = True

    def __call__(self, model: ColorNet, batch: Any) -> dict[str, torch.Tensor]:
        lightness, ab = lab_batch(batch, self.degrade)
        target = soft_encode(half(ab), model.bins)  # (B, Q, H/2, W/2)
        weight = self.weights.to(target)[target.argmax(dim=1)]  # (B, H/2, W/2)
        logp = F.log_softmax(model(lightness).float(), dim=1)
        loss = (-(target * logp).sum(dim=1) * weight).mean()
        return {"loss": loss}


@dataclass
class RegressionObjective:
    """L1 on ab / 110 (module docstring)."""

    degrade: bool = True

    def __call__(self, model: ColorNet, batch: Any) -> dict[str, torch.Tensor]:
        lightness, ab = lab_batch(batch, self.degrade)
        loss = (model(lightness).float() - half(ab) / AB_NORM).abs().mean()
        return {"loss": loss}


class Pix2Pix(nn.Module):
    """What pix2pix trains: the colorizer ``generator`` (a ColorNet with ``output="ab"``) and
    the PatchGAN ``discriminator`` of (L, ab) pairs; only the generator is exported."""

    def __init__(self, generator: ColorNet, discriminator: PatchGAN):
        super().__init__()
        if generator.config.output != "ab" or discriminator.config.in_channels != 3:
            raise ValueError("Pix2Pix needs an ab generator (ColorNetConfig.output='ab') and a "
                             "PatchGAN of 3 input channels (L, a, b)")
        self.generator, self.discriminator = generator, discriminator

    def judge(self, lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Patch logits of D for L (B, 1, H, W) in [0, 100] and ab (B, 2, H, W)."""
        return self.discriminator(torch.cat([normalize_l(lightness), ab / AB_NORM], dim=1))


@dataclass
class Pix2PixObjective:
    """pix2pix: ``l1_weight`` x L1 + conditional PatchGAN (module docstring)."""

    l1_weight: float = 100.0  # the paper's lambda
    loss: str = "non_saturating"  # the GAN loss (mmgen.gan.objective): or "hinge"
    degrade: bool = True

    def __call__(self, model: Pix2Pix, batch: Any, opt_idx: int) -> dict[str, torch.Tensor]:
        lightness, ab = lab_batch(batch, self.degrade)
        size = ab.shape[-2:]
        if opt_idx == 0:  # D: real pairs against the generator's, no gradient into G
            with torch.no_grad():
                fake = F.interpolate(model.generator(lightness).float() * AB_NORM, size=size,
                                     mode="bilinear", align_corners=False)
            d_real = model.judge(lightness, ab).float()  # (B, 1, h, w) patch logits
            d_fake = model.judge(lightness, fake).float()
            return {"loss": discriminator_loss(d_real, d_fake, self.loss),
                    "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
        out = model.generator(lightness).float()  # (B, 2, H/2, W/2) ab / 110
        l1 = (out - half(ab) / AB_NORM).abs().mean()
        fake = F.interpolate(out * AB_NORM, size=size, mode="bilinear", align_corners=False)
        adversarial = generator_loss(model.judge(lightness, fake).float(), self.loss)
        return {"loss": adversarial + self.l1_weight * l1, "l1": l1.detach(),
                "adversarial": adversarial.detach()}
