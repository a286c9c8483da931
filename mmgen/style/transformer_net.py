"""The image transformation network of fast style transfer (Johnson, Alahi & Fei-Fei 2016,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution"; supplementary
material, with instance norm instead of batch norm as in Ulyanov et al. 2016, "Instance
Normalization: The Missing Ingredient for Fast Stylization").

One network per style, trained with a perceptual loss (``mmgen.style.losses``). With
C = 32 * ``width`` and B = ``residual_blocks``::

    x in [0, 255]         reflection-padded at the bottom/right to multiples of 4  (N, 3, H, W)
    conv1 9x9, in1, ReLU                                                     (N, C, H, W)
    conv2 3x3 stride 2, in2, ReLU                                            (N, 2C, H/2, W/2)
    conv3 3x3 stride 2, in3, ReLU                                            (N, 4C, H/4, W/4)
    res1 .. resB    x + in2(conv2(ReLU(in1(conv1(x)))))                      (N, 4C, H/4, W/4)
    deconv1 nearest x2 then 3x3, in4, ReLU                                   (N, 2C, H/2, W/2)
    deconv2 nearest x2 then 3x3, in5, ReLU                                   (N, C, H, W)
    deconv3 9x9, no activation; cropped back to the input size               (N, 3, H, W)

Every conv reflection-pads its input by kernel // 2. Upsampling is nearest-neighbour then a
conv, not a transposed conv, which avoids checkerboard artifacts (Odena et al. 2016,
"Deconvolution and Checkerboard Artifacts"). Norms are ``InstanceNorm2d(affine=True)``.

Parameter names are those of pytorch/examples ``fast_neural_style`` (``conv1.conv2d.weight``,
``res3.in2.bias``, ...), so its published ``candy.pth``, ``mosaic.pth``, ``rain_princess.pth``
and ``udnie.pth`` load with :func:`load_fast_style`.

Value range, as the reference: ``forward`` takes and returns images in [0, 255] (the output
is not clamped, the training loss sees it raw); :meth:`TransformerNet.stylize` takes and
returns [0, 1] images, clamped. Any H, W >= 5 is accepted and the output has the input's size:
the two stride-2 convs round odd sizes up, so inputs are padded to multiples of 4 (where the
reference's output would be up to 3 px larger) and the output is cropped back.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.checkpoint import check_shapes, load_state_dict
from mmgen.registry import PretrainedModel, check_fields, register_presets
from mmgen.style.images import check_images

MIN_SIZE = 5  # the 9x9 convs reflection-pad by 4, which needs more than 4 px
# InstanceNorm buffers that torch < 0.4 saved and that no torch since has: the reference's
# neural_style.py deletes keys matching this before loading.
STALE_KEY = re.compile(r"in\d+\.running_(mean|var)$")


@dataclass
class TransformerNetConfig:
    """Architecture of the transformation network; the defaults are the reference's."""

    width: float = 1.0  # channel multiplier: 1 = 32/64/128 channels (the reference), 0.5 = half
    residual_blocks: int = 5  # residual blocks at 1/4 resolution (the reference: 5)

    def __post_init__(self) -> None:
        channels = 32 * self.width
        if not channels >= 1 or channels != int(channels):
            raise ValueError(f"TransformerNetConfig.width must make 32 * width a positive whole "
                             f"number of channels, got width={self.width}; e.g. 1.0 or 0.5")
        check_fields(self, names=("residual_blocks",))

    def channels(self) -> tuple[int, int, int]:
        """Channels at full, 1/2 and 1/4 resolution: (32, 64, 128) * width."""
        c = int(32 * self.width)
        return c, 2 * c, 4 * c


class ReflectConv(nn.Module):
    """Optional nearest-neighbour upsampling, reflection padding by kernel // 2, then a conv:
    the reference's ``ConvLayer`` (``upsample=1``) and ``UpsampleConvLayer`` (``upsample=2``).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel side (odd).
        stride: conv stride.
        upsample: nearest-neighbour scale factor applied first (1: none).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 upsample: int = 1):
        super().__init__()
        self.upsample = upsample
        self.padding = kernel_size // 2
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, ceil(H * upsample / stride), ...)."""
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")  # (N, C_in, uH, uW)
        p = self.padding
        return self.conv2d(F.pad(x, (p, p, p, p), mode="reflect"))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus the input, no activation after the sum (Gross & Wilber 2016,
    "Training and investigating Residual Nets", as the reference).

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ReflectConv(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ReflectConv(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))  # (N, C, h, w)
        return x + self.in2(self.conv2(y))  # (N, C, h, w)


