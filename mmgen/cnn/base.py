"""The interface every classifier in mmgen.cnn shares.

* ``forward(x) -> logits`` (N, classes)
* ``forward_features(x) -> features`` (N, D): the pooled features the classifier head reads
  (FID / retrieval / linear probes use these)
* ``feature_maps(x, layers) -> {name: activation}``: named intermediate activations, e.g.
  for style-transfer losses; names are module paths (``"layer1"``, ``"features.3"``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from mmgen.registry import PretrainedModel


class Classifier(PretrainedModel, metaclass=abc.ABCMeta):
    """Base class of the CNN classifiers: subclasses define ``forward_features`` and ``head``."""

    #: smallest (height, width) the network accepts; checked with a clear error.
    min_input_size: int = 1
    #: input channels expected (set from the config by subclasses).
    in_channels: int = 3

    head: nn.Module  # features (N, D) -> logits (N, classes)

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, D)
        """Pooled features the head reads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        return self.head(self.forward_features(self.check_input(x)))

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Raise a clear error for a wrong rank, channel count or too-small image."""
        if x.ndim != 4:
            raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.in_channels}-channel images, got "
                f"{x.shape[1]} channels (convert with .convert('RGB') / ('L') first)"
            )
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"{type(self).__name__} needs images of at least {self.min_input_size}x"
                f"{self.min_input_size} px, got {x.shape[-2]}x{x.shape[-1]}"
            )
        return x

    def feature_maps(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run the network and return the outputs of the named sub-modules.

        Args:
            x: images (N, C, H, W).
            layers: module paths as in ``named_modules()`` (e.g. ``["layer1", "layer3"]``).
        """
        modules = dict(self.named_modules())
        unknown = [name for name in layers if name not in modules or name == ""]
        if unknown:
            top = [n for n, _ in self.named_children()]
            raise KeyError(f"unknown layer(s) {unknown}; top-level layers: {top}")
        out: dict[str, torch.Tensor] = {}
        hooks = [modules[name].register_forward_hook(
            lambda _m, _i, output, name=name: out.__setitem__(name, output)) for name in layers]
        try:
            self.forward_features(self.check_input(x))
        finally:
            for h in hooks:
                h.remove()
        return {name: out[name] for name in layers}


def init_vgg_style(module: nn.Module) -> None:
    """torchvision's VGG scheme, also used for AlexNet: Kaiming-normal convs (He et al.
    2015, fan-out), BatchNorm weight 1 / bias 0, N(0, 0.01) linears, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
