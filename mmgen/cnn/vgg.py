"""VGG (Simonyan & Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition"), optionally with batch norm after every conv (as torchvision's ``vgg*_bn``).

The network is a table of 3x3 convs (an int: output channels) and 2x2 max-pools (``"M"``);
tables ``A, B, D, E`` are the paper's columns for VGG-11/13/16/19 (Table 1). Parameter names
are torchvision's (``features.<i>``, ``classifier.{0,3,6}``).

Two input regimes (``stem``; VGG has no large-stride stem, the name is shared with the family):

* ``"imagenet"``: all five max-pools, features average-pooled to 7x7, so the classifier reads
  512*7*7 values. Needs at least 32x32 px (2**pools).
* ``"small"`` (28-64 px datasets): the final max-pool is dropped (it is the last layer, so no
  other index moves) and features are pooled to 1x1: the classifier reads 512 values. Needs at
  least 16x16 px.

``forward_features`` returns the input of the last linear layer, the (N, hidden) output of
``classifier[:-1]``; ``head`` is ``classifier[6]`` itself (a property, so no duplicate keys).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmgen.cnn.base import Classifier, init_vgg_style
from mmgen.registry import register_presets

# The paper's Table 1 columns: conv output channels, "M" = 2x2 max-pool.
TABLES: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # VGG-11
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # VGG-13
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
          512, 512, 512, "M", 512, 512, 512, "M"),  # VGG-16
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),  # VGG-19
}


@dataclass
class VGGConfig:
    layers: str | tuple[int | str, ...] = "D"  # a TABLES name, or a table of widths and "M"
    batch_norm: bool = False  # BatchNorm2d after every conv (torchvision's vgg*_bn)
    num_classes: int = 1000  # output classes
    in_channels: int = 3  # image channels (1 for MNIST)
    stem: str = "imagenet"  # "imagenet" (5 pools, 7x7 avg-pool) or "small" (4 pools, 1x1)
    hidden: int = 4096  # width of the two hidden fully connected layers
    dropout: float = 0.5  # dropout after each hidden fully connected layer

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):  # a table read back from config.json
            self.layers = tuple(self.layers)


def layer_table(layers: str | tuple[int | str, ...] | list[int | str]) -> tuple[int | str, ...]:
    """The checked layer table for a ``VGGConfig.layers`` value (a name or a table)."""
    if isinstance(layers, str):
        if layers not in TABLES:
            raise ValueError(f"unknown VGG table {layers!r}; choose one of {sorted(TABLES)} "
                             "or give a table like (64, 'M', 128, 'M')")
        return TABLES[layers]
    table = tuple(layers)
    bad = [v for v in table if v != "M" and not (isinstance(v, int) and v > 0)]
    if bad or not any(v != "M" for v in table):
        raise ValueError(f"a VGG table holds positive conv widths and 'M' (max-pool) entries "
                         f"with at least one conv; got {list(table)}")
    return table


def make_features(table: tuple[int | str, ...], in_channels: int,
                  batch_norm: bool) -> nn.Sequential:
    """conv3x3 [+ BN] + ReLU for each width, MaxPool2d(2) for each "M"."""
    layers: list[nn.Module] = []
    for v in table:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())  # not in-place: feature_maps() hooks see the true outputs
        in_channels = v
    return nn.Sequential(*layers)


class VGG(Classifier):
    config_class = VGGConfig

    def __init__(self, config: VGGConfig):
        super().__init__(config)
        if config.stem not in ("imagenet", "small"):
            raise ValueError(f"VGG stem must be 'imagenet' or 'small', got {config.stem!r}")
        table = layer_table(config.layers)
        if config.stem == "small" and table[-1] == "M":
            table = table[:-1]
        self.in_channels = config.in_channels
        self.min_input_size = 2 ** table.count("M")  # each 2x2 pool needs >= 2 px
        width = [v for v in table if v != "M"][-1]
        pool = 1 if config.stem == "small" else 7
        self.features = make_features(table, config.in_channels, config.batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Linear(width * pool * pool, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),  # classifier.6 == head
        )
        init_vgg_style(self)

    @property
    def head(self) -> nn.Linear:
        return self.classifier[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, hidden)
        x = self.features(x)  # (N, 512, H/32, W/32) imagenet; (N, 512, H/16, W/16) small
        x = torch.flatten(self.avgpool(x), 1)  # (N, 512 * pool * pool)
        return self.classifier[:-1](x)  # (N, hidden)


# torchvision's vgg11 ... vgg19_bn (Simonyan & Zisserman 2015, table 1: configurations A-E).
PRESETS = {f"vgg{depth}{'_bn' if bn else ''}": VGGConfig(layers=table, batch_norm=bn)
           for depth, table in (("11", "A"), ("13", "B"), ("16", "D"), ("19", "E"))
           for bn in (False, True)}
register_presets("cnn", PRESETS, VGG)
