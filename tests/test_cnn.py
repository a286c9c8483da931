"""CNN classifiers (mmgen.cnn) against torchvision, and the torchvision weight converter."""

import dataclasses
import warnings

import pytest
import torch
import torchvision
from torch import nn

import mmgen
import mmgen.cnn.alexnet
import mmgen.cnn.googlenet
import mmgen.cnn.lenet
import mmgen.cnn.resnet
import mmgen.cnn.vgg  # noqa: F401  (the imports register the models)
from mmgen.checkpoint import save_state_dict
from mmgen.cnn.googlenet import GoogLeNetOutputs
from mmgen.cnn.resnet import ResNet, ResNetConfig
from mmgen.interop.convert import KeyMapError
from mmgen.interop.torchvision import NAMES, from_torchvision
from mmgen.registry import _MODELS

tvm = torchvision.models
warnings.filterwarnings("ignore", message=".*GoogleNet.*", category=FutureWarning)


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and running statistics, so eval-mode parity means something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0.0, 0.1, generator=g)
            m.running_mean.normal_(0.0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.num_batches_tracked.fill_(7)
    return model


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tv(name: str, **kwargs) -> nn.Module:
    if name == "googlenet":
        kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    return getattr(tvm, name)(**kwargs)


# ----------------------------------------------------------------------------- parity


PARITY = [  # (torchvision name, kwargs, input size)
    ("alexnet", {}, 64),
    ("vgg16_bn", {}, 32),
    ("googlenet", {}, 64),
    ("googlenet", {"transform_input": True}, 64),
    ("googlenet", {"aux_logits": True}, 64),
    ("resnet18", {}, 64),
    ("resnet50", {"num_classes": 10}, 32),
]


@pytest.mark.parametrize(("name", "kwargs", "size"), PARITY,
                         ids=[f"{n}-{'-'.join(k) or 'default'}" for n, k, _ in PARITY])
def test_from_torchvision_matches_outputs(name, kwargs, size):
    torch.manual_seed(0)
    ref = _randomise_bn(_tv(name, **kwargs)).eval()
    ours = from_torchvision(ref)
    assert not ours.training and ours.model_name == f"cnn/{name}"
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_googlenet_aux_outputs_match_in_training_mode():
    torch.manual_seed(0)
    ref = _randomise_bn(_tv("googlenet", aux_logits=True, num_classes=5))
    ours = from_torchvision(ref)
    ref.train(), ours.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    expected = ref(x)
    torch.manual_seed(1)  # the same dropout masks: both draw aux1, aux2, main in that order
    got = ours(x)
    assert isinstance(got, GoogLeNetOutputs) and got.aux_logits1.shape == (2, 5)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert isinstance(ours.eval()(x), torch.Tensor)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_from_torchvision_state_dict_file(tmp_path, suffix):
    torch.manual_seed(0)
    ref = _randomise_bn(tvm.resnet18(num_classes=7)).eval()
    state = ref.state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":  # also a pre-0.4.1 file without BN num_batches_tracked
        torch.save({k: v for k, v in state.items() if "num_batches" not in k}, path)
    else:
        save_state_dict(state, path)
    ours = from_torchvision("resnet18", weights=path)
    assert ours.config.num_classes == 7 and not ours.training
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyMapError, match="missing"):
        from_torchvision("resnet34", weights=path)


