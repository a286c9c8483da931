"""Fast style transfer (Johnson et al. 2016) and AdaIN (Huang & Belongie 2017) networks.

Parity on random weights: each state dict is built with the reference repositories' key names
and shapes (pytorch/examples fast_neural_style, naoto0804/pytorch-AdaIN), loaded through our
loaders from .pth and .safetensors, and compared with a functional forward written here from
the references' structure with torch.nn.functional ops only (no mmgen module code).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import save_weights

from mmgen.registry import create_model, list_models
from mmgen.style.adain import AdaINModel, adain, load_adain, load_adain_decoder, load_adain_encoder
from mmgen.style.transformer_net import (
    ConditionalInstanceNorm2d,
    TransformerNet,
    TransformerNetConfig,
    load_fast_style,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}




def _random(shapes, seed=0):
    """Conv weights ~ He-scaled normals (activations stay O(1) through deep stacks), norm
    scales near 1, biases small."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif key.endswith("weight"):  # InstanceNorm scale
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=g)
    return state


# ----------------------------------------------------------------------------- Johnson et al.


def fast_style_shapes(c=32, blocks=5):
    """The reference TransformerNet's state-dict names and shapes."""
    shapes = {}

    def conv(name, cin, cout, k):
        shapes[f"{name}.conv2d.weight"] = (cout, cin, k, k)
        shapes[f"{name}.conv2d.bias"] = (cout,)

    def norm(name, ch):
        shapes[f"{name}.weight"] = (ch,)
        shapes[f"{name}.bias"] = (ch,)

    conv("conv1", 3, c, 9), norm("in1", c)
    conv("conv2", c, 2 * c, 3), norm("in2", 2 * c)
    conv("conv3", 2 * c, 4 * c, 3), norm("in3", 4 * c)
    for i in range(1, blocks + 1):
        conv(f"res{i}.conv1", 4 * c, 4 * c, 3), norm(f"res{i}.in1", 4 * c)
        conv(f"res{i}.conv2", 4 * c, 4 * c, 3), norm(f"res{i}.in2", 4 * c)
    conv("deconv1", 4 * c, 2 * c, 3), norm("in4", 2 * c)
    conv("deconv2", 2 * c, c, 3), norm("in5", c)
    conv("deconv3", c, 3, 9)
    return shapes


def fast_style_reference(sd, x, blocks=5):
    """The reference TransformerNet.forward over a state dict, [0, 255] in and out."""

    def conv(name, y, stride=1, upsample=1):
        if upsample > 1:
            y = F.interpolate(y, mode="nearest", scale_factor=upsample)
        w = sd[f"{name}.conv2d.weight"]
        p = w.shape[-1] // 2
        return F.conv2d(F.pad(y, (p, p, p, p), mode="reflect"), w, sd[f"{name}.conv2d.bias"],
                        stride=stride)

    def norm(name, y):
        return F.instance_norm(y, weight=sd[f"{name}.weight"], bias=sd[f"{name}.bias"],
                               eps=1e-5)

    y = F.relu(norm("in1", conv("conv1", x)))
    y = F.relu(norm("in2", conv("conv2", y, stride=2)))
    y = F.relu(norm("in3", conv("conv3", y, stride=2)))
    for i in range(1, blocks + 1):
        h = F.relu(norm(f"res{i}.in1", conv(f"res{i}.conv1", y)))
        y = y + norm(f"res{i}.in2", conv(f"res{i}.conv2", h))
    y = F.relu(norm("in4", conv("deconv1", y, upsample=2)))
    y = F.relu(norm("in5", conv("deconv2", y, upsample=2)))
    return conv("deconv3", y)


@pytest.fixture(scope="module")
def fast_style_state():
    return _random(fast_style_shapes())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_transformer_net_parity(fast_style_state, tmp_path, suffix):
    model = load_fast_style(save_weights(fast_style_state, tmp_path, suffix))
    assert model.config == TransformerNetConfig() and not model.training
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(x), fast_style_reference(fast_style_state, x), **TOL)
        expected = (fast_style_reference(fast_style_state, x) / 255).clamp(0, 1)
        torch.testing.assert_close(model.stylize(x / 255), expected, **TOL)


