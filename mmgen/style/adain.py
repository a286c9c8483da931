"""Arbitrary style transfer with adaptive instance normalization (Huang & Belongie 2017,
"Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization").

One network for every style: a fixed VGG-19 encoder f (up to relu4_1), the AdaIN operation on
its features, and a trained decoder g::

    content c in [0, 1]   (N, 3, H, W)   --f-->  f(c)  (N, 512, ceil(H/8), ceil(W/8))
    style s in [0, 1]     (K, 3, Hs, Ws) --f-->  f(s)  (K, 512, ceil(Hs/8), ceil(Ws/8))
    t = alpha * AdaIN(f(c), f(s)) + (1 - alpha) * f(c)     (N, 512, h, w)
    g(t)                  (N, 3, 8h, 8w), cropped to (N, 3, H, W)

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)   (eq. 8), per sample and channel

alpha is the paper's content-style trade-off; with K style images and weights w_k,
t = sum_k w_k AdaIN(f(c), f(s_k)) is its style interpolation (both "runtime controls", Sec. 7;
the decoder is trained at alpha = 1 with one style).

The encoder is the "normalised" VGG-19 converted from Torch: a 1x1 conv 3 -> 3 first (the
published weights use it to turn [0, 1] RGB into the input the original Caffe VGG expects),
then reflection-padded 3x3 convs with ReLUs and 2x2 max-pools with ``ceil_mode=True``; the
decoder mirrors it with nearest-neighbour upsampling. Both are ``nn.Sequential`` modules whose
indices are those of naoto0804/pytorch-AdaIN ``net.py``, so ``vgg_normalised.pth`` and
``decoder.pth`` load with :func:`load_adain_encoder` and :func:`load_adain_decoder`
(:func:`load_adain`: both). The encoder keeps layers 0..30 (to relu4_1), the only ones AdaIN
uses; the full file (to relu5_4) is accepted and its relu4_2..relu5_4 weights are dropped.

``depth`` 3 (not the paper's) stops the encoder at relu3_1, (N, 256, H/4, W/4), and starts
the decoder at the mirror of conv3_1: a shallower model for random encoders, whose relu4_1 a
decoder does not learn to invert (docs/style.md). The published files are depth 4.

Sizes: any H, W >= 9 (depth 3: >= 5; the deepest features must be at least 2x2 for their
reflection padding and variance); the output is cropped to the content's size. Style images
may have another size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmgen.checkpoint import check_shapes, load_state_dict
from mmgen.cnn.vgg import TABLES
from mmgen.registry import PretrainedModel, register_presets
from mmgen.style.images import check_images

ENCODER_TABLE = TABLES["E"][:12]  # VGG-19 (config E) up to its first 512-channel conv: relu4_1
FEATURE_LAYERS = (3, 10, 17, 30)  # encoder indices of relu1_1, relu2_1, relu3_1, relu4_1
# The decoder mirrors the encoder: conv widths at width 1 and "U" = nearest upsampling x2.
DECODER_TABLE = (256, "U", 256, 256, 256, 128, "U", 128, 64, "U", 64, 3)
# Per depth: the encoder table's length (to relu{depth}_1) and where the decoder table starts
# (the mirror of conv{depth}_1).
DEPTHS = {4: (12, 0), 3: (7, 5)}


def min_size(depth: int = 4) -> int:
    """The smallest side an AdaIN model of ``depth`` takes: its deepest features, after
    depth - 1 ceil-mode pools, must be at least 2 px."""
    return 2 ** (depth - 1) + 1


@dataclass
class AdaINConfig:
    """The AdaIN model; the defaults are the reference's. The encoder is fixed."""

    width: float = 1.0  # decoder channel multiplier: 1 = 256/128/64 channels (the reference)
    eps: float = 1e-5  # added to the channel variances before the square root (the reference)
    encoder_width: float = 1.0  # encoder channel multiplier: 1 = VGG-19's 64..512 channels
    #   (the published weights); 0.5 = a 4x cheaper encoder of the same layout, for encoders
    #   of our own (random_encoder), whose relu4_1 then has 256 channels
    depth: int = 4  # AdaIN at relu{depth}_1: 4 (the paper, the published files) or 3

    def __post_init__(self) -> None:
        for name in ("width", "encoder_width"):
            value = getattr(self, name)
            if not 64 * value >= 1 or 64 * value != int(64 * value):
                raise ValueError(f"AdaINConfig.{name} must make 64 * {name} a positive whole "
                                 f"number of channels, got {name}={value}; e.g. 1.0 or 0.5")
        if self.depth not in DEPTHS:
            raise ValueError(f"AdaINConfig.depth must be one of {sorted(DEPTHS)} (AdaIN at "
                             f"relu{{depth}}_1), got {self.depth}")
        if not self.eps > 0:
            raise ValueError(f"AdaINConfig.eps must be > 0, got {self.eps}")


