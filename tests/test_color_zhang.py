"""Zhang et al.'s published colorizers (richzhang/colorization: ECCV16, SIGGRAPH17).

Parity on random weights (the published files cannot be downloaded here): each state dict is
built with the reference's key names and shapes, loaded through ``load_zhang`` from .pth and
.safetensors, and compared with a functional forward written here from the reference's
``eccv16.py`` / ``siggraph17.py`` with torch.nn.functional ops only (no mmgen module code).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import save_weights

from mmgen.checkpoint import UnsafeCheckpointError
from mmgen.color.zhang import ARCHS, ECCV16Colorizer, SIGGRAPH17Colorizer, load_zhang

TOL = {"rtol": 1e-5, "atol": 1e-5}

# The reference's stages: (name, channels, stride of the last conv, dilation, index of the
# first conv). A stage is (conv, ReLU) per channel step, then BatchNorm.
ECCV16_STAGES = [
    ("model1", [1, 64, 64], 2, 1, 0),
    ("model2", [64, 128, 128], 2, 1, 0),
    ("model3", [128, 256, 256, 256], 2, 1, 0),
    ("model4", [256, 512, 512, 512], 1, 1, 0),
    ("model5", [512, 512, 512, 512], 1, 2, 0),
    ("model6", [512, 512, 512, 512], 1, 2, 0),
    ("model7", [512, 512, 512, 512], 1, 1, 0),
]
SIGGRAPH17_STAGES = [  # build_basic_block; model8 and model9 start with a ReLU (init_relu)
    ("model1", [4, 64, 64], 1, 1, 0),
    ("model2", [64, 128, 128], 1, 1, 0),
    ("model3", [128, 256, 256, 256], 1, 1, 0),
    ("model4", [256, 512, 512, 512], 1, 1, 0),
    ("model5", [512, 512, 512, 512], 1, 2, 0),
    ("model6", [512, 512, 512, 512], 1, 2, 0),
    ("model7", [512, 512, 512, 512], 1, 1, 0),
    ("model8", [256, 256, 256], 1, 1, 1),
    ("model9", [128, 128], 1, 1, 1),
]
STAGES = {"eccv16": ECCV16_STAGES, "siggraph17": SIGGRAPH17_STAGES}


def _conv(shapes, name, cin, cout, k=3, bias=True):
    shapes[f"{name}.weight"] = (cout, cin, k, k)
    if bias:
        shapes[f"{name}.bias"] = (cout,)


def _deconv(shapes, name, cin, cout):
    shapes[f"{name}.weight"] = (cin, cout, 4, 4)  # ConvTranspose2d: (in, out, k, k)
    shapes[f"{name}.bias"] = (cout,)


def _stage_shapes(shapes, stages):
    for name, channels, _, _, first in stages:
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            _conv(shapes, f"{name}.{first + 2 * i}", cin, cout)
        bn = f"{name}.{first + 2 * (len(channels) - 1)}"
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{part}"] = (channels[-1],)
        shapes[f"{bn}.num_batches_tracked"] = ()


def eccv16_shapes():
    """The reference ECCVGenerator's state-dict names and shapes."""
    shapes = {}
    _stage_shapes(shapes, ECCV16_STAGES)
    _deconv(shapes, "model8.0", 512, 256)
    _conv(shapes, "model8.2", 256, 256)
    _conv(shapes, "model8.4", 256, 256)
    _conv(shapes, "model8.6", 256, 313, k=1)
    _conv(shapes, "model_out", 313, 2, k=1, bias=False)
    return shapes


def siggraph17_shapes():
    """The reference SIGGRAPHGenerator's state-dict names and shapes."""
    shapes = {}
    _stage_shapes(shapes, SIGGRAPH17_STAGES)
    _deconv(shapes, "model8up.0", 512, 256)
    _conv(shapes, "model3short8.0", 256, 256)
    _deconv(shapes, "model9up.0", 256, 128)
    _conv(shapes, "model2short9.0", 128, 128)
    _deconv(shapes, "model10up.0", 128, 128)
    _conv(shapes, "model1short10.0", 64, 128)
    _conv(shapes, "model10.1", 128, 128)
    _conv(shapes, "model_class.0", 256, 529, k=1)
    _conv(shapes, "model_out.0", 128, 2, k=1)
    return shapes


