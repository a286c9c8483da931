"""ResNet (He et al., 2016, "Deep Residual Learning for Image Recognition"), with optional
squeeze-and-excitation (Hu et al., 2018, "Squeeze-and-Excitation Networks").

``BasicBlock`` (two 3x3 convs; ResNet-18/34) and ``Bottleneck`` (1x1 - 3x3 - 1x1, 4x wider
output; ResNet-50/101/152). As in torchvision ("ResNet v1.5") a bottleneck strides in its 3x3
conv, not in the first 1x1 as in the paper. Parameter names are torchvision's (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.{0,1}``, ``fc``), so its checkpoints load
unchanged (see :func:`mmgen.interop.from_torchvision`).

* ``se_reduction > 0`` adds a squeeze-and-excitation gate to every block, on the residual
  branch after its last BN and before the residual addition (Hu et al., Fig. 3). Its layers are
  ``<block>.se.fc1`` / ``.fc2`` (1x1 convs, named like ``torchvision.ops.SqueezeExcitation``).
* ``stem="small"`` (CIFAR-style, for 28-64 px inputs): conv1 is 3x3 stride 1 and there is no
  max-pool, so a 32 px image reaches layer4 at 4x4. Both stems accept any input >= 1 px.

* ``width`` (default 64, torchvision's) sets the channels of conv1 and layer1; each later stage
  doubles them. Narrower ResNets (e.g. 16: 1/16 of the parameters) suit small datasets.

``forward_features`` returns the globally average-pooled layer4 output (N, 8 * width *
expansion; 512 * expansion at the default width).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.cnn.base import Classifier
from mmgen.registry import register_presets


@dataclass
class ResNetConfig:
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)  # residual blocks in layer1..layer4
    bottleneck: bool = False  # Bottleneck blocks (ResNet-50 and deeper) instead of BasicBlock
    num_classes: int = 1000  # output classes
    in_channels: int = 3  # image channels (1 for MNIST)
    stem: str = "imagenet"  # "imagenet" (7x7/2 conv1 + 3x3/2 max-pool) or "small" (3x3/1 conv1)
    se_reduction: int = 0  # squeeze-excitation channel reduction r (Hu et al. use 16); 0 = off
    zero_init_residual: bool = False  # zero the last BN of each block: blocks start as identity
    width: int = 64  # channels of conv1 and layer1; layer2..4 have 2x, 4x, 8x (64: torchvision)


class SqueezeExcite(nn.Module):
    """Channel gate s = sigmoid(W2 relu(W1 mean_hw(x))), output x * s (Hu et al., Eq. 2-4)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        squeezed = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1) squeeze
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))  # (N, C, 1, 1) excitation
        return x * s


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Projection shortcut (1x1 conv + BN) when the shape changes, else identity (no weights)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


def _se(channels: int, reduction: int) -> nn.Module:
    return SqueezeExcite(channels, reduction) if reduction > 0 else nn.Identity()


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, se_reduction: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()  # not in-place: feature_maps() hooks see the true outputs
        self.se = _se(planes, se_reduction)
        self.downsample = _shortcut(in_channels, planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, planes, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, se_reduction: int = 0):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.se = _se(out_channels, se_reduction)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, 4p, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))  # (N, planes, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (N, planes, H/s, W/s)
        out = self.se(self.bn3(self.conv3(out)))  # (N, 4 * planes, H/s, W/s)
        return self.relu(out + self.downsample(x))


class ResNet(Classifier):
    config_class = ResNetConfig
    min_input_size = 1  # every stride-2 layer pads enough to map 1 px to 1 px

    def __init__(self, config: ResNetConfig):
        super().__init__(config)
        if config.stem not in ("imagenet", "small"):
            raise ValueError(f"ResNet stem must be 'imagenet' or 'small', got {config.stem!r}")
        if len(config.layers) != 4 or min(config.layers) < 1:
            raise ValueError(f"ResNet needs 4 stages of >= 1 block each, got {config.layers}")
        if config.width < 1:
            raise ValueError(f"ResNet width must be >= 1 channel, got {config.width}")
        if config.se_reduction < 0:
            raise ValueError(f"se_reduction must be >= 0 (0 = off), got {config.se_reduction}")
        self.in_channels = config.in_channels
        block = Bottleneck if config.bottleneck else BasicBlock
        channels = config.width
        if config.stem == "small":
            self.conv1 = nn.Conv2d(config.in_channels, channels, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(config.in_channels, channels, 7, stride=2, padding=3,
                                   bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        widths = [config.width * 2**i for i in range(4)]  # 64, 128, 256, 512 at width 64
        for i, (planes, blocks) in enumerate(zip(widths, config.layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(blocks):
                stage.append(block(channels, planes, stride if j == 0 else 1, config.se_reduction))
                channels = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's scheme: Kaiming-normal convs (fan-out), BN weight 1 / bias 0, conv
        biases (only in SE) 0, PyTorch's default for fc. ``zero_init_residual`` zeroes each
        block's last BN weight so every block starts as the identity (Goyal et al., 2017)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, D)
        # w = config.width (64 as torchvision), e = block expansion (4 for bottlenecks)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, w, H/4, W/4) | small: H, W
        x = self.layer2(self.layer1(x))  # (N, 2w * e, H/8, W/8) | small: H/2, W/2
        x = self.layer4(self.layer3(x))  # (N, 8w * e, H/32, W/32) | small: H/8, W/8
        return torch.flatten(self.avgpool(x), 1)  # (N, 8w * e)


# torchvision's depths (He et al. 2016, table 1) and SE-ResNets (Hu et al. 2018).
PRESETS = {
    "resnet18": ResNetConfig(layers=(2, 2, 2, 2)),
    "resnet34": ResNetConfig(layers=(3, 4, 6, 3)),
    "resnet50": ResNetConfig(layers=(3, 4, 6, 3), bottleneck=True),
    "resnet101": ResNetConfig(layers=(3, 4, 23, 3), bottleneck=True),
    "resnet152": ResNetConfig(layers=(3, 8, 36, 3), bottleneck=True),
    "se_resnet18": ResNetConfig(layers=(2, 2, 2, 2), se_reduction=16),
    "se_resnet50": ResNetConfig(layers=(3, 4, 6, 3), bottleneck=True, se_reduction=16),
}
register_presets("cnn", PRESETS, ResNet)