def test_transformer_net_strips_stale_running_stats(fast_style_state, tmp_path):
    state = dict(fast_style_state)
    state["in1.running_mean"] = torch.zeros(32)
    state["in1.running_var"] = torch.ones(32)
    state["res3.in2.running_var"] = torch.ones(128)
    path = save_weights(state, tmp_path, ".pth")
    with pytest.warns(UserWarning, match="dropped 3 InstanceNorm running_mean/running_var") as w:
        model = load_fast_style(path)
    assert len(w) == 1
    x = torch.rand(1, 3, 16, 16) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(x), fast_style_reference(fast_style_state, x), **TOL)


def test_transformer_net_odd_sizes_keep_the_input_size(fast_style_state, tmp_path):
    """97x131 is reflection-padded to 100x132, run as the reference, then cropped back."""
    model = load_fast_style(save_weights(fast_style_state, tmp_path, ".safetensors"))
    x = torch.rand(1, 3, 97, 131) * 255
    with torch.no_grad():
        out = model(x)
        padded = F.pad(x, (0, 1, 0, 3), mode="reflect")  # (1, 3, 100, 132)
        expected = fast_style_reference(fast_style_state, padded)[..., :97, :131]
    assert out.shape == (1, 3, 97, 131)
    torch.testing.assert_close(out, expected, **TOL)
    for h, w in ((5, 5), (6, 7), (9, 13)):  # every size from the minimum up works
        assert model.stylize(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match=r"H, W >= 5, got \(1, 3, 4, 8\)"):
        model(torch.rand(1, 3, 4, 8))


def test_content_skip_adds_the_input_to_the_reference_output(fast_style_state):
    """content_skip: the same network plus its input (odd sizes too); with a zero last layer
    the network is the identity, which is where training starts from."""
    from mmgen.style.transformer_net import TransformerNet, TransformerNetConfig

    plain = TransformerNet(TransformerNetConfig()).eval()
    plain.load_state_dict(fast_style_state)
    skip = TransformerNet(TransformerNetConfig(content_skip=True)).eval()
    skip.load_state_dict(fast_style_state)
    x = torch.rand(2, 3, 37, 42) * 255
    with torch.no_grad():
        torch.testing.assert_close(skip(x), x + plain(x), **TOL)
        skip.deconv3.conv2d.weight.zero_()
        skip.deconv3.conv2d.bias.zero_()
        torch.testing.assert_close(skip(x), x)


def test_load_fast_style_reads_width_and_blocks(tmp_path):
    state = _random(fast_style_shapes(c=16, blocks=3), seed=3)
    model = load_fast_style(save_weights(state, tmp_path, ".pth"))
    assert model.config == TransformerNetConfig(width=0.5, residual_blocks=3)
    x = torch.rand(1, 3, 20, 24) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(x), fast_style_reference(state, x, blocks=3), **TOL)


def test_load_fast_style_errors(fast_style_state, tmp_path):
    with pytest.raises(FileNotFoundError, match="candy.pth"):
        load_fast_style(tmp_path / "candy.pth")
    renamed = dict(fast_style_state)
    renamed["res2.conv1.conv.weight"] = renamed.pop("res2.conv1.conv2d.weight")
    with pytest.raises(ValueError, match=r"missing 1: res2\.conv1\.conv2d\.weight; "
                                         r"unexpected 1: res2\.conv1\.conv\.weight") as e:
        load_fast_style(save_weights(renamed, tmp_path, ".pth"))
    assert "\n" not in str(e.value)
    misshaped = dict(fast_style_state, **{"in4.bias": torch.zeros(65)})
    with pytest.raises(ValueError, match=r"in4\.bias \[65\] \(expected \[64\]\)"):
        load_fast_style(save_weights(misshaped, tmp_path, ".safetensors"))


def test_transformer_net_presets_round_trip(tmp_path):
    assert {"style/transformer-net", "style/transformer-net-small"} <= set(list_models())
    reference = create_model("style/transformer-net")
    assert set(reference.state_dict()) == set(fast_style_shapes())
    model = create_model("style/transformer-net-small")
    assert model.config.channels() == (16, 32, 64)
    loaded = TransformerNet.from_pretrained(model.save_pretrained(tmp_path / "small"))
    assert loaded.config == model.config and loaded.model_name == "style/transformer-net-small"
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(loaded.stylize(x), model.eval().stylize(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- several styles

STYLES = ("swirls", "pointillism", "waves")


def multi_style_net(styles=STYLES, seed=0):
    """A tiny conditional-IN network whose rows differ per style (gamma ~ 1, beta ~ 0)."""
    torch.manual_seed(seed)
    net = TransformerNet(TransformerNetConfig(width=0.25, residual_blocks=2, styles=styles))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ConditionalInstanceNorm2d):
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape))
    return net.eval()