# ----------------------------------------------------------------------------- AdaIN


def channel_mean_std(feat: torch.Tensor, eps: float = 1e-5
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and standard deviation, as the reference's
    ``calc_mean_std``: unbiased variance plus ``eps``, then the square root.

    Args:
        feat: (N, C, H, W) features, H * W >= 2.
        eps: added to the variance.

    Returns:
        mean and std, each (N, C, 1, 1).
    """
    var, mean = torch.var_mean(feat.flatten(2), dim=2, keepdim=True)  # (N, C, 1) each
    return mean.unsqueeze(-1), (var + eps).sqrt().unsqueeze(-1)


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = 1e-5
          ) -> torch.Tensor:
    """Adaptive instance normalization (eq. 8): the content's channel statistics replaced
    by the style's.

    Args:
        content_feat: (N, C, H, W).
        style_feat: (N or 1, C, Hs, Ws); one style may serve all N.
        eps: added to the variances.

    Returns:
        (N, C, H, W).
    """
    c_mean, c_std = channel_mean_std(content_feat, eps)  # (N, C, 1, 1)
    s_mean, s_std = channel_mean_std(style_feat, eps)  # (N or 1, C, 1, 1)
    return (content_feat - c_mean) / c_std * s_std + s_mean


# ----------------------------------------------------------------------------- networks


def vgg_layers(table: Sequence[int | str]) -> list[nn.Module]:
    """The normalised VGG's layers for a VGG table: the 1x1 colour conv, then reflection
    pad + 3x3 conv + ReLU per width and a 2x2 ceil-mode max-pool per "M"."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    channels = 3
    for v in table:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # odd sizes round up
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, v, 3), nn.ReLU()]
            channels = v
    return layers


class AdaINEncoder(nn.Sequential):
    """The normalised VGG-19 up to relu4_1 (indices 0..30 of the reference's ``vgg``), or
    to relu3_1 (0..17) at depth 3.

    Args:
        width: channel multiplier (1: 64/128/256/512, the published network).
        depth: 4 (to relu4_1) or 3 (to relu3_1).
    """

    def __init__(self, width: float = 1.0, depth: int = 4):
        length = DEPTHS[depth][0]
        table = [v if v == "M" else int(v * width) for v in ENCODER_TABLE[:length]]
        super().__init__(*vgg_layers(table))
        self.channels = table[-1]  # of relu{depth}_1
        self.feature_layers = FEATURE_LAYERS[:depth]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> relu4_1 (N, 512, ceil(H/8), ceil(W/8)) (depth 3:
        relu3_1, (N, 256, ceil(H/4), ceil(W/4)))."""
        return self.intermediate(x)[-1]

    def intermediate(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1_1 (N, 64, H, W), relu2_1 (N, 128, H/2, W/2), relu3_1 (N, 256, H/4, W/4) and
        relu4_1 (N, 512, H/8, W/8) (sizes rounded up; depth 3 stops at relu3_1) of
        (N, 3, H, W) images in [0, 1]: the features of the training loss (the reference's
        ``encode_with_intermediate``)."""
        features = []
        for i, layer in enumerate(self):
            x = layer(x)
            if i in self.feature_layers:
                features.append(x)
        return features