def _random(shapes, seed=0):
    """Conv weights ~ He-scaled normals (activations stay O(1) through the deep stacks), norm
    scales near 1, running variances positive, biases and means small; ECCV16's class ab
    (model_out.weight, ab / 110) in [-1, 1], symmetric about 0 as the published ab grid (the
    mean of a flat distribution is gray)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key == "model_out.weight":  # (2, 313, 1, 1): point-symmetric about 0, as a grid
            half = torch.rand(shape[1] // 2, 2, generator=g) * 2 - 1  # (156, 2)
            bins = torch.cat([half, -half, torch.zeros(1, 2)])  # (313, 2): centroid 0
            state[key] = bins[torch.randperm(shape[1], generator=g)].T[:, :, None, None]
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("weight"):  # BatchNorm scale
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=g)
    return state




def _cheap(shapes):
    """Zero tensors of ``shapes`` that share one element (torch.save writes it once): files
    for the name and shape checks, which fail before any value is read."""
    one = torch.zeros(())
    return {k: one.expand(shape) for k, shape in shapes.items()}


# ----------------------------------------------------------------------------- the references


def _stages(sd, x, stages):
    """The reference's (conv, ReLU)... BatchNorm stages, run over ``sd``; the activations
    before each stage's subsampling are returned too."""
    outputs = {}
    for name, channels, last_stride, dilation, first in stages:
        if first:  # init_relu
            x = F.relu(x)
        steps = len(channels) - 1
        for i in range(steps):
            w, b = sd[f"{name}.{first + 2 * i}.weight"], sd[f"{name}.{first + 2 * i}.bias"]
            stride = last_stride if i == steps - 1 else 1
            x = F.relu(F.conv2d(x, w, b, stride=stride, padding=dilation, dilation=dilation))
        bn = f"{name}.{first + 2 * steps}"
        x = F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"],
                         sd[f"{bn}.weight"], sd[f"{bn}.bias"], training=False, eps=1e-5)
        outputs[name] = x
    return outputs


def _conv_ref(sd, name, x):
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd.get(f"{name}.bias"), padding=w.shape[-1] // 2)


def _deconv_ref(sd, name, x):
    return F.conv_transpose2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=2, padding=1)


def eccv16_logits(sd, lightness):
    """ECCVGenerator.forward up to conv8_3 (the class logits)."""
    x = _stages(sd, (lightness - 50) / 100, ECCV16_STAGES)["model7"]
    x = F.relu(_deconv_ref(sd, "model8.0", x))
    x = F.relu(_conv_ref(sd, "model8.2", x))
    x = F.relu(_conv_ref(sd, "model8.4", x))
    return _conv_ref(sd, "model8.6", x)


def eccv16_reference(sd, lightness):
    """ECCVGenerator.forward: L in [0, 100] -> ab."""
    out = F.conv2d(F.softmax(eccv16_logits(sd, lightness), dim=1), sd["model_out.weight"])
    return F.interpolate(out, scale_factor=4, mode="bilinear", align_corners=False) * 110


def siggraph17_reference(sd, lightness, hints=None, mask=None):
    """SIGGRAPHGenerator.forward: L in [0, 100], ab hints, mask -> ab."""
    hints = torch.cat([lightness * 0, lightness * 0], dim=1) if hints is None else hints
    mask = lightness * 0 if mask is None else mask
    x = torch.cat([(lightness - 50) / 100, hints / 110, mask], dim=1)
    s = {}

    def stage(name, y):
        spec = [t for t in SIGGRAPH17_STAGES if t[0] == name]
        return _stages(sd, y, spec)[name]

    s[1] = stage("model1", x)
    s[2] = stage("model2", s[1][:, :, ::2, ::2])
    s[3] = stage("model3", s[2][:, :, ::2, ::2])
    y = stage("model4", s[3][:, :, ::2, ::2])
    y = stage("model7", stage("model6", stage("model5", y)))
    y = stage("model8", _deconv_ref(sd, "model8up.0", y) + _conv_ref(sd, "model3short8.0", s[3]))
    y = stage("model9", _deconv_ref(sd, "model9up.0", y) + _conv_ref(sd, "model2short9.0", s[2]))
    y = _deconv_ref(sd, "model10up.0", y) + _conv_ref(sd, "model1short10.0", s[1])
    y = F.leaky_relu(_conv_ref(sd, "model10.1", F.relu(y)), 0.2)
    return torch.tanh(_conv_ref(sd, "model_out.0", y)) * 110


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def eccv16_state():
    return _random(eccv16_shapes(), seed=0)