def plain_copy(net, s):
    """A one-style TransformerNet with ``net``'s shared weights and style ``s``'s norm rows."""
    plain = TransformerNet(TransformerNetConfig(width=net.config.width,
                                                residual_blocks=net.config.residual_blocks))
    state = {k: v[s] if k.split(".")[-2].startswith("in") else v
             for k, v in net.state_dict().items()}  # in1..in5, resK.in1/in2: (S, C) -> (C,)
    plain.load_state_dict(state)
    assert all(isinstance(m, torch.nn.InstanceNorm2d) for n, m in plain.named_modules()
               if n.split(".")[-1].startswith("in"))
    return plain.eval()


def test_conditional_norm_shapes_and_init():
    net = TransformerNet(TransformerNetConfig(width=0.25, residual_blocks=2, styles=STYLES))
    plain = TransformerNet(TransformerNetConfig(width=0.25, residual_blocks=2))
    assert set(net.state_dict()) == set(plain.state_dict())  # the reference's names
    for key, value in plain.state_dict().items():
        if key.split(".")[-2].startswith("in"):
            assert net.state_dict()[key].shape == (3, *value.shape), key
            fill = 1.0 if key.endswith("weight") else 0.0  # InstanceNorm2d's init, per row
            torch.testing.assert_close(net.state_dict()[key], torch.full((3, *value.shape), fill))
        else:
            assert net.state_dict()[key].shape == value.shape, key


def test_one_hot_style_equals_a_plain_network_with_its_rows():
    net = multi_style_net()
    x = torch.rand(2, 3, 22, 30, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        outs = [net(x, s) for s in range(3)]
        for s, out in enumerate(outs):
            expected = plain_copy(net, s)(x)
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
            torch.testing.assert_close(net(x, torch.full((2,), s)), expected, rtol=0, atol=1e-6)
            one_hot = torch.nn.functional.one_hot(torch.tensor(s), 3).float()
            torch.testing.assert_close(net(x, one_hot), expected, rtol=0, atol=1e-6)
        assert (outs[0] - outs[1]).abs().mean() > 0.3 * outs[0].abs().mean()  # rows matter
        # per-image indices: image i with style i
        mixed = net(x, torch.tensor([2, 0]))
        torch.testing.assert_close(mixed, torch.cat([outs[2][:1], outs[0][1:]]), rtol=0,
                                   atol=1e-6)
        # one (S,) mix for every image, or one per image
        mix = net.style_mix(["swirls", "waves"], [1, 3])
        torch.testing.assert_close(mix, torch.tensor([0.25, 0.0, 0.75]))
        torch.testing.assert_close(net(x, torch.stack([mix, mix])), net(x, mix))


def test_mixing_weights_interpolate_gamma_and_beta():
    norm = multi_style_net().in2  # (S, 2C) rows
    x = torch.randn(2, norm.weight.shape[1], 6, 5, generator=torch.Generator().manual_seed(2))
    mix = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    normalised = torch.nn.functional.instance_norm(x)  # (x - mu) / sigma per image, channel
    expected = []
    for i in range(2):
        gamma = mix[i] @ norm.weight  # row 0: halfway between styles 0 and 1
        beta = mix[i] @ norm.bias
        expected.append(normalised[i] * gamma[:, None, None] + beta[:, None, None])
    with torch.no_grad():
        torch.testing.assert_close(norm(x, mix), torch.stack(expected), rtol=1e-5, atol=1e-5)
        half = (norm.weight[0] + norm.weight[1]) / 2, (norm.bias[0] + norm.bias[1]) / 2
        torch.testing.assert_close(norm(x, mix)[0],
                                   normalised[0] * half[0][:, None, None] + half[1][:, None, None],
                                   rtol=1e-5, atol=1e-5)


def test_multi_style_round_trip(tmp_path):
    net = multi_style_net()
    net.info = {"note": "untrained"}
    folder = net.save_pretrained(tmp_path / "fast3")
    loaded = TransformerNet.from_pretrained(folder)
    assert loaded.config == net.config and loaded.config.styles == STYLES  # a tuple again
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded.stylize(x, 1), net.stylize(x, 1), rtol=0, atol=0)
    created = create_model("style/transformer-net-small", styles=["a", "b"])  # list -> tuple
    assert created.config.styles == ("a", "b")
    fp16 = TransformerNet.from_pretrained(created.save_pretrained(tmp_path / "ab",
                                                                  dtype=torch.float16))
    assert fp16.config.styles == ("a", "b") and fp16.in1.weight.shape == (2, 16)