def test_googlenet_files_with_and_without_aux_heads(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with_aux = _randomise_bn(_tv("googlenet", aux_logits=True, transform_input=True)).eval()
    torch.save(with_aux.state_dict(), tmp_path / "aux.pth")
    plain = _randomise_bn(_tv("googlenet")).eval()
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    # Files default to transform_input=True, like torchvision.models.googlenet(weights=...).
    ours = from_torchvision("googlenet", weights=tmp_path / "aux.pth")
    assert ours.config.aux_logits and ours.config.transform_input
    dropped = from_torchvision("googlenet", weights=tmp_path / "aux.pth", aux_logits=False)
    assert not any(k.startswith("aux") for k in dropped.state_dict())
    ours_plain = from_torchvision("googlenet", weights=tmp_path / "plain.pth",
                                  transform_input=False)
    assert not ours_plain.config.aux_logits
    with torch.no_grad():
        torch.testing.assert_close(ours(x), with_aux(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dropped(x), with_aux(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours_plain(x), plain(x), atol=1e-5, rtol=1e-5)


def test_from_torchvision_errors(tmp_path):
    with pytest.raises(TypeError, match="AlexNet, VGG, GoogLeNet and ResNet.*MobileNetV2"):
        with torch.device("meta"):
            from_torchvision(tvm.mobilenet_v2())
    with torch.device("meta"):
        resnext = tvm.resnext50_32x4d()
        dilated = tvm.resnet50(replace_stride_with_dilation=[False, True, True])
    with pytest.raises(ValueError, match="grouped or dilated"):
        from_torchvision(resnext)
    with pytest.raises(ValueError, match="grouped or dilated"):
        from_torchvision(dilated)
    with pytest.raises(ValueError, match="needs weights="):
        from_torchvision("resnet18")
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet7'"):
        from_torchvision("resnet7", weights=tmp_path / "x.pth")
    save_state_dict({"w": torch.zeros(1)}, tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="does not look like a torchvision resnet18"):
        from_torchvision("resnet18", weights=tmp_path / "junk.safetensors")


def test_from_torchvision_cifar_style_resnet():
    torch.manual_seed(0)
    ref = tvm.resnet18(num_classes=10)
    ref.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
    ref.maxpool = nn.Identity()
    ref = _randomise_bn(ref).eval()
    ours = from_torchvision(ref)
    assert ours.config.stem == "small"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- structure


KNOWN_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032, "alexnet": 61_100_840,
                "vgg16": 138_357_544, "googlenet": 6_624_904}


@pytest.mark.parametrize("name", NAMES)
def test_names_shapes_and_parameter_counts_match_torchvision(name):
    with torch.device("meta"):  # no memory, no init: instant even for VGG-19
        ours, ref = mmgen.create_model(f"cnn/{name}"), _tv(name)
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: v.shape for k, v in ref.state_dict().items()}
    assert _n_params(ours) == _n_params(ref) == KNOWN_PARAMS.get(name, _n_params(ref))


def test_se_adds_the_expected_parameters_and_changes_the_output():
    with torch.device("meta"):
        plain50, se50 = mmgen.create_model("cnn/resnet50"), mmgen.create_model("cnn/se_resnet50")
    extra = 0
    for block in se50.modules():
        if isinstance(block, mmgen.cnn.resnet.Bottleneck):
            c = block.bn3.num_features
            extra += 2 * c * (c // 16) + c // 16 + c  # fc1, fc2 weights and biases
    assert _n_params(se50) - _n_params(plain50) == extra
    torch.manual_seed(0)
    plain = _randomise_bn(mmgen.create_model("cnn/resnet18", stem="small", num_classes=5)).eval()
    se = mmgen.create_model("cnn/se_resnet18", stem="small", num_classes=5).eval()
    missing, unexpected = se.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".se." in k for k in missing)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(se(x), plain(x), atol=1e-3)
        for m in se.modules():  # a gate of sigmoid(30) ~ 1: SE becomes the identity
            if isinstance(m, mmgen.cnn.resnet.SqueezeExcite):
                m.fc2.weight.zero_(), m.fc2.bias.fill_(30.0)
        torch.testing.assert_close(se(x), plain(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_width_scales_every_stage(name):
    """width=16 is torchvision's network with every stage's channels / 4 (64 -> 16 ..)."""
    with torch.device("meta"):
        narrow = mmgen.create_model(f"cnn/{name}", width=16, num_classes=10)
        ref = _tv(name, num_classes=10)
    expected = {k: torch.Size(d // 4 if d % 64 == 0 else d for d in v.shape)
                for k, v in ref.state_dict().items()}
    assert {k: v.shape for k, v in narrow.state_dict().items()} == expected
    x = torch.randn(2, 3, 32, 32)
    small = mmgen.create_model(f"cnn/{name}", width=16, num_classes=10, stem="small").eval()
    assert small.forward_features(x).shape == (2, 128 * (4 if name == "resnet50" else 1))
    assert small(x).shape == (2, 10)
    with pytest.raises(ValueError, match="width must be >= 1"):
        mmgen.create_model(f"cnn/{name}", width=0)


def test_zero_init_residual_zeroes_last_bn():
    model = ResNet(ResNetConfig(layers=(1, 1, 1, 1), bottleneck=True, zero_init_residual=True))
    assert all(not b.bn3.weight.any() for b in model.modules()
               if isinstance(b, mmgen.cnn.resnet.Bottleneck))
    assert model.bn1.weight.all()


# ----------------------------------------------------------------------------- registry-wide


OUR_MODULES = {f"mmgen.cnn.{m}" for m in ("lenet", "alexnet", "vgg", "googlenet", "resnet")}
CNN_MODELS = [n for n in mmgen.list_models("cnn/*") if _MODELS[n].__module__ in OUR_MODULES]


@pytest.mark.parametrize("name", CNN_MODELS)
def test_registry_smoke(name):
    overrides = {} if name == "cnn/lenet5" else {"stem": "small"}
    torch.manual_seed(0)
    model = mmgen.create_model(name, num_classes=3, **overrides).eval()
    x = torch.randn(2, model.in_channels, 32, 32)
    with torch.no_grad():
        logits, features = model(x), model.forward_features(x)
        assert logits.shape == (2, 3) and features.ndim == 2 and features.shape[0] == 2
        torch.testing.assert_close(model.head(features), logits)
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        maps = model.feature_maps(x, [convs[0], convs[-1]])
    assert list(maps) == [convs[0], convs[-1]] and all(m.ndim == 4 for m in maps.values())


@pytest.mark.parametrize(("name", "overrides"), [
    ("cnn/se_resnet18", {"stem": "small", "num_classes": 4}),
    ("cnn/vgg11", {"layers": [16, "M", 32], "stem": "small", "hidden": 8, "batch_norm": True}),
    ("cnn/googlenet", {"aux_logits": True, "transform_input": True}),
])
def test_save_pretrained_round_trip(tmp_path, name, overrides):
    torch.manual_seed(0)
    model = _randomise_bn(mmgen.create_model(name, **overrides)).eval()
    loaded = mmgen.load(model.save_pretrained(tmp_path / "m"))
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.model_name == name and not loaded.training
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# ----------------------------------------------------------------------------- input checks


SMALL_HEAD = {"hidden": 16}
MIN_SIZES = [  # (name, overrides, smallest side)
    ("cnn/alexnet", SMALL_HEAD, 63),
    ("cnn/alexnet", {**SMALL_HEAD, "stem": "small"}, 15),
    ("cnn/vgg11", SMALL_HEAD, 32),
    ("cnn/vgg11", {**SMALL_HEAD, "stem": "small"}, 16),
    ("cnn/googlenet", {}, 15),
    ("cnn/googlenet", {"stem": "small"}, 4),
    ("cnn/resnet18", {}, 1),
    ("cnn/resnet18", {"stem": "small"}, 1),
]


@pytest.mark.parametrize(("name", "overrides", "size"), MIN_SIZES)
def test_min_input_size_is_exact(name, overrides, size):
    model = mmgen.create_model(name, num_classes=3, **overrides).eval()
    assert model.min_input_size == size
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size + 5)).shape == (2, 3)
        if size > 1:  # one pixel less: our check refuses, and the network itself would fail
            x = torch.randn(2, 3, size - 1, size + 5)
            with pytest.raises(ValueError, match=f"at least {size}x{size} px"):
                model(x)
            with pytest.raises(RuntimeError):
                model.forward_features(x)


@pytest.mark.parametrize(("name", "overrides"), [
    ("cnn/alexnet", {**SMALL_HEAD, "stem": "small"}),
    ("cnn/vgg11_bn", {**SMALL_HEAD, "stem": "small"}),
    ("cnn/googlenet", {"stem": "small"}),
    ("cnn/resnet18", {"stem": "small"}),
])
def test_grayscale_28px_and_wrong_channels(name, overrides):
    model = mmgen.create_model(name, num_classes=10, in_channels=1, **overrides).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="expects 1-channel images, got 3"):
        model(torch.randn(2, 3, 28, 28))


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="stem must be 'imagenet' or 'small'"):
        mmgen.create_model("cnn/resnet18", stem="cifar")
    with pytest.raises(ValueError, match="unknown VGG table 'Z'"):
        mmgen.create_model("cnn/vgg11", layers="Z")
    with pytest.raises(ValueError, match="positive conv widths"):
        mmgen.create_model("cnn/vgg11", layers=(64, "X"))
    with pytest.raises(ValueError, match="transform_input .* in_channels=3"):
        mmgen.create_model("cnn/googlenet", in_channels=1, transform_input=True)
    with pytest.raises(ValueError, match="4 stages"):
        mmgen.create_model("cnn/resnet18", layers=(2, 2, 2))
    assert dataclasses.asdict(mmgen.create_model("cnn/resnet50", stem="small").config)["stem"] \
        == "small"
