"""The image transformation network of fast style transfer (Johnson, Alahi & Fei-Fei 2016,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution"; supplementary
material, with instance norm instead of batch norm as in Ulyanov et al. 2016, "Instance
Normalization: The Missing Ingredient for Fast Stylization"), for one style or several.

Trained with a perceptual loss (``mmgen.style.losses``, ``mmgen.style.train``). With
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
"Deconvolution and Checkerboard Artifacts").

One style (``config.styles == ()``, the reference): every norm is
``InstanceNorm2d(affine=True)`` and the parameter names are those of pytorch/examples
``fast_neural_style`` (``conv1.conv2d.weight``, ``res3.in2.bias``, ...), so its published
``candy.pth``, ``mosaic.pth``, ``rain_princess.pth`` and ``udnie.pth`` load with
:func:`load_fast_style`.

S styles (``config.styles`` names them): conditional instance normalisation (Dumoulin, Shlens
& Kudlur 2017, "A Learned Representation for Artistic Style", Sec. 2.2): every norm keeps one
row of (gamma, beta) per style, ``weight`` and ``bias`` of shape (S, C), and everything else
is shared. ``net(x, style)`` picks the rows by a style index, or mixes them by convex weights,
which interpolates between the styles (their Sec. 4.1)::

    IN(x; w) = (sum_s w_s gamma_s) * (x - mu(x)) / sigma(x) + sum_s w_s beta_s   (w >= 0, sum 1)

Value range, as the reference: ``forward`` takes and returns images in [0, 255] (the output
is not clamped, the training loss sees it raw); :meth:`TransformerNet.stylize` takes and
returns [0, 1] images, clamped. Any H, W >= 5 is accepted and the output has the input's size:
the two stride-2 convs round odd sizes up, so inputs are padded to multiples of 4 (where the
reference's output would be up to 3 px larger) and the output is cropped back.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
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
MIX_TOLERANCE = 1e-4  # how far the rows of a style mix may sum from 1
# How a forward pass is told the style: an index, (N,) integer indices, or (S,) / (N, S)
# float mixing weights (see TransformerNet.forward).
Style = int | torch.Tensor


@dataclass
class TransformerNetConfig:
    """Architecture of the transformation network; the defaults are the reference's."""

    width: float = 1.0  # channel multiplier: 1 = 32/64/128 channels (the reference), 0.5 = half
    residual_blocks: int = 5  # residual blocks at 1/4 resolution (the reference: 5)
    # Names of the styles the network is trained on, one row of every norm's (gamma, beta)
    # each (conditional instance norm); () for the reference's one-style network.
    styles: tuple[str, ...] = ()
    # Add the input to the output (a global residual; not in the reference): the untrained
    # network is the identity, so training starts from the content instead of from noise.
    content_skip: bool = False

    def __post_init__(self) -> None:
        channels = 32 * self.width
        if not channels >= 1 or channels != int(channels):
            raise ValueError(f"TransformerNetConfig.width must make 32 * width a positive whole "
                             f"number of channels, got width={self.width}; e.g. 1.0 or 0.5")
        check_fields(self, names=("residual_blocks",))
        if isinstance(self.styles, str):  # tuple("swirls") would be its letters
            raise ValueError(f"TransformerNetConfig.styles must be a tuple of style names, got "
                             f"the string {self.styles!r}; write ({self.styles!r},)")
        self.styles = tuple(self.styles)  # JSON and overrides may give a list
        if any(not isinstance(s, str) or not s for s in self.styles) \
                or len(set(self.styles)) != len(self.styles):
            raise ValueError(f"TransformerNetConfig.styles must be distinct non-empty names, "
                             f"got {list(self.styles)}; e.g. ('swirls', 'waves'), or () for "
                             "one style")

    def channels(self) -> tuple[int, int, int]:
        """Channels at full, 1/2 and 1/4 resolution: (32, 64, 128) * width."""
        c = int(32 * self.width)
        return c, 2 * c, 4 * c


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with one affine (gamma, beta) row per style, mixed per image (Dumoulin
    et al. 2017, Sec. 2.2): ``weight`` and ``bias`` are (S, C), initialised as
    ``InstanceNorm2d``'s (1 and 0).

    Args:
        channels: C.
        styles: S, the number of rows.
        eps: added to the variance, as ``InstanceNorm2d``.
    """

    def __init__(self, channels: int, styles: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(styles, channels))  # (S, C): gamma per style
        self.bias = nn.Parameter(torch.zeros(styles, channels))  # (S, C): beta per style

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) and (N, S) convex weights -> (N, C, H, W)."""
        n, c, h, w = x.shape
        gamma, beta = mix @ self.weight, mix @ self.bias  # (N, C) each; one-hot: a row exactly
        # Instance norm's statistics are per (image, channel), so one "image" of N*C channels
        # is the same normalisation, and it takes an affine per channel: one per image here.
        # This is the very computation of InstanceNorm2d (which repeats its (C,) affine N
        # times), so a one-hot mix equals a plain network with that style's rows.
        y = F.instance_norm(x.reshape(1, n * c, h, w), weight=gamma.reshape(n * c),
                            bias=beta.reshape(n * c), eps=self.eps)  # (1, N*C, H, W)
        return y.reshape(n, c, h, w)