def test_style_argument_errors():
    net, plain = multi_style_net(), plain_copy(multi_style_net(), 0)
    x = torch.rand(2, 3, 8, 8) * 255
    with pytest.raises(ValueError, match=r"knows 3 styles \(swirls, pointillism, waves\)"):
        net(x)
    with pytest.raises(ValueError, match=r"ints in \[0, 3\)"):
        net(x, 3)
    with pytest.raises(ValueError, match=r"ints in \[0, 3\)"):
        net(x, torch.tensor([0, 1, 2]))  # 3 indices for 2 images
    with pytest.raises(ValueError, match="rows summing to 1"):
        net(x, torch.tensor([0.5, 0.6, 0.0]))
    with pytest.raises(ValueError, match="rows summing to 1"):
        net(x, torch.tensor([1.5, -0.5, 0.0]))
    with pytest.raises(ValueError, match=r"must be \(3,\) or \(2, 3\)"):
        net(x, torch.tensor([0.5, 0.5]))
    with pytest.raises(TypeError, match="net.style_mix"):
        net(x, "swirls")
    with pytest.raises(ValueError, match="unknown style.*'mosaic': the network knows swirls, "
                                         "pointillism, waves"):
        net.style_mix(["swirls", "mosaic"])
    with pytest.raises(ValueError, match="2 finite number"):
        net.style_mix(["swirls", "waves"], [1.0])
    with pytest.raises(ValueError, match="one style"):
        plain(x, 1)
    torch.testing.assert_close(plain(x, 0), plain(x))
    with pytest.raises(ValueError, match="distinct non-empty names"):
        TransformerNetConfig(styles=("swirls", "swirls"))
    with pytest.raises(ValueError, match=r"write \('swirls',\)"):
        TransformerNetConfig(styles="swirls")


# ----------------------------------------------------------------------------- AdaIN


def _block(n):
    return ["pad", "conv", "relu"] * n


# naoto0804/pytorch-AdaIN net.py: `vgg` (to relu5_4) and `decoder`, module by module.
VGG_LAYERS = (["conv"] + _block(2) + ["pool"] + _block(2) + ["pool"] + _block(4) + ["pool"]
              + _block(4) + ["pool"] + _block(4))
VGG_WIDTHS = [3, 64, 64, 128, 128, 256, 256, 256, 256] + [512] * 8  # conv outputs, in order
DECODER_LAYERS = (_block(1) + ["up"] + _block(4) + ["up"] + _block(2) + ["up"] + _block(1)
                  + ["pad", "conv"])
RELU = {"relu1_1": 3, "relu2_1": 10, "relu3_1": 17, "relu4_1": 30}  # net.py's enc_1..enc_4


def sequential_shapes(layers, widths, in_channels):
    shapes, widths = {}, iter(widths)
    for i, kind in enumerate(layers):
        if kind == "conv":
            out = next(widths)
            k = 1 if i == 0 and layers is VGG_LAYERS else 3
            shapes[f"{i}.weight"], shapes[f"{i}.bias"] = (out, in_channels, k, k), (out,)
            in_channels = out
    return shapes


def run_sequential(sd, layers, x, start=0, stop=None):
    """The reference nn.Sequential's layers start..stop-1 with functional ops."""
    for i in range(start, len(layers) if stop is None else stop):
        kind = layers[i]
        if kind == "conv":
            x = F.conv2d(x, sd[f"{i}.weight"], sd[f"{i}.bias"])
        elif kind == "pad":
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        elif kind == "relu":
            x = F.relu(x)
        elif kind == "pool":
            x = F.max_pool2d(x, 2, 2, 0, ceil_mode=True)
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
    return x


