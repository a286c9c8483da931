"""Style transfer by optimisation: losses against explicit formulas, colour spaces, VGG feature
parity with torchvision on random weights, weight files, and the Gatys loop on 32 px images."""

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from mmgen.checkpoint import CorruptCheckpointError
from mmgen.cnn.vgg import TABLES
from mmgen.style.color import luminance_only, match_color, rgb_to_yiq, yiq_to_rgb
from mmgen.style.features import FeatureConfig, FeatureNetwork, feature_network, layer_indices
from mmgen.style.gatys import GatysConfig, gatys, gatys_losses
from mmgen.style.losses import (
    StyleTargets,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation,
)

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


# ----------------------------------------------------------------------------- losses


def test_gram_matrix_matches_einsum():
    f = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    expected = torch.einsum("nchw,ndhw->ncd", f, f) / (5 * 4 * 3)
    torch.testing.assert_close(gram_matrix(f), expected)


def test_style_loss_ignores_where_content_loss_sees_spatial_arrangement():
    torch.manual_seed(0)
    feats = {"a": torch.rand(1, 8, 6, 5), "b": torch.rand(1, 16, 3, 3)}
    grams = {k: gram_matrix(v) for k, v in feats.items()}
    assert style_loss(feats, grams) == 0
    shuffled = {k: v.flatten(2)[..., torch.randperm(v.shape[2] * v.shape[3])].reshape(v.shape)
                for k, v in feats.items()}  # same pixels, other places: the Gram is unchanged
    assert style_loss(shuffled, grams) < 1e-12
    assert content_loss(shuffled, feats) > 1e-2
    assert content_loss(feats, feats) == 0


def test_style_loss_weights_layers():
    feats = {"a": torch.ones(1, 2, 2, 2), "b": torch.ones(1, 2, 2, 2)}
    grams = {"a": torch.zeros(1, 2, 2), "b": torch.zeros(1, 2, 2)}  # Gram of ones: 1/C = 0.5
    assert style_loss(feats, grams).item() == pytest.approx(0.25)  # mean of 0.25, 0.25
    assert style_loss(feats, grams, {"a": 2.0, "b": 0.0}).item() == pytest.approx(0.5)


def test_total_variation_constant_and_ramps():
    assert total_variation(torch.full((2, 3, 5, 7), 0.3)) == 0
    y, x = torch.meshgrid(torch.arange(6.0), torch.arange(9.0), indexing="ij")
    ramp = (0.1 * x + 0.05 * y).expand(1, 3, 6, 9)  # rises 0.1 per column, 0.05 per row
    assert total_variation(ramp).item() == pytest.approx(0.1**2 + 0.05**2)


def test_style_targets_blend_grams():
    net = feature_network("random")
    torch.manual_seed(0)
    content, s1, s2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 48, 40)
    one = StyleTargets.compute(net, content, [s1], ["relu4_2"], ["relu1_1", "relu3_1"])
    two = StyleTargets.compute(net, content, [s2], ["relu4_2"], ["relu1_1", "relu3_1"])
    mix = StyleTargets.compute(net, content, [s1, s2], ["relu4_2"], ["relu1_1", "relu3_1"],
                               blend=[3, 1])
    for name in ("relu1_1", "relu3_1"):
        torch.testing.assert_close(mix.grams[name], 0.75 * one.grams[name] + 0.25 * two.grams[name])
    torch.testing.assert_close(mix.content["relu4_2"], net(content, ["relu4_2"])["relu4_2"])
    with pytest.raises(ValueError, match="one per style"):
        StyleTargets.compute(net, content, [s1, s2], ["relu4_2"], ["relu1_1"], blend=[1])


# ----------------------------------------------------------------------------- colour


def test_yiq_round_trip_and_luminance():
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-5, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(rgb_to_yiq(grey)[:, 0], torch.full((1, 2, 2), 0.4))
    torch.testing.assert_close(rgb_to_yiq(grey)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-6,
                               rtol=0)


def test_luminance_only_keeps_output_luminance_and_content_chroma():
    torch.manual_seed(0)
    stylised = 0.35 + 0.3 * torch.rand(1, 3, 16, 16)  # mid-range: no clipping in the result
    content = 0.45 + 0.1 * torch.rand(1, 3, 16, 16)
    out = luminance_only(stylised, content)
    torch.testing.assert_close(rgb_to_yiq(out)[:, 0], rgb_to_yiq(stylised)[:, 0], atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:], atol=1e-5,
                               rtol=0)


def test_match_color_gives_style_the_content_mean_and_covariance():
    torch.manual_seed(0)
    style = 0.4 + 0.2 * torch.rand(1, 3, 32, 32)
    style[:, 2] = 0.5 * style[:, 0] + 0.1 * style[:, 2] + 0.2  # correlated channels
    content = torch.stack([0.5 + 0.05 * torch.randn(32, 32), 0.4 + 0.03 * torch.randn(32, 32),
                           0.6 + 0.04 * torch.randn(32, 32)])[None]
    out = match_color(style, content)

    def moments(x):
        p = x.flatten(2)[0].double()  # (3, HW)
        return p.mean(1), torch.cov(p, correction=0)

    for got, want in zip(moments(out), moments(content), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-3)


# ----------------------------------------------------------------------------- features


def test_layer_names_map_to_torchvision_vgg19_indices():
    idx = layer_indices(TABLES["E"])
    assert [idx[n] for n in LAYERS] == [1, 6, 11, 20, 22, 29]
    assert idx["pool5"] == 36 and idx["conv5_4"] == 34


@pytest.fixture(scope="module")
def tv_vgg19():
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None).eval()


