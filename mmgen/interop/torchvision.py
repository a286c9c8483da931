"""torchvision classifiers -> mmgen: AlexNet, VGG (with/without BN), GoogLeNet, ResNet.

mmgen's CNNs use torchvision's parameter names, so conversion is an identity key map; what
this module adds is reading the *configuration* off a torchvision model (or off a state dict
for a named architecture) and checking every key and shape through
:func:`mmgen.interop.convert.load_converted`. Hyper-parameters that leave no trace in the
weights (strides, kernel sizes, groups, dilation) are checked on the module so that a look-alike
(a ResNeXt, a dilated ResNet) is refused instead of silently loaded into the wrong network.

    from_torchvision(torchvision.models.resnet50())             # in-memory model
    from_torchvision("resnet50", weights="resnet50-0676ba61.pth")  # a state-dict file
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from mmgen.checkpoint import load_state_dict
from mmgen.cnn.alexnet import AlexNet, AlexNetConfig
from mmgen.cnn.base import Classifier
from mmgen.cnn.googlenet import GoogLeNet, GoogLeNetConfig
from mmgen.cnn.resnet import ResNet, ResNetConfig
from mmgen.cnn.vgg import TABLES, VGG, VGGConfig
from mmgen.interop.convert import load_converted
from mmgen.registry import create_model

RESNETS = {"resnet18": ((2, 2, 2, 2), False), "resnet34": ((3, 4, 6, 3), False),
           "resnet50": ((3, 4, 6, 3), True), "resnet101": ((3, 4, 23, 3), True),
           "resnet152": ((3, 8, 36, 3), True)}
VGGS = {f"vgg{depth}{bn}": (table, bn == "_bn")
        for depth, table in (("11", "A"), ("13", "B"), ("16", "D"), ("19", "E"))
        for bn in ("", "_bn")}
NAMES = ("alexnet", *VGGS, "googlenet", *RESNETS)  # torchvision names == mmgen "cnn/<name>"


def from_torchvision(model_or_name: nn.Module | str, weights: str | os.PathLike | None = None,
                     **overrides: Any) -> Classifier:
    """The mmgen equivalent of a torchvision classifier, with its weights, in eval mode.

    Args:
        model_or_name: a torchvision ``AlexNet``, ``VGG``, ``GoogLeNet`` or ``ResNet`` instance
            (its configuration is read off its structure), or a torchvision model name
            (``"resnet50"``, ``"vgg16_bn"``, ...; see ``NAMES``) together with ``weights``.
        weights: with a name, the path of a torchvision state dict (``.pth``/``.pt``, read with
            ``torch.load(weights_only=True)``, or ``.safetensors``). ``num_classes``,
            ``in_channels``, the classifier width, the ResNet stem and GoogLeNet's aux heads are
            read from the tensors. For ``"googlenet"``, ``transform_input`` defaults to True as
            in ``torchvision.models.googlenet(weights=...)``: the original weights expect it.
        **overrides: with a name, config fields to set explicitly (e.g. ``aux_logits=False`` to
            drop GoogLeNet's aux heads from the file, ``transform_input=False``).

    Raises:
        TypeError: ``model_or_name`` is not a supported torchvision model.
        ValueError: an unsupported variant (ResNeXt, dilation, modified stem), an unknown name,
            or a name without ``weights``.
        mmgen.interop.KeyMapError: the weights do not fit (keys or shapes listed).
    """
    if isinstance(model_or_name, str):
        if weights is None:
            raise ValueError(f"from_torchvision({model_or_name!r}) needs weights=<path of a "
                             "torchvision state dict>; mmgen does not download weights "
                             f"(for random weights use mmgen.create_model('cnn/{model_or_name}'))")
        return _from_file(model_or_name, weights, overrides)
    if weights is not None or overrides:
        raise ValueError("weights= and config overrides go with a model name; a torchvision "
                         "model brings its own weights and configuration")
    model = _build(_infer_config(model_or_name))
    load_converted(model, model_or_name.state_dict())
    return model.eval()


# ----------------------------------------------------------------------------- in-memory models


def _infer_config(model: nn.Module) -> Any:
    """The mmgen config equivalent to a torchvision model's structure."""
    if isinstance(model, tvm.GoogLeNet):
        return _googlenet_config(model)
    if isinstance(model, tvm.ResNet):
        return _resnet_config(model)
    if isinstance(model, tvm.VGG):
        return _vgg_config(model)
    if isinstance(model, tvm.AlexNet):
        return _alexnet_config(model)
    raise TypeError(f"from_torchvision converts torchvision AlexNet, VGG, GoogLeNet and ResNet "
                    f"models; got {type(model).__module__}.{type(model).__name__}")


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"unsupported torchvision model: {what}; mmgen has no equivalent")