def reference_adain(content_feat, style_feat, eps=1e-5):
    """function.py's adaptive_instance_normalization."""

    def mean_std(f):
        n, c = f.shape[:2]
        std = (f.reshape(n, c, -1).var(dim=2) + eps).sqrt().reshape(n, c, 1, 1)
        return f.reshape(n, c, -1).mean(dim=2).reshape(n, c, 1, 1), std

    (cm, cs), (sm, ss) = mean_std(content_feat), mean_std(style_feat)
    return (content_feat - cm) / cs * ss + sm


def reference_style_transfer(vgg, dec, content, style, alpha, weights=None):
    """test.py's style_transfer (vgg truncated to relu4_1)."""
    content_f = run_sequential(vgg, VGG_LAYERS, content, stop=31)
    style_f = run_sequential(vgg, VGG_LAYERS, style, stop=31)
    if weights:
        base = reference_adain(content_f.expand(len(weights), -1, -1, -1), style_f)
        feat = sum(w * base[i:i + 1] for i, w in enumerate(weights))
        content_f = content_f[:1]
    else:
        feat = reference_adain(content_f, style_f)
    return run_sequential(dec, DECODER_LAYERS, feat * alpha + content_f * (1 - alpha))


@pytest.fixture(scope="module")
def vgg_state():
    """vgg_normalised.pth's names and shapes, to relu5_4 (relu4_2.. are zeros: unused)."""
    state = _random(sequential_shapes(VGG_LAYERS, VGG_WIDTHS, 3), seed=4)
    return {k: v if int(k.split(".")[0]) < 31 else torch.zeros(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def decoder_state():
    return _random(sequential_shapes(DECODER_LAYERS, [256, 256, 256, 256, 128, 128, 64, 64, 3],
                                     512), seed=5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_adain_encoder_parity(vgg_state, tmp_path, suffix):
    encoder = load_adain_encoder(save_weights(vgg_state, tmp_path, suffix))  # the full file
    assert set(encoder.state_dict()) == {k for k in vgg_state if int(k.split(".")[0]) < 31}
    x = torch.rand(2, 3, 24, 33)
    with torch.no_grad():
        features = encoder.intermediate(x)
        assert [f.shape[1] for f in features] == [64, 128, 256, 512]
        start = 0
        for feature, stop in zip(features, RELU.values(), strict=True):
            x = run_sequential(vgg_state, VGG_LAYERS, x, start, stop + 1)
            torch.testing.assert_close(feature, x, **TOL)
            start = stop + 1
    assert features[-1].shape[-2:] == (3, 5)  # ceil-mode pools: 24 -> 12 -> 6 -> 3, 33 -> 5
    truncated = {k: v for k, v in vgg_state.items() if int(k.split(".")[0]) < 31}
    load_adain_encoder(save_weights(truncated, tmp_path, suffix, "to_relu4_1"))  # also accepted


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_adain_decoder_parity(decoder_state, tmp_path, suffix):
    decoder = load_adain_decoder(save_weights(decoder_state, tmp_path, suffix))
    t = torch.rand(2, 512, 3, 5)
    with torch.no_grad():
        out = decoder(t)
    assert out.shape == (2, 3, 24, 40)
    torch.testing.assert_close(out, run_sequential(decoder_state, DECODER_LAYERS, t), **TOL)


@pytest.fixture(scope="module")
def adain_model(vgg_state, decoder_state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adain")
    model = load_adain(save_weights(vgg_state, folder, ".pth", "vgg_normalised"),
                       save_weights(decoder_state, folder, ".safetensors", "decoder"))
    assert isinstance(model, AdaINModel) and model.config.width == 1.0
    return model


def test_adain_model_parity_alpha_and_interpolation(adain_model, vgg_state, decoder_state):
    g = torch.Generator().manual_seed(6)
    content, styles = torch.rand(1, 3, 32, 24, generator=g), torch.rand(2, 3, 40, 32, generator=g)
    with torch.no_grad():
        out = adain_model(content, styles[:1], alpha=0.6)
        ref = reference_style_transfer(vgg_state, decoder_state, content, styles[:1], 0.6)
        torch.testing.assert_close(out, ref, **TOL)
        out = adain_model(content, styles, alpha=0.8, weights=[0.25, 0.75])
        ref = reference_style_transfer(vgg_state, decoder_state, content.expand(2, -1, -1, -1),
                                       styles, 0.8, weights=[0.25, 0.75])
        torch.testing.assert_close(out, ref, **TOL)


def test_adain_op_matches_style_statistics():
    g = torch.Generator().manual_seed(7)
    content = torch.randn(2, 8, 6, 5, generator=g) * 3 + 1
    style = torch.randn(2, 8, 7, 4, generator=g) * 0.5 - 2
    out = adain(content, style)
    torch.testing.assert_close(out, reference_adain(content, style), **TOL)
    # The mean is the style's exactly; the (unbiased) std is the style's up to eps.
    torch.testing.assert_close(out.mean((2, 3)), style.mean((2, 3)), **TOL)
    eps = 1e-5
    c_var, s_var = content.var((2, 3)), style.var((2, 3))
    expected_std = ((s_var + eps) * c_var / (c_var + eps)).sqrt()
    torch.testing.assert_close(out.std((2, 3)), expected_std, **TOL)
    torch.testing.assert_close(out.std((2, 3)), style.std((2, 3)), rtol=1e-4, atol=1e-4)
    one_style = adain(content, style[:1])  # one style broadcasts over the contents
    torch.testing.assert_close(one_style, reference_adain(content, style[:1].expand(2, -1, -1, -1)))


def test_adain_alpha_zero_and_one_hot_weights(adain_model):
    g = torch.Generator().manual_seed(8)
    content, styles = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 24, 16, generator=g)
    with torch.no_grad():
        plain = adain_model.decoder(adain_model.encoder(content))
        torch.testing.assert_close(adain_model(content, styles, alpha=0.0), plain, **TOL)
        single = adain_model(content, styles[:1])
        torch.testing.assert_close(adain_model(content, styles, weights=[1.0, 0.0]), single,
                                   **TOL)
    with pytest.raises(ValueError, match="alpha must be in"):
        adain_model(content, styles, alpha=1.5)
    with pytest.raises(ValueError, match="one number per style image"):
        adain_model(content, styles, weights=[1.0])


def test_adain_sizes(adain_model):
    content = torch.rand(1, 3, 97, 131)
    with torch.no_grad():
        out = adain_model.stylize(content, torch.rand(1, 3, 41, 23))
        full = adain_model.decoder(adain_model.mix(adain_model.encode(content),
                                                   adain_model.encode(torch.rand(1, 3, 9, 9))))
    assert out.shape == (1, 3, 97, 131) and 0 <= out.min() and out.max() <= 1
    assert full.shape == (1, 3, 104, 136)  # ceil(97 / 8) * 8, ceil(131 / 8) * 8: cropped
    with pytest.raises(ValueError, match=r"style of shape \(N, 3, H, W\) with H, W >= 9"):
        adain_model(content, torch.rand(1, 3, 8, 20))


def test_adain_loader_errors(vgg_state, decoder_state, tmp_path):
    with pytest.raises(FileNotFoundError, match="decoder.pth"):
        load_adain_decoder(tmp_path / "decoder.pth")
    bad = {("2.weight" if k == "1.weight" else k): v for k, v in decoder_state.items()}
    with pytest.raises(ValueError, match=r"missing 1: 1\.weight; unexpected 1: 2\.weight"):
        load_adain_decoder(save_weights(bad, tmp_path, ".pth"))
    truncated = {k: v for k, v in vgg_state.items() if int(k.split(".")[0]) < 31}
    bad = dict(truncated, **{"29.weight": torch.zeros(512, 256, 1, 1)})
    with pytest.raises(ValueError, match=r"29\.weight \[512, 256, 1, 1\] \(expected \[512, "
                                         r"256, 3, 3\]\)"):
        load_adain_encoder(save_weights(bad, tmp_path, ".safetensors"))
    partial = dict(truncated, **{"32.weight": vgg_state["32.weight"]})  # relu4_2 only: half
    with pytest.raises(ValueError, match=r"missing 13: 32\.bias"):
        load_adain_encoder(save_weights(partial, tmp_path, ".pth"))


def test_adain_presets_round_trip(tmp_path):
    assert {"style/adain", "style/adain-small"} <= set(list_models())
    model = create_model("style/adain-small")
    assert model.decoder[1].out_channels == 128 and model.decoder[-1].out_channels == 3
    assert not any(p.requires_grad for p in model.encoder.parameters())
    loaded = AdaINModel.from_pretrained(model.save_pretrained(tmp_path / "adain-small"))
    assert loaded.config == model.config and loaded.model_name == "style/adain-small"
    content, style = torch.rand(1, 3, 16, 20), torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded.stylize(content, style, alpha=0.5),
                               model.eval().stylize(content, style, alpha=0.5), rtol=0, atol=0)


def test_slim_adain_halves_the_encoder_and_decodes_its_features(tmp_path):
    """adain-slim: the published layout at half width (relu4_1 has 256 channels), its decoder
    takes those; a decoder file saved from it loads beside its own encoder file only."""
    from mmgen.style.train import random_encoder

    model = create_model("style/adain-slim")
    full = create_model("style/adain-small")
    assert model.encoder.channels == 256 and model.decoder[1].in_channels == 256
    assert [type(m) for m in model.encoder] == [type(m) for m in full.encoder]
    ratio = (sum(p.numel() for p in full.encoder.parameters())
             / sum(p.numel() for p in model.encoder.parameters()))
    assert 3.9 < ratio < 4.0  # every conv but the 1x1 colour one has half the channels
    model.encoder.load_state_dict(random_encoder(0, width=0.5).state_dict())
    x = torch.rand(1, 3, 40, 40)
    assert model.encode(x).shape == (1, 256, 5, 5)
    assert model.stylize(x, torch.rand(1, 3, 24, 24)).shape == (1, 3, 40, 40)
    enc = save_weights(model.encoder.state_dict(), tmp_path, ".safetensors", "enc")
    dec = save_weights(model.decoder.state_dict(), tmp_path, ".safetensors", "dec")
    assert load_adain_decoder(dec)[1].in_channels == 256
    published = save_weights(full.encoder.state_dict(), tmp_path, ".safetensors", "vgg")
    with pytest.raises(ValueError, match="not a pair"):
        load_adain(published, dec)
    with pytest.raises(ValueError):  # only the published width is an encoder file we read
        load_adain(enc, dec)
    with pytest.raises(ValueError, match="encoder_width"):
        create_model("style/adain-slim", encoder_width=0.001)


def test_adain_depth_3_is_the_published_layout_cut_at_relu3_1():
    """depth=3: the encoder is the depth-4 encoder's layers 0..17 (to relu3_1), the decoder
    the depth-4 decoder's layers 13.. (from the mirror of conv3_1); the same weights give the
    same features and images, at 1/4 instead of 1/8 of the image's side."""
    torch.manual_seed(0)
    deep = create_model("style/adain-slim").eval()
    shallow = create_model("style/adain-slim", depth=3).eval()
    encoder = {k: v for k, v in deep.encoder.state_dict().items() if int(k.split(".")[0]) < 18}
    shallow.encoder.load_state_dict(encoder)
    tail = torch.nn.Sequential(*list(deep.decoder)[13:])
    shallow.decoder.load_state_dict(tail.state_dict())
    x, s = torch.rand(2, 3, 21, 30), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        feats = shallow.encoder.intermediate(x)
        assert [f.shape[1:] for f in feats] == [(32, 21, 30), (64, 11, 15), (128, 6, 8)]
        for ours, theirs in zip(feats, deep.encoder.intermediate(x)[:3], strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        t = shallow.mix(shallow.encode(x), shallow.encode(s))
        torch.testing.assert_close(shallow(x, s), tail(t)[..., :21, :30], rtol=0, atol=0)
    shallow.stylize(torch.rand(1, 3, 5, 5), torch.rand(1, 3, 5, 5))  # the smallest: 2x2
    with pytest.raises(ValueError, match=r"H, W >= 5"):
        shallow.stylize(torch.rand(1, 3, 4, 8), s)
    with pytest.raises(ValueError, match="depth must be one of"):
        create_model("style/adain-slim", depth=5)
