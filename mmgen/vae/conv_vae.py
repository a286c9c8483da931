"""A convolutional VAE for small images (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"), trained by the ELBO with a weight beta on its KL term (beta-VAE, Higgins et al. 2017:
see :class:`mmgen.vae.ELBOObjective`).

At 28 px with width w and latent size D::

    encoder: x (B, C, 28, 28) -conv 4/2-> (B, w, 14, 14) -conv 4/2-> (B, 2w, 7, 7)
             -flatten, linear-> (B, 2D) = mean and log-variance of q(z | x)
    decoder: z (B, D) -linear-> (B, 2w, 7, 7) -convT 4/2-> (B, w, 14, 14)
             -convT 4/2-> (B, C, 28, 28) = the parameters of p(x | z)

32 px has three stages (32 -> 16 -> 8 -> 4), 64 px four. p(x | z) is

* ``"bernoulli"``: independent Bernoulli pixels with the decoder's logits, for binary data
  (MNIST binarised at 0.5, the usual benchmark setting);
* ``"gaussian"``: independent Gaussians with the decoder's means and one learned standard
  deviation, for data in [0, 1]; its log-likelihoods are densities, so bits/dim add the
  8-bit discretisation (see :meth:`ConvVAE.bits_per_dim`).

q(z | x) is :class:`~mmgen.vae.LatentDistribution`, the same diagonal Gaussian as
AutoencoderKL's (there over a latent map, here over a vector), and p(z) = N(0, I).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.registry import PretrainedModel, check_fields, register_presets
from mmgen.vae.autoencoder_kl import LatentDistribution, normal_log_prob

_STAGES = {28: 2, 32: 3, 64: 4}  # image size -> stride-2 stages (28 -> 7, 32 -> 4, 64 -> 4)
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class ConvVAEConfig:
    image_size: int = 28  # 28, 32 or 64 px
    channels: int = 1  # image channels
    latent_dim: int = 16  # D, the size of z
    width: int = 32  # w: channels after the first convolution, doubled at each stage
    likelihood: str = "bernoulli"  # p(x | z): "bernoulli" or "gaussian"

    def __post_init__(self):
        check_fields(self, 1, ("channels", "latent_dim", "width"),
                     choices={"image_size": sorted(_STAGES), "likelihood": LIKELIHOODS})


class ConvVAE(PretrainedModel):
    config_class = ConvVAEConfig

    def __init__(self, config: ConvVAEConfig):
        super().__init__(config)
        stages, w, c = _STAGES[config.image_size], config.width, config.channels
        widths = [w * 2**i for i in range(stages)]  # (w, 2w, ...) after each stage
        self.bottom = config.image_size // 2**stages  # 7 at 28 px, 4 otherwise
        self.bottom_channels = widths[-1]
        flat = widths[-1] * self.bottom**2
        down: list[nn.Module] = []
        for a, b in zip([c, *widths], widths, strict=False):
            down += [nn.Conv2d(a, b, 4, 2, 1), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, 2 * config.latent_dim))
        self.decoder_in = nn.Linear(config.latent_dim, flat)
        up: list[nn.Module] = []
        for a, b in zip(widths[::-1], [*widths[-2::-1], c], strict=True):
            up += [nn.ReLU(inplace=True), nn.ConvTranspose2d(a, b, 4, 2, 1)]
        self.decoder = nn.Sequential(*up)
        if config.likelihood == "gaussian":  # log of the decoder's one standard deviation
            self.log_std = nn.Parameter(torch.tensor(math.log(0.1)))

    # -- the two halves -----------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> LatentDistribution:
        """q(z | x) for images (B, C, H, W) in [0, 1]."""
        return LatentDistribution(self.encoder(x))  # over (B, D)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The parameters of p(x | z): logits (Bernoulli) or means (Gaussian), (B, C, H, W)."""
        h = self.decoder_in(z).view(len(z), self.bottom_channels, self.bottom, self.bottom)
        return self.decoder(h)

    def log_px_given_z(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over each image's pixels: (B,)."""
        if self.config.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(params, x, reduction="none")  # (B, C, H, W)
            return -nll.flatten(1).sum(dim=1)
        return normal_log_prob(x, params, 2 * self.log_std)

    # -- generation (the calling convention of mmgen's one-step generators) ---------------

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ p(z) = N(0, I): (n, D) on the model's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.config.latent_dim, generator=generator).to(device)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1]: the mean of p(x | z) (unconditional: no labels)."""
        if labels is not None:
            raise ValueError("this VAE is unconditional; pass no labels")
        return self.synthesize(z)

    def input_vector(self, z: torch.Tensor, labels: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """The decoder's input: z itself (B, D) (the one-step generator protocol, see
        :mod:`mmgen.latents`)."""
        if labels is not None:
            raise ValueError("this VAE is unconditional; pass no labels")
        return z

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1]: the mean of p(x | z = w)."""
        params = self.decode(w)
        mean = torch.sigmoid(params) if self.config.likelihood == "bernoulli" else params
        return mean.clamp(0, 1) * 2 - 1

    # -- likelihoods ----------------------------------------------------------------------

    def elbo(self, x: torch.Tensor, beta: float = 1.0,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """E_q[log p(x | z)] - beta KL(q(z | x) || p(z)) with one z per image (nats, (B,)
        each): ``elbo``, ``reconstruction`` and ``kl``."""
        q = self.encode(x)
        reconstruction = self.log_px_given_z(x, self.decode(q.sample(generator)))
        kl = q.kl()
        return {"elbo": reconstruction - beta * kl, "reconstruction": reconstruction, "kl": kl}

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, samples: int = 100,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The importance-weighted estimate of log p(x) (Burda et al. 2016, eq. 8), nats (B,):
        log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x), z_k ~ q(z | x). It is a lower bound
        that tightens as ``samples`` (K) grows; K = 1 is the ELBO."""
        q = self.encode(x)
        weights = []
        for _ in range(samples):
            z = q.sample(generator)  # (B, D)
            weights.append(self.log_px_given_z(x, self.decode(z)) + normal_log_prob(z)
                           - q.log_prob(z))
        return torch.logsumexp(torch.stack(weights), dim=0) - math.log(samples)

    def bits_per_dim(self, log_px: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihoods (B,) in bits per pixel value. A Gaussian decoder's
        density on [0, 1] becomes the probability of the 8-bit value: + log2(256) bits."""
        dims = self.config.channels * self.config.image_size**2
        bits = -log_px / (dims * math.log(2))
        return bits + 8 if self.config.likelihood == "gaussian" else bits


PRESETS = {
    "mnist": ConvVAEConfig(),
    "tiny": ConvVAEConfig(latent_dim=4, width=4),
}
register_presets("vae/conv", PRESETS, ConvVAE)