class AdaINDecoder(nn.Sequential):
    """The decoder g: relu4_1 features back to an image (the reference's ``decoder``); at
    depth 3, relu3_1 features (the reference's layers from the mirror of conv3_1 on).

    Args:
        width: channel multiplier of the hidden convs (1: 256/128/64, the reference).
        in_channels: channels of the encoder's relu4_1 (512 for the published encoder).
        depth: 4 or 3, as the encoder's.
    """

    def __init__(self, width: float = 1.0, in_channels: int = 512, depth: int = 4):
        layers: list[nn.Module] = []
        channels = in_channels
        table = DECODER_TABLE[DEPTHS[depth][1]:]
        for i, v in enumerate(table):
            if v == "U":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                continue
            last = i == len(table) - 1
            out = v if last else int(v * width)
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, out, 3)]
            if not last:  # the image comes out raw, no ReLU
                layers.append(nn.ReLU())
            channels = out
        super().__init__(*layers)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(N, 512, h, w) features -> (N, 3, 8h, 8w) image (depth 3: (N, 256, h, w) ->
        (N, 3, 4h, 4w)), about [0, 1], not clamped."""
        return super().forward(t)


class AdaINModel(PretrainedModel):
    """Encoder + AdaIN + decoder: ``model(content, style, alpha) -> stylized content``."""

    config_class = AdaINConfig

    def __init__(self, config: AdaINConfig):
        super().__init__(config)
        self.encoder = AdaINEncoder(config.encoder_width, config.depth)
        self.encoder.requires_grad_(False)  # fixed: only the decoder is trained
        self.decoder = AdaINDecoder(config.width, self.encoder.channels, config.depth)
        self.min_size = min_size(config.depth)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> relu4_1 features (N, 512, ceil(H/8), ceil(W/8))."""
        check_images(images, "images", "AdaIN", self.min_size)
        return self.encoder(images)

    def mix(self, content_feat: torch.Tensor, style_feat: torch.Tensor, alpha: float = 1.0,
            weights: Sequence[float] | None = None) -> torch.Tensor:
        """The decoder input t: AdaIN of the content features, blended with them by alpha.

        Args:
            content_feat: (N, 512, h, w) relu4_1 features of the content images.
            style_feat: (N or 1, 512, hs, ws) style features; with ``weights``, (K, ...).
            alpha: 1 = full style, 0 = the content features unchanged.
            weights: K style weights: each content gets sum_k w_k AdaIN(content, style_k).
                Not normalised (the reference's test.py divides them by their sum first).

        Returns:
            t (N, 512, h, w).
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (1 = full style), got {alpha}")
        if weights is None:
            if style_feat.shape[0] not in (1, content_feat.shape[0]):
                raise ValueError(f"one style per content image or one for all: got "
                                 f"{style_feat.shape[0]} styles for {content_feat.shape[0]} "
                                 "contents (pass weights to blend several styles)")
            t = adain(content_feat, style_feat, self.config.eps)  # (N, 512, h, w)
        else:
            w = torch.as_tensor(weights, dtype=content_feat.dtype, device=content_feat.device)
            if w.ndim != 1 or len(w) != style_feat.shape[0]:
                raise ValueError(f"weights needs one number per style image: got "
                                 f"{list(w.shape)} weights for {style_feat.shape[0]} styles")
            s_mean, s_std = channel_mean_std(style_feat, self.config.eps)  # (K, C, 1, 1)
            # AdaIN is affine in the style statistics: sum_k w_k AdaIN(x, s_k) is AdaIN with
            # the weighted statistics, sum_k w_k std_k and sum_k w_k mean_k.
            mix_mean = torch.einsum("k,kcij->cij", w, s_mean)[None]  # (1, C, 1, 1)
            mix_std = torch.einsum("k,kcij->cij", w, s_std)[None]  # (1, C, 1, 1)
            c_mean, c_std = channel_mean_std(content_feat, self.config.eps)  # (N, C, 1, 1)
            t = (content_feat - c_mean) / c_std * mix_std + mix_mean  # (N, 512, h, w)
        return alpha * t + (1.0 - alpha) * content_feat

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0,
                weights: Sequence[float] | None = None) -> torch.Tensor:
        """Stylize content images with style images.

        Args:
            content: (N, 3, H, W) images in [0, 1], H, W >= 9.
            style: (N or 1, 3, Hs, Ws) images in [0, 1]; with ``weights``, (K, 3, Hs, Ws).
            alpha: content-style trade-off in [0, 1] (1 = full style).
            weights: K weights to blend K styles (see :meth:`mix`).

        Returns:
            (N, 3, H, W), about [0, 1] but not clamped.
        """
        check_images(style, "style", "AdaIN", self.min_size)
        h, w = content.shape[-2:]
        t = self.mix(self.encode(content), self.encoder(style), alpha, weights)  # (N, 512, ..)
        return self.decoder(t)[..., :h, :w]  # (N, 3, 8 ceil(H/8), ...) -> (N, 3, H, W)

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0,
                weights: Sequence[float] | None = None) -> torch.Tensor:
        """:meth:`forward` for inference: the same arguments, output clamped to [0, 1]."""
        return self(content, style, alpha, weights).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- loading


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_adain_encoder(path: str | os.PathLike) -> AdaINEncoder:
    """Load the reference's ``vgg_normalised.pth`` (or a ``.safetensors`` of it).

    The file holds either the layers to relu4_1 or the complete network to relu5_4 (as
    published), whose relu4_2..relu5_4 weights are dropped. Names and shapes are checked
    strictly (a ``ValueError`` lists what is missing, unexpected or mis-shaped).

    Args:
        path: the weight file; ``.pth`` files go through ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    state = load_state_dict(path)
    encoder = AdaINEncoder()
    expected = _shapes(encoder)
    with torch.device("meta"):
        full = _shapes(nn.Sequential(*vgg_layers(TABLES["E"])))  # to relu5_4 (and pool5)
    extra = set(state) - set(expected)
    if extra and extra <= set(full):  # more than relu4_1: must be the whole published network
        expected = full
    check_shapes(expected, {k: tuple(v.shape) for k, v in state.items()},
                 f"{path} as the AdaIN encoder (normalised VGG-19, keys 0.weight .. 29.bias to "
                 "relu4_1, or .. 51.bias to relu5_4)")
    encoder.load_state_dict({k: v for k, v in state.items() if k in encoder.state_dict()})
    return encoder.eval()


