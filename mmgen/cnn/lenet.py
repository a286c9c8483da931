"""LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

The 1998 layout at 32x32 input: C1 6@5x5 conv -> S2 pool -> C3 16@5x5 conv -> S4 pool ->
C5 120 -> F6 84 -> classes. C3 is fully connected to S2 here (the paper's sparse connection
table was an artefact of 1998 compute), which gives 61,706 parameters for 10 classes.
28x28 inputs (MNIST) are zero-padded by 2 px in C1 so the layout and parameter count stay.

``classic=True`` uses the paper's tanh and average pooling; the default is the modern
ReLU + max pooling, which trains faster and better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmgen.cnn.base import Classifier
from mmgen.registry import register_model


@dataclass
class LeNetConfig:
    num_classes: int = 10  # output classes
    in_channels: int = 1  # image channels
    input_size: int = 32  # 32 (the paper) or 28 (MNIST, padded to 32 inside C1)
    classic: bool = False  # tanh + average pooling as in 1998; default ReLU + max pooling
    dropout: float = 0.0  # dropout before the last two fully connected layers


class LeNet5(Classifier):
    config_class = LeNetConfig
    min_input_size = 28

    def __init__(self, config: LeNetConfig):
        super().__init__(config)
        if config.input_size not in (28, 32):
            raise ValueError(f"LeNet-5 takes 28 or 32 px inputs, got {config.input_size}")
        self.in_channels = config.in_channels
        act = nn.Tanh if config.classic else nn.ReLU
        pool = nn.AvgPool2d if config.classic else nn.MaxPool2d
        pad = (32 - config.input_size) // 2
        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, 6, 5, padding=pad), act(), pool(2),  # C1, S2
            nn.Conv2d(6, 16, 5), act(), pool(2),  # C3, S4 -> (N, 16, 5, 5)
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(), nn.Dropout(config.dropout),  # C5
            nn.Linear(120, 84), act(), nn.Dropout(config.dropout),  # F6
        )
        self.head = nn.Linear(84, config.num_classes)

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = super().check_input(x)
        if tuple(x.shape[-2:]) != (self.config.input_size,) * 2:
            raise ValueError(
                f"this LeNet-5 was built for {self.config.input_size}x{self.config.input_size} "
                f"inputs, got {x.shape[-2]}x{x.shape[-1]}"
            )
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (N, 84)


@register_model("cnn/lenet5")
def lenet5(**overrides) -> LeNet5:
    return LeNet5(LeNetConfig(**overrides))
