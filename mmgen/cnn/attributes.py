"""A multi-head attribute classifier: one network, one linear head per attribute.

Built for judging Shapes images (colour, shape, size, position, background), so it keeps
spatial layout: a stride-2 stem and ResBlock stages downsample 64 -> 4 px, and the 4x4 map
is flattened (global pooling would throw away *where* the object is). The penultimate
features (``forward_features``) are the feature space of the Shapes FID.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmgen.cnn.base import Classifier
from mmgen.nn import Downsample, ResBlock
from mmgen.registry import register_model


@dataclass
class AttributeNetConfig:
    heads: dict[str, int] = field(default_factory=lambda: {"label": 10})  # attribute -> classes
    in_channels: int = 3  # image channels
    input_size: int = 64  # image side in pixels (a multiple of 8)
    channels: tuple[int, ...] = (32, 64, 128)  # widths; the stem and each stage halve the size
    feature_dim: int = 256  # width of the penultimate features
    dropout: float = 0.1  # dropout on the penultimate features


class AttributeNet(Classifier):
    """``forward(x) -> {attribute: logits}``; ``forward_features(x) -> (N, feature_dim)``."""

    config_class = AttributeNetConfig

    def __init__(self, config: AttributeNetConfig):
        super().__init__(config)
        c = config.channels
        factor = 2 ** (len(c) + 1)
        side = config.input_size // factor
        if side < 1 or config.input_size % factor:
            raise ValueError(f"input_size {config.input_size} must be a multiple of {factor}")
        self.in_channels = config.in_channels
        self.min_input_size = config.input_size
        self.stem = nn.Conv2d(config.in_channels, c[0], 3, stride=2, padding=1)
        stages, prev = [], c[0]
        for width in c:
            stages += [ResBlock(prev, width, temb_channels=None, groups=8), Downsample(width)]
            prev = width
        self.stages = nn.Sequential(*stages)
        self.norm = nn.GroupNorm(8, prev)
        self.proj = nn.Linear(prev * side * side, config.feature_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.ModuleDict({k: nn.Linear(config.feature_dim, n)
                                   for k, n in config.heads.items()})

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = super().check_input(x)
        if tuple(x.shape[-2:]) != (self.config.input_size,) * 2:
            raise ValueError(f"expected {self.config.input_size}x{self.config.input_size} images, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))  # (N, C, side, side), side = input_size / 2^(stages+1)
        h = torch.relu(self.norm(h)).flatten(1)  # (N, C * side * side)
        return torch.relu(self.proj(h))  # (N, feature_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.dropout(self.forward_features(self.check_input(x)))
        return {name: head(h) for name, head in self.head.items()}  # {attr: (N, classes)}


@register_model("cnn/attribute_net")
def attribute_net(**overrides) -> AttributeNet:
    return AttributeNet(AttributeNetConfig(**overrides))