def _conv_is(conv: nn.Module, kernel: int, stride: int, padding: int) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (kernel, kernel)
            and conv.stride == (stride, stride) and conv.padding == (padding, padding)
            and conv.dilation == (1, 1) and conv.groups == 1)


def _pool_size(pool: nn.Module) -> int | None:
    size = getattr(pool, "output_size", None)
    size = (size, size) if isinstance(size, int) else tuple(size or ())
    return size[0] if isinstance(pool, nn.AdaptiveAvgPool2d) and size[0] == size[-1] else None


def _alexnet_config(m: tvm.AlexNet) -> AlexNetConfig:
    _require(_conv_is(m.features[0], 11, 4, 2), "AlexNet whose conv1 is not 11x11 stride 4")
    _require(_pool_size(m.avgpool) == 6, "AlexNet without the 6x6 average pool")
    return AlexNetConfig(num_classes=m.classifier[6].out_features,
                         in_channels=m.features[0].in_channels,
                         hidden=m.classifier[1].out_features, dropout=m.classifier[0].p)


def _vgg_config(m: tvm.VGG) -> VGGConfig:
    table: list[int | str] = []
    for layer in m.features:
        if isinstance(layer, nn.Conv2d):
            _require(_conv_is(layer, 3, 1, 1), f"VGG with a non-3x3 conv {layer}")
            table.append(layer.out_channels)
        elif isinstance(layer, nn.MaxPool2d):
            _require(layer.kernel_size in (2, (2, 2)) and layer.stride in (2, (2, 2)),
                     f"VGG with max-pool {layer}")
            table.append("M")
        else:
            _require(isinstance(layer, (nn.BatchNorm2d, nn.ReLU)), f"VGG layer {layer}")
    _require(_pool_size(m.avgpool) == 7, "VGG without the 7x7 average pool")
    layers = next((name for name, t in TABLES.items() if t == tuple(table)), tuple(table))
    return VGGConfig(layers=layers, num_classes=m.classifier[6].out_features,
                     batch_norm=any(isinstance(x, nn.BatchNorm2d) for x in m.features),
                     in_channels=m.features[0].in_channels,
                     hidden=m.classifier[0].out_features, dropout=m.classifier[2].p)


def _googlenet_config(m: tvm.GoogLeNet) -> GoogLeNetConfig:
    _require(_conv_is(m.conv1.conv, 7, 2, 3), "GoogLeNet whose conv1 is not 7x7 stride 2")
    aux = m.aux1 is not None
    return GoogLeNetConfig(num_classes=m.fc.out_features, in_channels=m.conv1.conv.in_channels,
                           aux_logits=aux, transform_input=bool(m.transform_input),
                           dropout=m.dropout.p,
                           dropout_aux=m.aux1.dropout.p if aux else GoogLeNetConfig.dropout_aux)