def make_norm(channels: int, styles: int) -> nn.Module:
    """The reference's ``InstanceNorm2d(affine=True)`` (``styles`` 0), else a conditional one."""
    if styles == 0:
        return nn.InstanceNorm2d(channels, affine=True)
    return ConditionalInstanceNorm2d(channels, styles)


def apply_norm(norm: nn.Module, x: torch.Tensor, mix: torch.Tensor | None) -> torch.Tensor:
    """``norm(x)`` for a plain instance norm (``mix`` None), ``norm(x, mix)`` otherwise."""
    return norm(x) if mix is None else norm(x, mix)


def style_mix(known: Sequence[str], names: Sequence[str],
              weights: Sequence[float] | None = None) -> torch.Tensor:
    """Convex weights over the styles ``known`` (a network's ``config.styles``) that blend
    ``names`` by ``weights``: what :meth:`TransformerNet.forward` takes as ``style``.

    Args:
        known: the network's style names, in order.
        names: styles to blend, each one of ``known`` (a name given twice adds up).
        weights: one non-negative weight per name, normalised to sum 1; ``None``: equal.

    Returns:
        (S,) float32, non-negative, summing to 1.
    """
    if not known:
        raise ValueError("this TransformerNet has one style, built into it (plain instance "
                         "norms): it takes no style names")
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        got = f"unknown style(s) {', '.join(map(repr, unknown))}" if unknown else "no style name"
        raise ValueError(f"{got}: the network knows {', '.join(known)}")
    weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
    if len(weights) != len(names) or any(not (math.isfinite(w) and w >= 0) for w in weights) \
            or sum(weights) <= 0:
        raise ValueError(f"style weights must be {len(names)} finite number(s) >= 0, one per "
                         f"style name, with a positive sum; got {weights}")
    mix = torch.zeros(len(known))  # (S,)
    for name, w in zip(names, weights, strict=True):
        mix[known.index(name)] += w
    return mix / mix.sum()


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
        styles: rows of the conditional norms (0: plain ``InstanceNorm2d``).
    """

    def __init__(self, channels: int, styles: int = 0):
        super().__init__()
        self.conv1 = ReflectConv(channels, channels, 3)
        self.in1 = make_norm(channels, styles)
        self.conv2 = ReflectConv(channels, channels, 3)
        self.in2 = make_norm(channels, styles)

    def forward(self, x: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C, h, w), and (N, S) style weights for conditional norms -> (N, C, h, w)."""
        y = F.relu(apply_norm(self.in1, self.conv1(x), mix))  # (N, C, h, w)
        return x + apply_norm(self.in2, self.conv2(y), mix)  # (N, C, h, w)


