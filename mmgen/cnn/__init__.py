"""CNN classifiers: LeNet-5 -> AlexNet -> VGG -> GoogLeNet -> ResNet (+ squeeze-excitation).

All share :class:`mmgen.cnn.base.Classifier`: ``forward(x) -> logits``,
``forward_features(x)``, ``feature_maps(x, layers)``. Parameter names follow torchvision
(``mmgen.interop.from_torchvision`` loads torchvision models and weight files).
"""

from mmgen.cnn.alexnet import AlexNet, AlexNetConfig
from mmgen.cnn.attributes import AttributeNet, AttributeNetConfig
from mmgen.cnn.base import Classifier
from mmgen.cnn.googlenet import GoogLeNet, GoogLeNetConfig, GoogLeNetOutputs
from mmgen.cnn.lenet import LeNet5, LeNetConfig
from mmgen.cnn.resnet import ResNet, ResNetConfig
from mmgen.cnn.vgg import VGG, VGGConfig

__all__ = [
    "VGG",
    "AlexNet",
    "AlexNetConfig",
    "AttributeNet",
    "AttributeNetConfig",
    "Classifier",
    "GoogLeNet",
    "GoogLeNetConfig",
    "GoogLeNetOutputs",
    "LeNet5",
    "LeNetConfig",
    "ResNet",
    "ResNetConfig",
    "VGGConfig",
]
