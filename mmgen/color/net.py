"""The colorization network of mmgen's own recipes: a small U-Net from lightness L to the
chroma ab (:mod:`mmgen.color.lab`), predicted at half resolution and upsampled, as colour
varies slowly and L keeps every edge (Zhang et al. predict at a quarter).

Two heads (``output``):

* ``"classes"``: logits over the ab classes (``bins``, (Q, 2), saved with the weights),
  decoded by the annealed mean at a temperature (Zhang et al. 2016);
* ``"ab"``: ab / 110 through tanh (regression; pix2pix's generator).

With width w, ``mults`` (1, 2, 4, 8, 8) and one ResBlock (GroupNorm, SiLU; :mod:`mmgen.nn`)
per level::

    L (N, 1, H, W) -> (L - 50) / 100 -> conv 3x3                      (N, w, H, W)
    level i: ResBlock, then a stride-2 conv to the next level  (N, w*mults[i], H/2^i, W/2^i)
    middle: ResBlock x 2 at H/16                                      (N, 8w, H/16, W/16)
    up to H/2: nearest x2 + conv, concat the level's skip, ResBlock   (N, w*mults[1], H/2, W/2)
    head: GroupNorm, SiLU, conv 1x1                                   (N, Q or 2, H/2, W/2)

Inputs are reflection-padded to a multiple of 16 and the output cropped back, so any size
>= 16 px works (:meth:`ColorNet.predict_ab` returns ab at the input's full size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.color.lab import AB_NORM, DEFAULT_TEMPERATURE, ab_bins, annealed_mean, normalize_l
from mmgen.nn.resnet import Downsample, ResBlock, Upsample
from mmgen.registry import PretrainedModel, check_fields, register_presets

OUTPUTS = ("classes", "ab")
MIN_SIZE = 16  # the four stride-2 levels need the padded input to be at least this


@dataclass
class ColorNetConfig:
    width: int = 16  # channels of the first level
    mults: tuple[int, ...] = (1, 2, 4, 8, 8)  # channels per level as multiples of width
    output: str = "classes"  # "classes" (ab classes, annealed mean) or "ab" (regression)
    groups: int = 8  # GroupNorm groups (divide every level's channels)

    def __post_init__(self) -> None:
        self.mults = tuple(self.mults)
        check_fields(self, names=("width", "groups"), choices={"output": OUTPUTS})
        if len(self.mults) < 2 or any(m < 1 for m in self.mults):
            raise ValueError(f"ColorNetConfig.mults needs >= 2 levels of multiples >= 1, got "
                             f"{self.mults}")

    @property
    def stride(self) -> int:
        """What the padded input's sides must be multiples of."""
        return 2 ** (len(self.mults) - 1)


class ColorNet(PretrainedModel):
    """L -> ab classes or ab (module docstring)."""

    config_class = ColorNetConfig

    def __init__(self, config: ColorNetConfig):
        super().__init__(config)
        w, g = config.width, config.groups
        chans = [w * m for m in config.mults]
        self.stem = nn.Conv2d(1, chans[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(ResBlock(c, c, None, g) for c in chans)
        self.downsamples = nn.ModuleList(Downsample(a, b) for a, b in
                                         zip(chans[:-1], chans[1:], strict=True))
        self.middle = ResBlock(chans[-1], chans[-1], None, g)
        self.upsamples = nn.ModuleList()  # deepest first, ending at level 1 (H/2)
        self.up_blocks = nn.ModuleList()
        for level in range(len(chans) - 1, 1, -1):
            self.upsamples.append(Upsample(chans[level], chans[level - 1]))
            self.up_blocks.append(ResBlock(2 * chans[level - 1], chans[level - 1], None, g))
        out = len(ab_bins()) if config.output == "classes" else 2
        self.head = nn.Sequential(nn.GroupNorm(g, chans[1]), nn.SiLU(), nn.Conv2d(chans[1], out, 1))
        if config.output == "classes":
            self.register_buffer("bins", ab_bins())  # (Q, 2) ab of each class
        else:
            self.bins = None

    @property
    def predicts_classes(self) -> bool:
        """Whether the output is ab classes (decoded at a temperature) rather than ab."""
        return self.config.output == "classes"

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """L (N, 1, H, W) in [0, 100], H and W multiples of ``config.stride`` -> class logits
        (N, Q, H/2, W/2) or ab / 110 (N, 2, H/2, W/2)."""
        h = self.stem(normalize_l(lightness))  # (N, w, H, W)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h)  # (N, w * mults[i], H / 2^i, W / 2^i)
            if i < len(self.downsamples):
                skips.append(h)
                h = self.downsamples[i](h)
        h = self.middle(h)  # (N, w * mults[-1], H / 16, W / 16)
        for up, block in zip(self.upsamples, self.up_blocks, strict=True):
            skip = skips.pop()
            h = block(torch.cat([up(h, skip.shape[-2:]), skip], dim=1))
        out = self.head(h)  # (N, Q or 2, H/2, W/2)
        return torch.tanh(out) if self.config.output == "ab" else out

    def predict_ab(self, lightness: torch.Tensor,
                   temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """L (N, 1, H, W) in [0, 100], any H, W >= 16 -> ab (N, 2, H, W): the input
        reflection-padded to multiples of ``config.stride``, the half-resolution prediction
        upsampled (bilinear) and cropped back. ``temperature``: the annealed mean's T (classes
        only)."""
        n, _, height, width = lightness.shape
        if min(height, width) < MIN_SIZE:
            raise ValueError(f"ColorNet needs images of at least {MIN_SIZE} px a side, got "
                             f"{width}x{height}")
        s = self.config.stride
        pad = (0, -width % s, 0, -height % s)
        x = F.pad(lightness, pad, mode="reflect") if any(pad) else lightness
        out = self(x)
        ab = annealed_mean(out, self.bins, temperature) if self.bins is not None \
            else out.float() * AB_NORM  # (N, 2, H'/2, W'/2)
        ab = F.interpolate(ab, scale_factor=2.0, mode="bilinear", align_corners=False)
        return ab[..., :height, :width]


PRESETS = {
    # 2.1 M parameters: recipe photo-colorizer (bundled)
    "unet-small": ColorNetConfig(),
    "unet-small-ab": ColorNetConfig(output="ab"),  # photo-colorizer-l1, -pix2pix
    "unet-tiny": ColorNetConfig(width=8, mults=(1, 2, 2), output="classes"),  # tests
}
register_presets("color", PRESETS, ColorNet)
