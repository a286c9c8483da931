"""The feature ("loss") network behind style and content losses (Gatys et al. 2016, "Image
Style Transfer Using Convolutional Neural Networks", Sec. 2).

``net(images, layers) -> {name: activation}`` reads [0, 1] RGB images (N, 3, H, W),
standardises them with the ImageNet mean and std and returns the named activations. Layers
are named as in the papers, block by block (a block ends at a pool)::

    conv{b}_{i} / relu{b}_{i}   the i-th 3x3 conv of block b and its ReLU
    pool{b}                     the pool that ends block b (2x2, stride 2)

Two kinds, one vocabulary (``relu1_1 relu2_1 relu3_1 relu4_1 relu4_2 relu5_1`` exist in both):

* ``"vgg"``: VGG-16/19 features (Simonyan & Zisserman 2015) with torchvision's parameter
  names (``features.<i>.weight``), loaded from a file the user owns (torchvision's
  ``vgg19-dcbb9e9d.pth``, or the same tensors as ``.safetensors``); the classifier is dropped.
* ``"random"``: no download. Ustyuzhaninov et al. 2017 ("What does it take to generate natural
  textures?", ICLR) found that random, untrained filters at several spatial scales already
  make good texture (Gram) statistics. Here the scales come from pooling: the default
  ``"lite"`` table is VGG-shaped with one 3x3 conv per block (two in block 4), so its
  receptive fields grow 3 -> 94 px at a fraction of VGG's cost. Filters are seeded Kaiming
  normal (He et al. 2015), then each conv is rescaled so its pre-activations have zero mean
  and unit variance per channel (LSUV, Mishkin & Matas 2016) on seeded 1/f-spectrum noise
  images, which share the power spectrum of natural images (Field 1987). Deterministic.

Gatys et al. replace VGG's max-pools by average pools, which they found to improve the
gradient flow and give slightly more appealing results; ``pooling="avg"`` does the same here
(no parameters change, so torchvision weights load either way).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgen.checkpoint import check_shapes, load_state_dict
from mmgen.cnn.vgg import TABLES, make_features

# Layer tables (conv widths and "M" = pool). vgg16/vgg19 are torchvision's (paper's D and E).
ARCHS: dict[str, tuple[int | str, ...]] = {
    "vgg16": TABLES["D"],
    "vgg19": TABLES["E"],
    "lite": (32, "M", 64, "M", 128, "M", 256, 256, "M", 256),  # ~1.6 M params, random kind
}
KINDS = ("random", "vgg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FeatureConfig:
    """Which feature network; the defaults are the offline random one."""

    kind: str = "random"  # "random" (seeded, no weights file) or "vgg" (torchvision weights)
    arch: str = "lite"  # a layer table of ARCHS; "vgg" needs "vgg19" or "vgg16"
    pooling: str = "avg"  # "avg" (Gatys et al. 2016) or "max" (VGG as trained)
    seed: int = 0  # random kind: seed of the filters and of the calibration noise

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"FeatureConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"FeatureConfig.arch must be one of {sorted(ARCHS)}, got "
                             f"{self.arch!r}")
        if self.kind == "vgg" and not self.arch.startswith("vgg"):
            raise ValueError(f"kind='vgg' loads torchvision weights, so arch must be 'vgg19' or "
                             f"'vgg16', got {self.arch!r}")
        if self.pooling not in ("avg", "max"):
            raise ValueError(f"FeatureConfig.pooling must be 'avg' or 'max', got "
                             f"{self.pooling!r}")


# feature_network(kind) starts from these.
DEFAULTS: dict[str, FeatureConfig] = {
    "random": FeatureConfig(),
    "vgg": FeatureConfig(kind="vgg", arch="vgg19"),
}


def layer_indices(table: Sequence[int | str]) -> dict[str, int]:
    """Paper-style names -> index in torchvision's ``features`` Sequential (no batch norm):
    for VGG-19, ``relu1_1 -> 1``, ``relu4_2 -> 22``, ``relu5_1 -> 29``."""
    names: dict[str, int] = {}
    block, conv, index = 1, 0, 0
    for v in table:
        if v == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


class FeatureNetwork(nn.Module):
    """Frozen VGG-shaped features: ``net(images01, layers) -> {name: (N, C_l, H_l, W_l)}``.

    Build it with :func:`feature_network`; constructing the class directly gives untrained
    weights for ``kind="vgg"`` (load a state dict into it, e.g. for tests).
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        table = ARCHS[config.arch]
        self.features = make_features(table, 3, batch_norm=False)  # keys features.<i>.*
        if config.pooling == "avg":  # parameter-free swap, indices unchanged
            for i, m in enumerate(self.features):
                if isinstance(m, nn.MaxPool2d):
                    self.features[i] = nn.AvgPool2d(2, stride=2)
        self.layers = layer_indices(table)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        if config.kind == "random":
            _init_random(self, config.seed)
        self.requires_grad_(False)
        self.eval()

    @property
    def layer_names(self) -> list[str]:
        """Every layer name this network answers to (conv*, relu*, pool*)."""
        return list(self.layers)

    def min_size(self, layers: Sequence[str]) -> int:
        """Smallest image side for which every pool before ``layers`` has >= 1 px to read."""
        return self._min_size(max(self._indices(layers)))

    def _min_size(self, deepest: int) -> int:
        return 2 ** sum(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))
                        for m in self.features[:deepest + 1])

    def forward(self, images: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` for [0, 1] RGB ``images`` (N, 3, H, W); the network
        stops at the deepest requested layer."""
        indices = self._indices(layers)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"FeatureNetwork expects RGB images (N, 3, H, W) in [0, 1], got "
                             f"shape {tuple(images.shape)}")
        need = self._min_size(max(indices))
        if min(images.shape[-2:]) < need:
            raise ValueError(f"layers {list(layers)} need images of at least {need} px a side, "
                             f"got {images.shape[-2]}x{images.shape[-1]}")
        wanted = dict(zip(indices, layers, strict=True))
        out: dict[str, torch.Tensor] = {}
        x = (images - self.mean) / self.std  # (N, 3, H, W), ImageNet-standardised
        for i, module in enumerate(self.features[:max(indices) + 1]):
            x = module(x)  # (N, C_i, H / 2^pools, W / 2^pools)
            if i in wanted:
                out[wanted[i]] = x
        return {name: out[name] for name in layers}

    def _indices(self, layers: Sequence[str]) -> list[int]:
        if isinstance(layers, str) or not layers:
            raise ValueError(f"layers must be a non-empty list of names, got {layers!r}")
        unknown = [name for name in layers if name not in self.layers]
        if unknown:
            raise KeyError(f"unknown feature layer(s) {unknown} for {self.config.arch}; "
                           f"names look like {[n for n in self.layers if 'relu' in n][:6]}")
        return [self.layers[name] for name in layers]


# ----------------------------------------------------------------------------- random kind


def pink_noise(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` RGB images (n, 3, size, size) in [0, 1] with a 1/f amplitude spectrum, like
    natural images (Field 1987); colour channels share most of their signal, as in photos."""
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.fftfreq(size).view(1, -1)
    amplitude = 1.0 / torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / size)  # (size, size)
    white = torch.randn(n, 4, size, size, generator=generator)  # luminance + 3 colour
    noise = torch.fft.ifft2(torch.fft.fft2(white) * amplitude).real  # (n, 4, size, size)
    noise = noise / noise.std(dim=(2, 3), keepdim=True)
    rgb = noise[:, :1] + 0.3 * noise[:, 1:]  # (n, 3, size, size)
    rgb = (rgb - rgb.mean(dim=(1, 2, 3), keepdim=True)) / rgb.std(dim=(1, 2, 3), keepdim=True)
    return (0.45 + 0.22 * rgb).clamp(0, 1)


@torch.no_grad()
def _init_random(net: FeatureNetwork, seed: int) -> None:
    """Seeded Kaiming-normal filters, then per-channel LSUV calibration on pink noise."""
    generator = torch.Generator().manual_seed(seed)
    for m in net.features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(m.bias)
    lsuv_calibrate(net.features, (pink_noise(8, 96, generator) - net.mean) / net.std)


@torch.no_grad()
def lsuv_calibrate(layers: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Rescale every ``nn.Conv2d`` of ``layers`` so that, on the images ``x``, its outputs have
    zero mean and unit variance per channel (LSUV, Mishkin & Matas 2016, in one pass per
    layer, per channel): the random :class:`FeatureNetwork`'s calibration, and the random
    AdaIN encoder's (:func:`mmgen.style.train.random_encoder`).

    Args:
        layers: modules applied in order to ``x`` (e.g. an ``nn.Sequential``); convs are
            changed in place.
        x: calibration inputs of the first layer, (N, C, H, W).

    Returns:
        The output of the last layer, after calibration.
    """
    for m in layers:
        if isinstance(m, nn.Conv2d):
            y = m(x)  # (N, C, h, w)
            mean, std = y.mean(dim=(0, 2, 3)), y.std(dim=(0, 2, 3)).clamp_min(1e-6)  # (C,)
            m.weight.div_(std.view(-1, 1, 1, 1))
            m.bias.sub_(mean).div_(std)  # (W x + b - mean) / std
        x = m(x)
    return x


# ----------------------------------------------------------------------------- loading


def load_vgg_weights(net: FeatureNetwork, path: str | os.PathLike) -> FeatureNetwork:
    """Load the ``features.*`` tensors of a torchvision VGG state dict (``.pth`` through
    ``torch.load(weights_only=True)``, or ``.safetensors``) into ``net``; ``classifier.*``
    and anything else is ignored. Every feature parameter must be present with its shape."""
    path = Path(path)
    arch = net.config.arch
    if not path.is_file():
        raise FileNotFoundError(f"no VGG weights at {path}; give torchvision's {arch} state dict "
                                f"(e.g. vgg19-dcbb9e9d.pth) or use feature_network('random')")
    state = load_state_dict(path)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise ValueError(f"{path} has no 'features.*' tensors (found e.g. {sorted(state)[:3]}); "
                         f"expected a torchvision {arch} state dict like vgg19-dcbb9e9d.pth")
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    check_shapes(expected, {k: tuple(v.shape) for k, v in features.items()},
                 f"{path} as torchvision {arch} features")
    net.load_state_dict({k: v.float() for k, v in features.items()}, strict=True)
    return net


def feature_network(kind: str = "random", weights: str | os.PathLike | None = None,
                    **overrides: Any) -> FeatureNetwork:
    """Build a frozen feature network.

    Args:
        kind: ``"random"`` (offline, seeded) or ``"vgg"`` (needs ``weights``).
        weights: a torchvision VGG weights file for ``kind="vgg"``
            (``vgg19-dcbb9e9d.pth`` or a ``.safetensors`` with the same keys).
        **overrides: :class:`FeatureConfig` fields (``arch``, ``pooling``, ``seed``).
    """
    if kind not in DEFAULTS:
        raise ValueError(f"feature network kind must be one of {KINDS}, got {kind!r}")
    unknown = sorted(set(overrides) - {"arch", "pooling", "seed"})
    if unknown:
        raise TypeError(f"feature_network got unknown option(s) {unknown}; options: arch, "
                        f"pooling, seed")
    config = replace(DEFAULTS[kind], **overrides)
    if kind == "vgg" and weights is None:
        raise ValueError("kind='vgg' needs weights=<torchvision VGG file, e.g. "
                         "vgg19-dcbb9e9d.pth>; without a download use kind='random'")
    if kind == "random" and weights is not None:
        raise ValueError("kind='random' builds its filters from the seed and takes no weights "
                         "file; use kind='vgg' for a torchvision VGG file")
    net = FeatureNetwork(config)
    if weights is not None:
        load_vgg_weights(net, weights)
    return net
