"""GoogLeNet / Inception v1 (Szegedy et al., 2015, "Going Deeper with Convolutions").

Every conv is followed by batch norm (eps 1e-3) and ReLU, as in torchvision's port of the
original weights; parameter names are torchvision's (``conv1.conv``, ``inception3a.branch2.1``,
``aux1.fc1``, ``fc``). Like torchvision, the "5x5" branch uses a 3x3 conv (a known slip in the
port, https://github.com/pytorch/vision/issues/906), kept so that its weights load.

* ``aux_logits``: the two auxiliary classifiers after inception4a/4d (paper Sec. 5). In
  training mode ``forward`` then returns ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``
  (torchvision's field names and order; the paper weights the aux losses by 0.3); in eval mode,
  or without aux heads, it returns the logits tensor.
* ``transform_input``: re-map inputs normalised with the ImageNet mean/std to the
  ``(x - 0.5) / 0.5`` normalisation the original weights expect (torchvision's behaviour).

Stems: ``"imagenet"`` (7x7/2 conv1 and two 3x3/2 max-pools, total stride 32; >= 15 px) or
``"small"`` (3x3/1 conv1, no first max-pool, total stride 8: 32 px inputs reach inception5 at
4x4; >= 4 px).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.cnn.base import Classifier
from mmgen.registry import register_model

# Smallest input side per stem (the ceil-mode 3x3/2 pools need >= 2 px; checked in tests).
MIN_INPUT_SIZE = {"imagenet": 15, "small": 4}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Inception modules (paper Table 1): in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


@dataclass
class GoogLeNetConfig:
    num_classes: int = 1000  # output classes
    in_channels: int = 3  # image channels (1 for MNIST; transform_input needs 3)
    stem: str = "imagenet"  # "imagenet" (7x7/2 conv1 + max-pool) or "small" (3x3/1, no pool)
    aux_logits: bool = False  # build the two auxiliary classifiers (returned in training mode)
    transform_input: bool = False  # re-map ImageNet-normalised input to (x - 0.5) / 0.5
    dropout: float = 0.2  # dropout before fc
    dropout_aux: float = 0.7  # dropout inside the auxiliary classifiers


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output with aux heads (torchvision's field names and order)."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class BasicConv2d(nn.Module):
    """conv (no bias) -> BN (eps 1e-3) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (paper Fig. 2b)."""

    def __init__(self, in_ch: int, ch1: int, ch3red: int, ch3: int, ch5red: int, ch5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, ch1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, ch3red, 1),
                                     BasicConv2d(ch3red, ch3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, ch5red, 1),
                                     BasicConv2d(ch5red, ch5, 3, padding=1))  # "5x5", see top
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_ch, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, out, H, W)
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool, 1x1 conv 128, fc 1024, dropout, fc."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.conv(F.adaptive_avg_pool2d(x, 4))  # (N, 128, 4, 4)
        x = F.relu(self.fc1(torch.flatten(x, 1)))  # (N, 1024)
        return self.fc2(self.dropout(x))


class GoogLeNet(Classifier):
    config_class = GoogLeNetConfig

    def __init__(self, config: GoogLeNetConfig):
        super().__init__(config)
        if config.stem not in MIN_INPUT_SIZE:
            raise ValueError(f"GoogLeNet stem must be 'imagenet' or 'small', got {config.stem!r}")
        if config.transform_input and config.in_channels != 3:
            raise ValueError("transform_input re-maps the 3 ImageNet channels; it needs "
                             f"in_channels=3, got {config.in_channels}")
        self.in_channels = config.in_channels
        self.min_input_size = MIN_INPUT_SIZE[config.stem]
        small = config.stem == "small"
        self.conv1 = (BasicConv2d(config.in_channels, 64, 3, padding=1) if small
                      else BasicConv2d(config.in_channels, 64, 7, stride=2, padding=3))
        self.maxpool1 = nn.Identity() if small else nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("inception3a", "inception3b"):
            self.add_module(name, Inception(*INCEPTIONS[name]))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            self.add_module(name, Inception(*INCEPTIONS[name]))
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        for name in ("inception5a", "inception5b"):
            self.add_module(name, Inception(*INCEPTIONS[name]))
        if config.aux_logits:
            self.aux1 = InceptionAux(512, config.num_classes, config.dropout_aux)
            self.aux2 = InceptionAux(528, config.num_classes, config.dropout_aux)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(1024, config.num_classes)
        # The transform as scale/shift per channel, computed in Python floats like torchvision
        # so results match bit for bit; non-persistent: not part of the state dict.
        scale = torch.tensor([s / 0.5 for s in IMAGENET_STD]).view(1, 3, 1, 1)
        shift = torch.tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN]).view(1, 3, 1, 1)
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's scheme: N(0, 0.01) convs and linears (torchvision truncates at +-2,
        i.e. +-200 std: in effect no truncation), BN weight 1 / bias 0, linear biases 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def _trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, ...]:
        """Pooled features (N, 1024), then the aux logits (aux2, aux1) if ``with_aux``."""
        if self.config.transform_input:
            x = x * self.input_scale + self.input_shift  # ImageNet mean/std -> (x - 0.5) / 0.5
        x = self.maxpool1(self.conv1(x))  # (N, 64, H/4, W/4) imagenet; (N, 64, H, W) small
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (N, 192, H/8, W/8) | (N, 192, H/2, W/2)
        x = self.inception3b(self.inception3a(x))  # (N, 480, ...)
        x = self.inception4a(self.maxpool3(x))  # (N, 512, H/16, W/16) | (N, 512, H/4, W/4)
        aux1 = self.aux1(x) if with_aux else None  # (N, classes)
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (N, 528, ...)
        aux2 = self.aux2(x) if with_aux else None  # (N, classes)
        x = self.maxpool4(self.inception4e(x))  # (N, 832, H/32, W/32) | (N, 832, H/8, W/8)
        x = self.inception5b(self.inception5a(x))  # (N, 1024, ...)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 1024)
        return (x, aux2, aux1) if with_aux else (x,)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 1024)
        return self._trunk(x, with_aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        """Logits (N, classes); ``GoogLeNetOutputs`` in training mode with aux heads."""
        x = self.check_input(x)
        if self.training and self.config.aux_logits:
            features, aux2, aux1 = self._trunk(x, with_aux=True)
            return GoogLeNetOutputs(self.fc(self.dropout(features)), aux2, aux1)
        return self.fc(self.dropout(self.forward_features(x)))  # (N, classes)


@register_model("cnn/googlenet")
def googlenet(**overrides) -> GoogLeNet:
    return GoogLeNet(GoogLeNetConfig(**overrides))
