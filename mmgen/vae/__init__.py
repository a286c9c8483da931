"""Variational autoencoders: the KL-regularised autoencoder of latent diffusion (Stable
Diffusion's VAE) and its training objective.

    vae = mmgen.create_model("vae/f4")              # or "vae/sd", "vae/tiny"
    z = vae.encode(images).sample()                 # (B, 4, H / 4, W / 4)
    loss = VAEObjective()(vae, images)["loss"]

Registered: ``vae/sd`` (SD 1.x/2.x), ``vae/f4`` (small, 4x) and ``vae/tiny`` (tests); the
small-image :class:`ConvVAE` (Kingma & Welling's VAE, trained by :class:`ELBOObjective`
with its beta) as ``vae/conv/mnist`` and ``vae/conv/tiny``.
diffusers ``AutoencoderKL`` weights load with ``mmgen.interop.from_diffusers``.
"""

from mmgen.lazy import lazy_exports
from mmgen.vae.autoencoder_kl import (
    PRESETS,
    AutoencoderKL,
    AutoencoderKLConfig,
    LatentDistribution,
)
from mmgen.vae.conv_vae import ConvVAE, ConvVAEConfig

# The objectives import the training engine (accelerate): only when asked for.
__getattr__ = lazy_exports(__name__, {"ELBOObjective": "objective", "VAEObjective": "objective"})

__all__ = ["PRESETS", "AutoencoderKL", "AutoencoderKLConfig", "ConvVAE", "ConvVAEConfig",
           "ELBOObjective", "LatentDistribution", "VAEObjective"]