class TransformerNet(PretrainedModel):
    """Johnson et al.'s feed-forward style network: ``net(x) -> stylized x``, in [0, 255]."""

    config_class = TransformerNetConfig

    def __init__(self, config: TransformerNetConfig):
        super().__init__(config)
        c1, c2, c3 = config.channels()
        self.conv1 = ReflectConv(3, c1, 9)
        self.in1 = nn.InstanceNorm2d(c1, affine=True)
        self.conv2 = ReflectConv(c1, c2, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(c2, affine=True)
        self.conv3 = ReflectConv(c2, c3, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(c3, affine=True)
        for i in range(config.residual_blocks):  # res1 .. resB: the reference's names
            self.add_module(f"res{i + 1}", ResidualBlock(c3))
        self.deconv1 = ReflectConv(c3, c2, 3, upsample=2)
        self.in4 = nn.InstanceNorm2d(c2, affine=True)
        self.deconv2 = ReflectConv(c2, c1, 3, upsample=2)
        self.in5 = nn.InstanceNorm2d(c1, affine=True)
        self.deconv3 = ReflectConv(c1, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize images in the reference's [0, 255] range.

        Args:
            x: (N, 3, H, W) float images in [0, 255], H, W >= 5.

        Returns:
            (N, 3, H, W), about [0, 255] but not clamped.
        """
        check_images(x, "images", "TransformerNet", MIN_SIZE, "[0, 255]")
        h, w = x.shape[-2:]
        if h % 4 or w % 4:  # two stride-2 convs: pad so that both upsamplings land on H, W
            x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")  # (N, 3, H4, W4)
        y = F.relu(self.in1(self.conv1(x)))  # (N, C, H4, W4)
        y = F.relu(self.in2(self.conv2(y)))  # (N, 2C, H4/2, W4/2)
        y = F.relu(self.in3(self.conv3(y)))  # (N, 4C, H4/4, W4/4)
        for i in range(self.config.residual_blocks):
            y = getattr(self, f"res{i + 1}")(y)  # (N, 4C, H4/4, W4/4)
        y = F.relu(self.in4(self.deconv1(y)))  # (N, 2C, H4/2, W4/2)
        y = F.relu(self.in5(self.deconv2(y)))  # (N, C, H4, W4)
        return self.deconv3(y)[..., :h, :w]  # (N, 3, H, W)

    @torch.no_grad()
    def stylize(self, images: torch.Tensor) -> torch.Tensor:
        """Stylize [0, 1] images (inference; train through ``forward``, which is in [0, 255]).

        Args:
            images: (N, 3, H, W) float images in [0, 1], H, W >= 5.

        Returns:
            (N, 3, H, W) in [0, 1] (clamped).
        """
        return (self(images * 255.0) / 255.0).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- loading


def load_fast_style(path: str | os.PathLike) -> TransformerNet:
    """Load a fast-neural-style state dict (``.pth`` or ``.safetensors``) as a TransformerNet.

    The width and the number of residual blocks are read from the tensor shapes, then every
    name and shape is checked against that architecture (a ``ValueError`` listing missing,
    unexpected and mis-shaped tensors). Stale InstanceNorm ``running_mean``/``running_var``
    entries of old checkpoints (the published ones) are dropped with one warning.

    Args:
        path: the weight file; ``.pth`` files go through ``torch.load(weights_only=True)``.

    Returns:
        the network in eval mode.
    """
    path = Path(path)
    state = load_state_dict(path)  # FileNotFoundError / UnsafeCheckpointError / ValueError
    stale = sorted(k for k in state if STALE_KEY.search(k))
    if stale:
        warnings.warn(f"{path}: dropped {len(stale)} InstanceNorm running_mean/running_var "
                      "entries saved by torch < 0.4 (instance norm keeps no running "
                      "statistics)", stacklevel=2)
        state = {k: v for k, v in state.items() if k not in stale}
    config = _infer_config(state)
    model = TransformerNet(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_shapes(expected, {k: tuple(v.shape) for k, v in state.items()},
                 f"{path} as a fast-neural-style TransformerNet (width {config.width}, "
                 f"{config.residual_blocks} residual blocks, names as pytorch/examples)")
    model.load_state_dict(state)
    return model.eval()


def _infer_config(state: dict[str, torch.Tensor]) -> TransformerNetConfig:
    """The config that the shapes of ``state`` suggest; the defaults where they say nothing
    (the strict check that follows then reports what does not fit)."""
    default = TransformerNetConfig()
    first = state.get("conv1.conv2d.weight")
    width = first.shape[0] / 32 if first is not None and first.ndim == 4 else default.width
    blocks = [int(m.group(1)) for k in state if (m := re.match(r"res(\d+)\.", k))]
    try:
        return TransformerNetConfig(width=width,
                                    residual_blocks=max(blocks, default=default.residual_blocks))
    except ValueError:  # shapes that fit no config: check against the reference's
        return default


PRESETS: dict[str, TransformerNetConfig] = {
    # The reference network (~1.7 M parameters): 32/64/128 channels, 5 residual blocks.
    "transformer-net": TransformerNetConfig(),
    # Half width (~0.4 M parameters) for training on a CPU.
    "transformer-net-small": TransformerNetConfig(width=0.5),
}
register_presets("style", PRESETS, TransformerNet)