def test_vgg_features_match_torchvision(tv_vgg19):
    net = FeatureNetwork(FeatureConfig(kind="vgg", arch="vgg19", pooling="max"))
    state = {k: v for k, v in tv_vgg19.state_dict().items() if k.startswith("features.")}
    net.load_state_dict(state, strict=True)  # torchvision's names, unchanged
    images = torch.rand(2, 3, 40, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ours = net(images, LAYERS)
    x = (images - mean) / std
    with torch.no_grad():
        for name, index in zip(LAYERS, [1, 6, 11, 20, 22, 29], strict=True):
            ref = tv_vgg19.features[:index + 1](x)
            torch.testing.assert_close(ours[name], ref, atol=1e-5, rtol=1e-5)


def test_vgg_loads_torchvision_pth_and_safetensors(tv_vgg19, tmp_path):
    state = {k: v for k, v in tv_vgg19.state_dict().items() if k.startswith("features.")}
    # the real file's classifier (~120 M values) is ignored; small stand-ins keep the test fast
    state |= {"classifier.0.weight": torch.randn(8, 4), "classifier.6.bias": torch.zeros(3)}
    torch.save(state, tmp_path / "vgg19-dcbb9e9d.pth")
    save_file(state, str(tmp_path / "vgg19.safetensors"))
    for name in ("vgg19-dcbb9e9d.pth", "vgg19.safetensors"):
        net = feature_network("vgg", weights=tmp_path / name, pooling="max")
        assert not any(p.requires_grad for p in net.parameters()) and not net.training
        for key, value in net.state_dict().items():
            assert torch.equal(value, state[key]), key


def test_vgg_weight_file_errors(tv_vgg19, tmp_path):
    with pytest.raises(FileNotFoundError, match="feature_network\\('random'\\)"):
        feature_network("vgg", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="needs weights"):
        feature_network("vgg")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="no 'features"):
        feature_network("vgg", weights=tmp_path / "resnet.pth")
    vgg16 = {k: v for k, v in tv_vgg19.features.state_dict().items() if int(k.split(".")[0]) < 30}
    torch.save({f"features.{k}": v for k, v in vgg16.items()}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="missing"):
        feature_network("vgg", weights=tmp_path / "short.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a weight file")
    with pytest.raises(CorruptCheckpointError):
        feature_network("vgg", weights=tmp_path / "junk.safetensors")


def test_random_network_is_seeded_and_normalised():
    a, b, c = feature_network("random"), feature_network("random"), feature_network(seed=1)
    for (k, v), w in zip(a.state_dict().items(), c.state_dict().values(), strict=True):
        assert torch.equal(v, b.state_dict()[k])
        assert k.endswith("bias") or not torch.equal(v, w)
    with pytest.raises(KeyError, match="relu"):
        a(torch.rand(1, 3, 32, 32), ["relu9_9"])
    with pytest.raises(ValueError, match="at least 16 px"):
        a(torch.rand(1, 3, 8, 8), ["relu5_1"])


# ----------------------------------------------------------------------------- Gatys


def _images():
    """A smooth 32 px content (ramp and disc) and a busy coloured-stripe style."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    disc = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.08).float()
    content = torch.stack([0.2 + 0.6 * x, 0.3 + 0.4 * disc, 0.7 - 0.5 * y])[None]
    stripes = (torch.sin(2.5 * (x + y) * 32 / 3) > 0).float()
    style = torch.stack([stripes, 0.2 + 0.6 * (1 - stripes), 0.5 * stripes + 0.2])[None]
    return content, style


CONFIG = GatysConfig(scales=(32,), steps=(40,))


def test_gatys_lowers_loss_and_takes_on_the_style():
    net = feature_network("random")
    content, style = _images()
    out = gatys(content, style, net, CONFIG, progress=False)
    assert out.shape == content.shape and 0 <= out.min() and out.max() <= 1
    targets = StyleTargets.compute(net, content, [style], CONFIG.content_layers,
                                   CONFIG.style_layers)
    before = gatys_losses(net, content, targets, CONFIG)
    after = gatys_losses(net, out, targets, CONFIG)
    assert after["total"] < 0.5 * before["total"]
    assert after["style"] * 5 <= before["style"]


def test_gatys_strength_zero_is_content_and_runs_are_deterministic():
    net = feature_network("random")
    content, style = _images()
    assert torch.equal(gatys(content, style, net, CONFIG, strength=0.0, progress=False), content)
    config = GatysConfig(scales=(16, 32), steps=(5, 5), init="noise", seed=3)
    first = gatys(content, style, net, config, progress=False)
    assert torch.equal(first, gatys(content, style, net, config, progress=False))
    assert not torch.equal(first, gatys(content, style, net, GatysConfig(
        scales=(16, 32), steps=(5, 5), init="noise", seed=4), progress=False))


def test_gatys_preserve_color_and_bad_inputs():
    net = feature_network("random")
    content, style = _images()
    out = gatys(content, style, net, GatysConfig(scales=(32,), steps=(3,)),
                preserve_color=True, progress=False)
    iq_out, iq_content = rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:]
    assert (iq_out - iq_content).abs().mean() < 0.02  # clipping may move a few pixels
    with pytest.raises(ValueError, match="batch dimension"):
        gatys(content[0], style, net, CONFIG, progress=False)
    with pytest.raises(ValueError, match="scales"):
        gatys(content, style, net, GatysConfig(scales=(8,), steps=(1,)), progress=False)
    with pytest.raises(ValueError, match="one steps entry per scale"):
        GatysConfig(scales=(16, 32), steps=(5,))