def load_adain_decoder(path: str | os.PathLike) -> AdaINDecoder:
    """Load the reference's ``decoder.pth`` (or a ``.safetensors``, or a slimmer decoder: the
    width is read from the first conv), with strict name and shape checks.

    Args:
        path: the weight file; ``.pth`` files go through ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    state = load_state_dict(path)
    first = state.get("1.weight")
    fits = first is not None and first.ndim == 4
    width = first.shape[0] / DECODER_TABLE[0] if fits else 1.0
    try:
        width = AdaINConfig(width=width).width
    except ValueError:  # fits no decoder: check against the reference's, which says why
        width = 1.0
    decoder = AdaINDecoder(width, first.shape[1] if fits else 512)
    check_shapes(_shapes(decoder), {k: tuple(v.shape) for k, v in state.items()},
                 f"{path} as an AdaIN decoder (width {width}, keys 1.weight .. 28.bias as "
                 "pytorch-AdaIN's decoder)")
    decoder.load_state_dict(state)
    return decoder.eval()


def load_adain(encoder_path: str | os.PathLike, decoder_path: str | os.PathLike
               ) -> AdaINModel:
    """An :class:`AdaINModel` from the reference's two files (``vgg_normalised.pth``,
    ``decoder.pth``), in eval mode; the decoder's width sets ``config.width``."""
    encoder = load_adain_encoder(encoder_path)
    decoder = load_adain_decoder(decoder_path)
    if decoder[1].in_channels != encoder.channels:
        raise ValueError(f"{decoder_path} decodes {decoder[1].in_channels}-channel features "
                         f"but {encoder_path} makes {encoder.channels}: not a pair")
    width = decoder[1].out_channels / DECODER_TABLE[0]
    model = AdaINModel(AdaINConfig(width=width))
    model.encoder.load_state_dict(encoder.state_dict())
    model.decoder.load_state_dict(decoder.state_dict())
    return model.eval()


PRESETS: dict[str, AdaINConfig] = {
    # The reference: VGG-19 to relu4_1 (3.5 M fixed parameters) + a 3.5 M-parameter decoder.
    "adain": AdaINConfig(),
    # A half-width decoder (~0.9 M parameters) for training on a CPU.
    "adain-small": AdaINConfig(width=0.5),
    # Half-width encoder and decoder (0.88 M fixed + 0.88 M trained parameters): about 4x
    # cheaper per image, for our random encoders (issue #19's 1.5 s per 512 px image).
    "adain-slim": AdaINConfig(width=0.5, encoder_width=0.5),
    # adain-slim cut at relu3_1 (0.14 M fixed + 0.14 M trained parameters): the bundled
    # style-adain's, behind a random encoder whose relu4_1 no decoder learned to invert.
    "adain-slim-relu3": AdaINConfig(width=0.5, encoder_width=0.5, depth=3),
}
register_presets("style", PRESETS, AdaINModel)