class TransformerNet(PretrainedModel):
    """Johnson et al.'s feed-forward style network: ``net(x, style) -> stylized x``, in
    [0, 255]; one style (the reference) or ``config.styles`` (conditional instance norm)."""

    config_class = TransformerNetConfig

    def __init__(self, config: TransformerNetConfig):
        super().__init__(config)
        c1, c2, c3 = config.channels()
        s = len(config.styles)
        self.conv1 = ReflectConv(3, c1, 9)
        self.in1 = make_norm(c1, s)
        self.conv2 = ReflectConv(c1, c2, 3, stride=2)
        self.in2 = make_norm(c2, s)
        self.conv3 = ReflectConv(c2, c3, 3, stride=2)
        self.in3 = make_norm(c3, s)
        for i in range(config.residual_blocks):  # res1 .. resB: the reference's names
            self.add_module(f"res{i + 1}", ResidualBlock(c3, s))
        self.deconv1 = ReflectConv(c3, c2, 3, upsample=2)
        self.in4 = make_norm(c2, s)
        self.deconv2 = ReflectConv(c2, c1, 3, upsample=2)
        self.in5 = make_norm(c1, s)
        self.deconv3 = ReflectConv(c1, 3, 9)

    def forward(self, x: torch.Tensor, style: Style | None = None) -> torch.Tensor:
        """Stylize images in the reference's [0, 255] range.

        Args:
            x: (N, 3, H, W) float images in [0, 255], H, W >= 5.
            style: one-style network: ``None`` (or 0). With S ``config.styles``: an index
                into them, (N,) integer indices (one per image), or float mixing weights,
                (S,) for every image or (N, S), non-negative with rows summing to 1
                (:meth:`style_mix` makes them from names).

        Returns:
            (N, 3, H, W), about [0, 255] but not clamped.
        """
        check_images(x, "images", "TransformerNet", MIN_SIZE, "[0, 255]")
        mix = self.mixing_weights(style, len(x))  # (N, S) or None
        h, w = x.shape[-2:]
        inputs = x
        if h % 4 or w % 4:  # two stride-2 convs: pad so that both upsamplings land on H, W
            x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")  # (N, 3, H4, W4)
        y = F.relu(apply_norm(self.in1, self.conv1(x), mix))  # (N, C, H4, W4)
        y = F.relu(apply_norm(self.in2, self.conv2(y), mix))  # (N, 2C, H4/2, W4/2)
        y = F.relu(apply_norm(self.in3, self.conv3(y), mix))  # (N, 4C, H4/4, W4/4)
        for i in range(self.config.residual_blocks):
            y = getattr(self, f"res{i + 1}")(y, mix)  # (N, 4C, H4/4, W4/4)
        y = F.relu(apply_norm(self.in4, self.deconv1(y), mix))  # (N, 2C, H4/2, W4/2)
        y = F.relu(apply_norm(self.in5, self.deconv2(y), mix))  # (N, C, H4, W4)
        y = self.deconv3(y)[..., :h, :w]  # (N, 3, H, W)
        return inputs + y if self.config.content_skip else y

    @torch.no_grad()
    def stylize(self, images: torch.Tensor, style: Style | None = None) -> torch.Tensor:
        """Stylize [0, 1] images (inference; train through ``forward``, which is in [0, 255]).

        Args:
            images: (N, 3, H, W) float images in [0, 1], H, W >= 5.
            style: as :meth:`forward`'s.

        Returns:
            (N, 3, H, W) in [0, 1] (clamped).
        """
        return (self(images * 255.0, style) / 255.0).clamp(0.0, 1.0)

    def style_mix(self, names: str | Sequence[str],
                  weights: Sequence[float] | None = None) -> torch.Tensor:
        """(S,) mixing weights that blend the named styles by ``weights`` (normalised; default
        equal), for :meth:`forward`: ``net.stylize(x, net.style_mix(["swirls", "waves"]))``.
        An unknown name is a ``ValueError`` listing ``config.styles``."""
        return style_mix(self.config.styles, names, weights)

    def mixing_weights(self, style: Style | None, batch: int) -> torch.Tensor | None:
        """``style`` (see :meth:`forward`) as (N, S) float weights; ``None`` for a one-style
        network. A ``ValueError`` saying what was wrong otherwise."""
        names = self.config.styles
        if not names:
            if style is None or (type(style) is int and style == 0):
                return None
            raise ValueError(f"this TransformerNet has one style (config.styles is empty): "
                             f"call it with style=None, got {_describe(style)}")
        s = len(names)
        hint = f"{s} styles ({', '.join(names)})"
        if style is None:
            raise ValueError(f"this TransformerNet knows {hint}: pass style=, an index, (N,) "
                             "indices or mixing weights (net.style_mix(names) makes them)")
        given = style
        if type(style) is int:
            style = torch.tensor(style)
        if not isinstance(style, torch.Tensor) or style.dtype == torch.bool:
            raise TypeError(f"style must be an int, an integer tensor of indices or a float "
                            f"tensor of mixing weights, got {_describe(given)}; for names, "
                            "pass net.style_mix(names)")
        if not style.is_floating_point():  # indices
            if style.shape not in ((), (batch,)) or not ((style >= 0) & (style < s)).all():
                raise ValueError(f"style indices must be one int or ({batch},) ints in [0, {s}) "
                                 f"for {batch} image(s) and {hint}; got {_describe(given)}")
            return F.one_hot(style.expand(batch), s).to(self.in1.weight)  # (N, S)
        mix = style.expand(batch, -1) if style.ndim == 1 else style  # (N, S)
        if mix.shape != (batch, s) or not torch.isfinite(mix).all() or (mix < 0).any() \
                or ((mix.sum(-1) - 1).abs() > MIX_TOLERANCE).any():
            raise ValueError(f"style mixing weights must be ({s},) or ({batch}, {s}) for "
                             f"{batch} image(s) and {hint}, >= 0 with rows summing to 1; got "
                             f"{_describe(style)}")
        return mix.to(self.in1.weight)


def _describe(style: object) -> str:
    """A short account of a ``style`` argument for error messages."""
    if isinstance(style, torch.Tensor):
        values = style.tolist() if style.numel() <= 8 else "..."
        return f"a {style.dtype} tensor of shape {tuple(style.shape)}: {values}"
    return repr(style)

# ----------------------------------------------------------------------------- loading


def load_fast_style(path: str | os.PathLike) -> TransformerNet:
    """Load a fast-neural-style state dict (``.pth`` or ``.safetensors``) as a one-style
    TransformerNet (a multi-style network is saved and loaded as an mmgen model folder).

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