def _resnet_config(m: tvm.ResNet) -> ResNetConfig:
    if _conv_is(m.conv1, 7, 2, 3) and isinstance(m.maxpool, nn.MaxPool2d):
        stem = "imagenet"
    elif _conv_is(m.conv1, 3, 1, 1) and isinstance(m.maxpool, nn.Identity):
        stem = "small"  # the common CIFAR modification of a torchvision ResNet
    else:
        raise ValueError("unsupported torchvision ResNet stem: expected conv1 7x7/2 + max-pool "
                         "(ImageNet) or conv1 3x3/1 + nn.Identity max-pool (CIFAR-style)")
    bottleneck = isinstance(m.layer1[0], tvm.resnet.Bottleneck)
    for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
        for block in stage:
            conv = block.conv2
            _require(conv.groups == 1 and conv.dilation == (1, 1),
                     "grouped or dilated ResNet (ResNeXt, replace_stride_with_dilation)")
            _require(not bottleneck or 4 * conv.out_channels == block.conv3.out_channels,
                     "wide ResNet (bottleneck width != planes)")
    return ResNetConfig(layers=tuple(len(s) for s in (m.layer1, m.layer2, m.layer3, m.layer4)),
                        bottleneck=bottleneck, num_classes=m.fc.out_features,
                        in_channels=m.conv1.in_channels, stem=stem)


def _build(config: Any) -> Classifier:
    """The mmgen model for ``config``, named after its preset when it is one."""
    cls = {AlexNetConfig: AlexNet, VGGConfig: VGG, GoogLeNetConfig: GoogLeNet,
           ResNetConfig: ResNet}[type(config)]
    model = cls(config)
    if isinstance(config, ResNetConfig):
        preset = (config.layers, config.bottleneck)
        model.model_name = next((f"cnn/{n}" for n, p in RESNETS.items() if p == preset), None)
    elif isinstance(config, VGGConfig):
        preset = (config.layers, config.batch_norm)
        model.model_name = next((f"cnn/{n}" for n, p in VGGS.items() if p == preset), None)
    else:
        model.model_name = "cnn/alexnet" if cls is AlexNet else "cnn/googlenet"
    return model


# ----------------------------------------------------------------------------- state-dict files


def _from_file(name: str, path: str | os.PathLike, overrides: dict[str, Any]) -> Classifier:
    if name not in NAMES:
        raise ValueError(f"unknown torchvision model {name!r}; supported: {', '.join(NAMES)}")
    state = load_state_dict(path)
    fields = {**_infer_fields(name, state, path), **overrides}
    model = create_model(f"cnn/{name}", **fields)
    _fill_num_batches_tracked(state, model)
    drop_aux = name == "googlenet" and not fields.get("aux_logits", False)
    load_converted(model, state, lambda k: None if drop_aux and k.startswith("aux") else k)
    return model.eval()


def _infer_fields(name: str, state: dict[str, torch.Tensor],
                  path: str | os.PathLike) -> dict[str, Any]:
    """Config fields that a torchvision state dict of architecture ``name`` determines."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ValueError(f"{path} does not look like a torchvision {name} state dict: "
                             f"it has no {key!r} (first keys: {list(state)[:4]})")
        return tuple(state[key].shape)

    if name == "alexnet" or name.startswith("vgg"):
        hidden_key = "classifier.1.weight" if name == "alexnet" else "classifier.0.weight"
        return {"num_classes": shape("classifier.6.weight")[0],
                "in_channels": shape("features.0.weight")[1], "hidden": shape(hidden_key)[0]}
    if name == "googlenet":
        return {"num_classes": shape("fc.weight")[0],
                "in_channels": shape("conv1.conv.weight")[1], "transform_input": True,
                "aux_logits": any(k.startswith("aux1.") for k in state)}
    conv1 = shape("conv1.weight")
    return {"num_classes": shape("fc.weight")[0], "in_channels": conv1[1],
            "stem": "small" if conv1[-1] == 3 else "imagenet"}


def _fill_num_batches_tracked(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Files saved before PyTorch 0.4.1 lack BN ``num_batches_tracked``; PyTorch itself fills
    in 0 when loading them, and so do we (only when a BN's other statistics are present)."""
    for key, value in model.state_dict().items():
        prefix = key.removesuffix("num_batches_tracked")
        if key.endswith("num_batches_tracked") and key not in state \
                and prefix + "running_mean" in state:
            state[key] = torch.zeros_like(value)
