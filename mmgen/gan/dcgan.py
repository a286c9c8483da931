"""DCGAN (Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks"), optionally conditioned on categorical labels.

The paper's architecture guidelines (sec. 3), all kept:

* no pooling: strided convolutions in D, fractionally-strided (transposed) ones in G;
* batch norm in G and D, except G's output layer and D's input layer;
* ReLU in G with tanh at its output, LeakyReLU(0.2) in D;
* no fully connected hidden layers: G's first transposed convolution "projects and reshapes"
  z (1x1 -> 4x4), D's last convolution reads its 4x4 map to one logit;
* weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02) (sec. 4); Adam 2e-4, beta1 = 0.5 is
  the recipe's optimizer.

Layout at 64 px, width w (the parameter names are those of pytorch/examples' ``dcgan``, so
its ``netG.pth`` / ``netD.pth`` state dicts load into ``generator`` / ``discriminator``)::

    G: z (B, nz [+ E], 1, 1) -convT 4/1-> (B, 8w, 4, 4) -convT 4/2-> (B, 4w, 8, 8)
       -> (B, 2w, 16, 16) -> (B, w, 32, 32) -convT 4/2, tanh-> (B, C, 64, 64)
    D: x (B, C, 64, 64) -conv 4/2-> (B, w, 32, 32) -> (B, 2w, 16, 16) -> (B, 4w, 8, 8)
       -> (B, 8w, 4, 4) = h -conv 4/1-> (B, 1, 1, 1) logit

32 px drops the widest stage (G starts at 4x4 with 4w); 28 px (MNIST) starts at 7x7 with 2w,
read and written by 7x7 kernels.

Conditions (conditional GAN, Mirza & Osindero 2014): ``conditions`` holds how many values
each categorical condition has: ``(10,)`` for MNIST digits, ``(6, 4, 2, 9, 3)`` for the five
Shapes attributes. G reads z concatenated with the sum of one learned embedding per
condition (summing keeps attributes independent, so unseen combinations compose); D is a
projection discriminator (Miyato & Koyama 2018): logit = conv(h) + sum_i <embed_i(y_i), sum(h)>.

``discriminator_norm``: ``"batch"`` (the paper), ``"spectral"`` (spectral norm on every D
layer instead of batch norm, Miyato et al. 2018) or ``"none"`` (what WGAN-GP's per-sample
gradient penalty needs, Gulrajani et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from mmgen.registry import PretrainedModel, check_fields, register_presets

# image size -> (spatial size of G's first / D's last map, widths as multiples of w, first
# to last G stage; D mirrors them)
STAGES = {28: (7, (2, 1)), 32: (4, (4, 2, 1)), 64: (4, (8, 4, 2, 1))}
NORMS = ("batch", "spectral", "none")


@dataclass
class DCGANConfig:
    image_size: int = 64  # 28, 32 or 64 px
    channels: int = 3  # image channels (1: MNIST)
    latent_dim: int = 100  # nz, the size of z (the paper's 100)
    width: int = 64  # w: channels of G's last and D's first hidden layer (ngf / ndf)
    conditions: tuple[int, ...] = ()  # values of each categorical condition; () unconditional
    embed_dim: int = 64  # E: width of G's condition embedding (conditional only)
    discriminator_norm: str = "batch"  # "batch", "spectral" or "none" (see module docstring)
    aux_classifier: bool = False  # D also predicts each condition (AC-GAN; conditional only)

    def __post_init__(self):
        self.conditions = tuple(self.conditions)
        check_fields(self, 1, ("channels", "latent_dim", "width", "embed_dim"),
                     choices={"image_size": sorted(STAGES), "discriminator_norm": NORMS})
        if any(n < 2 for n in self.conditions):
            raise ValueError(f"DCGANConfig.conditions: every condition needs >= 2 values, "
                             f"got {self.conditions}")
        if self.aux_classifier and not self.conditions:
            raise ValueError("DCGANConfig.aux_classifier needs conditions to predict")


class Generator(nn.Module):
    """z (B, nz) [+ labels (B, K)] -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        start, mults = STAGES[config.image_size]
        w = config.width
        extra = config.embed_dim if config.conditions else 0
        self.label_embed = nn.ModuleList(nn.Embedding(n, config.embed_dim)
                                         for n in config.conditions)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.latent_dim + extra, mults[0] * w, start, 1, 0, bias=False),
            nn.BatchNorm2d(mults[0] * w), nn.ReLU(True)]  # (B, m0 w, start, start)
        for a, b in zip(mults, mults[1:], strict=False):  # each doubles the size
            layers += [nn.ConvTranspose2d(a * w, b * w, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(b * w), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(w, config.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def input_vector(self, z: torch.Tensor, labels: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """What the network reads: z (B, nz), with the summed condition embeddings appended
        (B, nz + E) for a conditional G."""
        if not self.label_embed:
            return z
        e = sum(emb(labels[:, i]) for i, emb in enumerate(self.label_embed))  # (B, E)
        return torch.cat([z, e], dim=1)  # (B, nz + E)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(self.input_vector(z, labels)[:, :, None, None])  # (B, C, H, W)


class Discriminator(nn.Module):
    """images (B, C, H, W) [+ labels (B, K)] -> logits (B,), higher for real."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        start, mults = STAGES[config.image_size]
        mults = mults[::-1]  # (1, 2, 4, 8) at 64 px
        w, norm = config.width, config.discriminator_norm
        wrap = spectral_norm if norm == "spectral" else (lambda m: m)
        layers: list[nn.Module] = [wrap(nn.Conv2d(config.channels, w, 4, 2, 1, bias=False)),
                                   nn.LeakyReLU(0.2, inplace=True)]  # no norm on the input
        for a, b in zip(mults, mults[1:], strict=False):  # each halves the size
            layers.append(wrap(nn.Conv2d(a * w, b * w, 4, 2, 1, bias=False)))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(b * w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(wrap(nn.Conv2d(mults[-1] * w, 1, start, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)
        self.class_embed = nn.ModuleList(wrap(nn.Embedding(n, mults[-1] * w))
                                         for n in config.conditions)
        self.aux_heads = nn.ModuleList(wrap(nn.Linear(mults[-1] * w, n))
                                       for n in config.conditions if config.aux_classifier)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                with_classes: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B,); with ``with_classes`` also the auxiliary classifier's logits, one
        (B, n) tensor per condition (AC-GAN, Odena et al. 2017)."""
        h = self.main[:-1](x)  # (B, 8w, start, start) at 64 px
        logit = self.main[-1](h).flatten()  # (B,)
        pooled = h.sum(dim=(2, 3))  # (B, 8w)
        for i, emb in enumerate(self.class_embed):
            logit = logit + (emb(labels[:, i]) * pooled).sum(dim=1)  # projection
        if with_classes:
            return logit, [head(pooled) for head in self.aux_heads]
        return logit


class DCGAN(PretrainedModel):
    """Generator and discriminator in one saved model (the trainer steps each with its own
    optimizer: see :class:`mmgen.gan.GANObjective`)."""

    config_class = DCGANConfig

    def __init__(self, config: DCGANConfig):
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.apply(_init_weights)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I): (n, nz) on the model's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.config.latent_dim, generator=generator).to(device)

    def check_labels(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """``labels`` as a (n, K) long tensor, checked against ``config.conditions``."""
        conditions = self.config.conditions
        if not conditions:
            if labels is not None:
                raise ValueError("this DCGAN is unconditional; pass no labels")
            return None
        if labels is None:
            raise ValueError(f"this DCGAN is conditional: pass labels (n, {len(conditions)}) "
                             f"with values below {conditions}")
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(n, -1)
        if labels.shape[1] != len(conditions):
            raise ValueError(f"expected {len(conditions)} label(s) per sample, "
                             f"got {labels.shape[1]}")
        top = torch.tensor(conditions)
        if (labels < 0).any() or (labels >= top).any():
            raise ValueError(f"labels must be in [0, n) for n in {conditions}; "
                             f"got {labels.min().item()}..{labels.max().item()}")
        return labels.to(next(self.parameters()).device)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] from latents (B, nz) and labels (B, K)."""
        return self.generator(z, self.check_labels(labels, len(z)))

    def input_vector(self, z: torch.Tensor, labels: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """G's input w = [z, embedded labels] (B, nz [+ E]): the vector that latent
        interpolation and arithmetic work on (:mod:`mmgen.latents`)."""
        return self.generator.input_vector(z, self.check_labels(labels, len(z)))

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] from G's input vectors w (B, nz [+ E])."""
        return self.generator.main(w[:, :, None, None])


def _init_weights(m: nn.Module) -> None:
    """The paper's N(0, 0.02) weights; batch-norm scales N(1, 0.02), shifts 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Embedding, nn.Linear)):
        weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
        nn.init.normal_(weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


PRESETS = {
    "64": DCGANConfig(),  # the paper's (LSUN / faces) and pytorch/examples' network
    "mnist": DCGANConfig(image_size=28, channels=1, width=64, conditions=(10,)),
    "tiny": DCGANConfig(image_size=28, channels=1, latent_dim=8, width=4, conditions=(10,),
                        embed_dim=4),
}
register_presets("gan/dcgan", PRESETS, DCGAN)
