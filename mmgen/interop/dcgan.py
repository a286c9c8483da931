"""DCGAN weights saved by pytorch/examples' ``dcgan/main.py`` (``netG_epoch_N.pth`` and
``netD_epoch_N.pth``: raw ``state_dict`` pickles of ``main = nn.Sequential(...)``).

mmgen's :class:`~mmgen.gan.DCGAN` keeps those parameter names, so the files load unchanged
into ``generator`` / ``discriminator``; only the sizes are read from the tensors' shapes. The
files are read with ``torch.load(weights_only=True)`` (or as safetensors): no code runs.

    gan = load_dcgan_checkpoint("netG_epoch_24.pth", "netD_epoch_24.pth")
    images = gan(gan.sample_latents(64))            # (64, 3, 64, 64) in [-1, 1]
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from mmgen.checkpoint import load_state_dict
from mmgen.gan.dcgan import DCGAN, STAGES, DCGANConfig
from mmgen.interop.convert import load_converted

# the index of G's last transposed convolution in ``main`` -> image size: each stage is
# (convT, batch norm, ReLU), then the output convT
_LAST_G_LAYER = {3 * len(mults): size for size, (_, mults) in STAGES.items()}


def dcgan_config_from_state_dict(generator: Mapping[str, torch.Tensor]) -> DCGANConfig:
    """The unconditional :class:`DCGANConfig` whose generator has these tensors."""
    convs = sorted(int(k.split(".")[1]) for k, v in generator.items()
                   if k.startswith("main.") and k.endswith(".weight") and v.ndim == 4)
    if not convs or "main.0.weight" not in generator or convs[-1] not in _LAST_G_LAYER:
        raise ValueError("not a DCGAN generator state dict: expected the transposed "
                         "convolutions of pytorch/examples' netG (main.0.weight ... "
                         "main.12.weight at 64 px)")
    first, last = generator["main.0.weight"], generator[f"main.{convs[-1]}.weight"]
    image_size = _LAST_G_LAYER[convs[-1]]
    widest = STAGES[image_size][1][0]  # G's first width, in multiples of w
    return DCGANConfig(image_size=image_size, channels=last.shape[1], latent_dim=first.shape[0],
                       width=first.shape[1] // widest)


def load_dcgan_checkpoint(generator: str | os.PathLike,
                          discriminator: str | os.PathLike | None = None) -> DCGAN:
    """A :class:`DCGAN` holding pytorch/examples' ``netG`` (and ``netD``) weights.

    Args:
        generator: the ``netG_*.pth`` file (or a safetensors file with the same keys).
        discriminator: the matching ``netD_*.pth``; without it the discriminator keeps its
            N(0, 0.02) initialisation (enough for sampling, not for further training).

    Returns:
        The model in eval mode; every key and shape was checked before loading.
    """
    g_state = load_state_dict(generator)
    model = DCGAN(dcgan_config_from_state_dict(g_state))
    load_converted(model.generator, g_state)
    if discriminator is not None:
        d_state = load_state_dict(discriminator)
        # pytorch/examples' D ends in a Sigmoid (no parameters): mmgen's D returns the logit
        load_converted(model.discriminator, d_state)
    return model.eval()
