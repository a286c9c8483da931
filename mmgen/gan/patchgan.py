"""The PatchGAN discriminator of pix2pix (Isola et al. 2017, "Image-to-Image Translation with
Conditional Adversarial Networks", Sec. 3.2.2 and appendix 6.1.2): a fully convolutional
network whose every output logit judges one overlapping patch (70 x 70 px with the default
3 strided layers), so the adversarial loss asks for realistic local texture and colour while
an L1 term takes care of the low frequencies.

With width w and L = ``layers``::

    x (B, C, H, W) -conv 4/2, LReLU->                     (B, w, H/2, W/2)    no norm
    L - 1 x: conv 4/2, norm, LReLU                        (B, w * 2^i, H/2^(i+1), ...)
    conv 4/1, norm, LReLU                                 (B, w * 2^L, ~H/2^L, ~W/2^L)
    conv 4/1                                              (B, 1, ~H/2^L - 2, ~W/2^L - 2) logits

Widths are capped at 8w (the paper's C64-C128-C256-C512). ``norm``: ``"batch"`` (the paper),
``"instance"`` or ``"spectral"`` (spectral norm on every conv instead of a norm layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from mmgen.registry import check_fields

NORMS = ("batch", "instance", "spectral")


@dataclass
class PatchGANConfig:
    in_channels: int = 6  # pix2pix: the input image and the (real or generated) output
    width: int = 64  # channels of the first layer
    layers: int = 3  # strided layers: 3 gives 70 x 70 px patches
    norm: str = "batch"

    def __post_init__(self) -> None:
        check_fields(self, names=("in_channels", "width", "layers"), choices={"norm": NORMS})


class PatchGAN(nn.Module):
    """images (B, C, H, W) -> patch logits (B, 1, h, w), higher for real (module docstring)."""

    def __init__(self, config: PatchGANConfig):
        super().__init__()
        self.config = config
        w, spectral = config.width, config.norm == "spectral"
        wrap = spectral_norm if spectral else (lambda m: m)

        def norm(c: int) -> list[nn.Module]:
            if spectral:
                return []
            if config.norm == "batch":
                return [nn.BatchNorm2d(c)]
            return [nn.InstanceNorm2d(c, affine=True)]

        layers: list[nn.Module] = [wrap(nn.Conv2d(config.in_channels, w, 4, 2, 1)),
                                   nn.LeakyReLU(0.2, inplace=True)]
        c = w
        for i in range(1, config.layers + 1):
            out, stride = w * min(2**i, 8), 2 if i < config.layers else 1
            layers += [wrap(nn.Conv2d(c, out, 4, stride, 1, bias=spectral)), *norm(out),
                       nn.LeakyReLU(0.2, inplace=True)]
            c = out
        layers.append(wrap(nn.Conv2d(c, 1, 4, 1, 1)))
        self.main = nn.Sequential(*layers)
        for m in self.modules():  # the paper's N(0, 0.02) init
            if isinstance(m, nn.Conv2d):
                weight = m.parametrizations.weight.original if spectral else m.weight
                nn.init.normal_(weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, h, w)