@pytest.fixture(scope="module")
def siggraph17_state():
    return _random(siggraph17_shapes(), seed=1)


@pytest.fixture(scope="module")
def eccv16_model(eccv16_state, tmp_path_factory):
    return load_zhang(save_weights(eccv16_state, tmp_path_factory.mktemp("eccv16"), ".pth"))


@pytest.fixture(scope="module")
def siggraph17_model(siggraph17_state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sig17")
    return load_zhang(save_weights(siggraph17_state, folder, ".safetensors"))


def _lightness(*shape, seed=2):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 100


_REFERENCES = {}


def _references(reference, state):
    """(L, the reference's ab) at 64x64 (a batch of 2) and 48x72, computed once per network
    (both file types are compared with them)."""
    if reference not in _REFERENCES:
        inputs = _lightness(2, 1, 64, 64), _lightness(1, 1, 48, 72, seed=3)
        with torch.no_grad():
            _REFERENCES[reference] = [(x, reference(state, x)) for x in inputs]
    return _REFERENCES[reference]


def _check_loaded(model, cls, state):
    assert isinstance(model, cls) and not model.training
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert all(t.device.type == "cpu" and t.dtype == state[k].dtype for k, t in tensors.items())
    assert all(t.requires_grad for t in model.parameters())


def _chroma(ab):
    return torch.hypot(ab[:, 0], ab[:, 1]).mean().item()


# ----------------------------------------------------------------------------- ECCV16


def test_module_keys_are_the_references():
    assert ARCHS == ("eccv16", "siggraph17")
    with torch.device("meta"):
        modules = ECCV16Colorizer(), SIGGRAPH17Colorizer()
    for module, shapes in zip(modules, (eccv16_shapes(), siggraph17_shapes()), strict=True):
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes


@pytest.mark.parametrize(("suffix", "tracked"), [(".pth", True), (".safetensors", False)])
def test_eccv16_parity(eccv16_state, tmp_path, suffix, tracked):
    """Both file types; files of older torch lack num_batches_tracked, which is optional."""
    state = {k: v for k, v in eccv16_state.items()
             if tracked or not k.endswith("num_batches_tracked")}
    model = load_zhang(save_weights(state, tmp_path, suffix))
    _check_loaded(model, ECCV16Colorizer, eccv16_state)
    with torch.no_grad():
        for lightness, expected in _references(eccv16_reference, eccv16_state):
            out = model(lightness)
            assert out.shape == (len(lightness), 2, *lightness.shape[-2:])
            torch.testing.assert_close(out, expected, **TOL)


def test_eccv16_predict_ab_temperature_and_sizes(eccv16_model, eccv16_state):
    lightness = _lightness(2, 1, 64, 64)
    with torch.no_grad():
        mean = eccv16_model(lightness)
        torch.testing.assert_close(eccv16_model.predict_ab(lightness, temperature=1.0), mean,
                                   **TOL)
        small = _lightness(1, 1, 32, 32, seed=7)
        chroma = [_chroma(eccv16_model.predict_ab(small, t)) for t in (1.0, 0.38, 0.1)]
        assert chroma[0] < chroma[1] < chroma[2], chroma  # colder: nearer the mode, bolder
        assert _chroma(eccv16_model.predict_ab(small)) == pytest.approx(chroma[1])
        odd = _lightness(1, 1, 37, 50, seed=4)
        ab = eccv16_model.predict_ab(odd, temperature=1.0)
        padded = F.pad(odd, (0, 6, 0, 3), mode="reflect")  # 40 x 56: multiples of 8
        expected = eccv16_reference(eccv16_state, padded)[..., :37, :50]
    assert ab.shape == (1, 2, 37, 50)
    torch.testing.assert_close(ab, expected, **TOL)
    assert eccv16_model.predict_ab(_lightness(1, 1, 16, 21)).shape == (1, 2, 16, 21)
    with pytest.raises(ValueError, match=r"takes L of shape \(N, 1, H, W\) with H, W >= 16, "
                                         r"got \(1, 1, 15, 40\)"):
        eccv16_model.predict_ab(_lightness(1, 1, 15, 40))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        eccv16_model.predict_ab(lightness, temperature=0.0)


# ----------------------------------------------------------------------------- SIGGRAPH17


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_siggraph17_parity(siggraph17_state, tmp_path, suffix):
    model = load_zhang(save_weights(siggraph17_state, tmp_path, suffix))
    _check_loaded(model, SIGGRAPH17Colorizer, siggraph17_state)
    with torch.no_grad():
        for lightness, expected in _references(siggraph17_reference, siggraph17_state):
            out = model(lightness)
            assert out.shape == (len(lightness), 2, *lightness.shape[-2:])
            torch.testing.assert_close(out, expected, **TOL)


def test_siggraph17_hints(siggraph17_model, siggraph17_state):
    """User points change the output as in the reference (forward and predict_ab)."""
    g = torch.Generator().manual_seed(5)
    lightness = _lightness(2, 1, 48, 64)
    mask = (torch.rand(2, 1, 48, 64, generator=g) < 0.02).float()
    hints = (torch.rand(2, 2, 48, 64, generator=g) * 220 - 110) * mask
    with torch.no_grad():
        expected = siggraph17_reference(siggraph17_state, lightness, hints, mask)
        torch.testing.assert_close(siggraph17_model(lightness, hints, mask), expected, **TOL)
        ab = siggraph17_model.predict_ab(lightness, hints=hints, mask=mask)
        torch.testing.assert_close(ab, expected, **TOL)
        plain = siggraph17_model.predict_ab(lightness)
    assert (ab - plain).abs().max() > 1e-3  # the hints matter
    with pytest.raises(ValueError, match="takes hints and mask together"):
        siggraph17_model.predict_ab(lightness, hints=hints)
    with pytest.raises(ValueError, match=r"takes hints of shape \(N, 2, H, W\)"):
        siggraph17_model.predict_ab(lightness, hints=mask, mask=mask)
    with pytest.raises(ValueError, match=r"hints \(1, 2, 48, 64\) and mask \(1, 1, 48, 64\) "
                                         r"must have L's batch and size \(2, 1, 48, 64\)"):
        siggraph17_model.predict_ab(lightness, hints=hints[:1], mask=mask[:1])


def test_siggraph17_predict_ab_sizes(siggraph17_model, siggraph17_state):
    """Any size >= 16 (reflection-padded to multiples of 8, cropped back); no temperature."""
    odd = _lightness(1, 1, 37, 50, seed=4)
    with torch.no_grad():
        ab = siggraph17_model.predict_ab(odd)
        padded = F.pad(odd, (0, 6, 0, 3), mode="reflect")
        expected = siggraph17_reference(siggraph17_state, padded)[..., :37, :50]
        torch.testing.assert_close(siggraph17_model.predict_ab(odd, temperature=0.1), ab)
        mask = torch.zeros(1, 1, 37, 50)
        mask[..., 36, 49] = 1  # a point at the corner: its hint is not mirrored into padding
        hints = torch.full((1, 2, 37, 50), 50.0) * mask
        hinted = siggraph17_model.predict_ab(odd, hints=hints, mask=mask)
        pad = (0, 6, 0, 3)
        expected_hinted = siggraph17_reference(siggraph17_state, padded, F.pad(hints, pad),
                                               F.pad(mask, pad))[..., :37, :50]
    assert ab.shape == (1, 2, 37, 50) and hinted.shape == (1, 2, 37, 50)
    torch.testing.assert_close(ab, expected, **TOL)
    torch.testing.assert_close(hinted, expected_hinted, **TOL)
    with pytest.raises(ValueError, match=r"H, W multiples of 8, got \(1, 1, 37, 50\); "
                                         "predict_ab takes any size"):
        siggraph17_model(odd)


# ----------------------------------------------------------------------------- loading errors


def test_arch_detection_and_forcing(tmp_path):
    sig = save_weights(_cheap(siggraph17_shapes()), tmp_path, ".pth", "sig")
    with pytest.raises(ValueError, match=r"sig\.pth as the ECCV16 colorizer .*: the weights do "
                                         r"not fit \(missing \d+: model8\.0\.bias") as e:
        load_zhang(sig, arch="eccv16")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"unknown architecture 'eccv17' for Zhang et al.'s "
                                         r"colorizers: expected one of eccv16, siggraph17"):
        load_zhang(sig, arch="eccv17")
    other = save_weights({"conv.weight": torch.zeros(3, 3, 1, 1)}, tmp_path, ".pth", "other")
    with pytest.raises(ValueError, match=r"other\.pth holds neither of Zhang et al.'s "
                                         r"colorizers: expected model_out\.weight \(eccv16\) .*"
                                         r"found 1 tensor\(s\) \(conv\.weight\)"):
        load_zhang(other)


