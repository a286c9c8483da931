"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012, "ImageNet Classification with Deep
Convolutional Neural Networks").

The layout is torchvision's single-tower variant from "One weird trick for parallelizing
convolutional neural networks" (Krizhevsky, 2014): conv widths 64-192-384-256-256, no local
response normalisation, dropout before the first two fully connected layers. Parameter names
are torchvision's (``features.{0,3,6,8,10}``, ``classifier.{1,4,6}``), so its checkpoints load
unchanged (see :func:`mmgen.interop.from_torchvision`).

Two input regimes (``stem``):

* ``"imagenet"``: conv1 is 11x11 stride 4; features are average-pooled to 6x6, so the
  classifier reads 256*6*6 = 9216 values. Needs at least 63x63 px.
* ``"small"`` (28-64 px datasets): conv1 is 3x3 stride 1 and the features are pooled to 1x1,
  so the classifier reads 256 values. Everything else, including layer indices, is unchanged.
  Needs at least 15x15 px.

``forward_features`` returns the input of the last linear layer: the (N, hidden) penultimate
activations after ``classifier[:-1]``. ``head`` is ``classifier[6]`` itself (a property, not a
second registered module), so the state dict keeps torchvision's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmgen.cnn.base import Classifier, init_vgg_style
from mmgen.registry import register_model

# Smallest input side per stem. imagenet: the three 3x3/2 max-pools need >= 3 px each, i.e.
# >= 15 px after conv1, and conv1 (11x11/4, pad 2) gives 15 px from 63 px. small: conv1 keeps
# the size, so 15 px.
MIN_INPUT_SIZE = {"imagenet": 63, "small": 15}


@dataclass
class AlexNetConfig:
    num_classes: int = 1000  # output classes
    in_channels: int = 3  # image channels (1 for MNIST)
    stem: str = "imagenet"  # "imagenet" (11x11/4 conv1, 6x6 pool) or "small" (3x3/1, 1x1 pool)
    hidden: int = 4096  # width of the two hidden fully connected layers
    dropout: float = 0.5  # dropout before each hidden fully connected layer


class AlexNet(Classifier):
    config_class = AlexNetConfig

    def __init__(self, config: AlexNetConfig):
        super().__init__(config)
        if config.stem not in MIN_INPUT_SIZE:
            raise ValueError(f"AlexNet stem must be 'imagenet' or 'small', got {config.stem!r}")
        self.in_channels = config.in_channels
        self.min_input_size = MIN_INPUT_SIZE[config.stem]
        small = config.stem == "small"
        conv1 = (nn.Conv2d(config.in_channels, 64, 3, padding=1) if small
                 else nn.Conv2d(config.in_channels, 64, 11, stride=4, padding=2))
        # ReLUs are not in-place so that feature_maps() hooks see the true conv outputs.
        self.features = nn.Sequential(
            conv1, nn.ReLU(), nn.MaxPool2d(3, stride=2),  # 0-2
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),  # 3-5
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 6-7
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8-9
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),  # 10-12
        )
        pool = 1 if small else 6
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(256 * pool * pool, config.hidden), nn.ReLU(),
            nn.Dropout(config.dropout), nn.Linear(config.hidden, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.num_classes),  # classifier.6 == head
        )
        init_vgg_style(self)  # torchvision's VGG scheme (torchvision leaves AlexNet at defaults)

    @property
    def head(self) -> nn.Linear:
        return self.classifier[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, hidden)
        x = self.features(x)  # (N, 256, h, w); h = 6 for 224 px imagenet, 3 for 32 px small
        x = torch.flatten(self.avgpool(x), 1)  # (N, 256 * pool * pool)
        return self.classifier[:-1](x)  # (N, hidden)


@register_model("cnn/alexnet")
def alexnet(**overrides) -> AlexNet:
    return AlexNet(AlexNetConfig(**overrides))