def test_missing_unexpected_and_misshaped_tensors(tmp_path):
    shapes = eccv16_shapes()
    missing = {k: v for k, v in shapes.items() if k != "model8.6.bias"}
    with pytest.raises(ValueError, match=r"missing 1: model8\.6\.bias\)$") as e:
        load_zhang(save_weights(_cheap(missing), tmp_path, ".pth", "missing"))
    assert "missing.pth as the ECCV16 colorizer" in str(e.value) and "\n" not in str(e.value)
    renamed = dict(shapes, **{"model1.4.running_avg": shapes["model1.4.running_var"]})
    del renamed["model1.4.running_var"]
    with pytest.raises(ValueError, match=r"missing 1: model1\.4\.running_var; unexpected 1: "
                                         r"model1\.4\.running_avg"):
        load_zhang(save_weights(_cheap(renamed), tmp_path, ".pth", "renamed"))
    with pytest.raises(ValueError, match=r"model_out\.weight \[2, 261, 1, 1\] \(expected "
                                         r"\[2, 313, 1, 1\]\)"):
        load_zhang(save_weights(_cheap(dict(shapes, **{"model_out.weight": (2, 261, 1, 1)})),
                         tmp_path, ".pth", "bins"))
    sig = dict(siggraph17_shapes(), **{"model_class.0.weight": (313, 256, 1, 1)})
    with pytest.raises(ValueError, match=r"as the SIGGRAPH17 colorizer .*model_class\.0\.weight "
                                         r"\[313, 256, 1, 1\] \(expected \[529, 256, 1, 1\]\)"):
        load_zhang(save_weights(_cheap(sig), tmp_path, ".pth", "sig"))


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="siggraph17-df00044c.pth"):
        load_zhang(tmp_path / "siggraph17-df00044c.pth")
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(6),
                          dtype=torch.uint8)
    noise[0] = ord("x")  # neither a zip ("PK") nor a pickle (0x80)
    for suffix, message in ((".pth", "is not a PyTorch weight file"),
                            (".safetensors", "is not a readable safetensors file")):
        path = tmp_path / f"noise{suffix}"
        path.write_bytes(noise.numpy().tobytes())
        with pytest.raises(ValueError, match=message) as e:
            load_zhang(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    whole = save_weights({"model_out.weight": torch.rand(2, 313, 1, 1)}, tmp_path, ".pth", "whole")
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pth is truncated or damaged"):
        load_zhang(truncated)
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(b"")
    with pytest.raises(ValueError, match=r"bare\.safetensors is not a readable safetensors"):
        load_zhang(bare)


RAN = []


def _record(value):
    RAN.append(value)
    return value


class Payload:
    """Pickles as a call of _record: loading it with full unpickling would run code."""

    def __reduce__(self):
        return (_record, ("ran",))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_out.weight": torch.zeros(2, 313, 1, 1), "x": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth is a pickle that needs "
                                                    "arbitrary code to load") as e:
        load_zhang(path)
    assert "\n" not in str(e.value)
    assert RAN == []  # nothing in the file ran
