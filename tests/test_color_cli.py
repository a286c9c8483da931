"""``mmgen colorize`` and :func:`mmgen.color.colorize.colorize`: each method writes a PNG with
its parameters and the input's lightness; bad input is one line, exit 2, nothing written."""

import numpy as np
import pytest
import torch
from cli_runner import run, run_refused
from PIL import Image

import mmgen
from mmgen.checkpoint import save_state_dict
from mmgen.cli import main
from mmgen.color.colorize import (
    ColorizeRequest,
    colorize,
    is_sepia,
    read_colorize_params,
    run_network,
)
from mmgen.color.lab import rgb_to_lab
from mmgen.color.zhang import ECCV16Colorizer, SIGGRAPH17Colorizer

W, H = 72, 40  # the gray test photo
L_TOLERANCE = 100 / 255


@pytest.fixture(autouse=True)
def no_installed_models(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A gray photo, a colour one, a reference, a tiny random learned model (folder) and random
    Zhang et al. files; broken files."""
    d = tmp_path_factory.mktemp("color")
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W]).reshape(2, 1, 1)
    gray = (40 + 180 * x * (0.5 + 0.5 * y)).round().astype(np.uint8)
    gray[10:25, 20:40] = 30  # a dark square: some structure
    Image.fromarray(gray, mode="L").save(d / "gray.png")
    colour = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.4 * x * y], -1)
    Image.fromarray((colour * 255).round().astype(np.uint8)).save(d / "colour.png")
    ref = np.zeros((50, 30, 3), np.uint8)
    ref[:, :15] = (200, 40, 30)  # red and
    ref[:, 15:] = (30, 60, 200)  # blue halves
    Image.fromarray(ref).save(d / "reference.png")
    torch.manual_seed(0)
    net = mmgen.create_model("color/unet-tiny")
    with torch.no_grad():
        net.head[-1].bias.normal_(0, 3)  # decisive colours
    net.save_pretrained(d / "learned")
    torch.manual_seed(0)
    eccv = ECCV16Colorizer()
    with torch.no_grad():  # the class ab of the real file: a grid symmetric about 0
        eccv.model_out.weight.copy_(torch.linspace(-1, 1, 313).repeat(2, 1)[:, :, None, None])
        eccv.model_out.weight[1].mul_(-1)
    torch.save(eccv.state_dict(), d / "eccv16.pth")
    save_state_dict(SIGGRAPH17Colorizer().state_dict(), d / "siggraph17.safetensors")
    save_state_dict({"a": torch.zeros(3)}, d / "wrong.safetensors")
    (d / "text.png").write_text("not an image")
    return d


def lightness(path) -> torch.Tensor:
    with Image.open(path) as im:
        rgb = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None] / 255
    return rgb_to_lab(rgb)[0, 0]


METHOD_ARGS = {
    "learned": lambda d: f"--weights {d / 'learned'}",
    "reference": lambda d: f"--reference {d / 'reference.png'}",
    "zhang-eccv16": lambda d: f"--method zhang --weights {d / 'eccv16.pth'}",
    "zhang-siggraph17": lambda d: f"--method zhang --weights {d / 'siggraph17.safetensors'}",
}


@pytest.mark.parametrize("method", list(METHOD_ARGS))
def test_each_method_writes_a_png_with_its_parameters_and_the_input_lightness(
        files, tmp_path, capsys, method):
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, f"colorize {files / 'gray.png'} {METHOD_ARGS[method](files)} "
                                    f"--size 32 --out {out}")
    assert code == 0, err
    assert stdout.strip() == str(out)
    with Image.open(out) as im:
        assert im.size == (W, H) and im.mode == "RGB"
        assert im.text["parameters"].startswith(f"Colorize: {method.split('-')[0]}")
    params = read_colorize_params(out)
    assert params.method == method.split("-")[0] and (params.width, params.height) == (W, H)
    assert params.input_mode == "gray" and params.size == 32
    assert (params.temperature > 0) == (method in ("learned", "zhang-eccv16"))
    assert (lightness(out) - lightness(files / "gray.png")).abs().max() < L_TOLERANCE
    if method in ("learned", "reference"):
        with Image.open(out) as im:
            rgb = np.asarray(im).astype(int)
        assert (rgb.max(axis=2) - rgb.min(axis=2)).mean() > 5  # colour was added


def test_reference_colours_come_from_the_reference(files, tmp_path):
    image = colorize(files / "gray.png", ColorizeRequest(method="reference"),
                     reference=files / "reference.png")
    rgb = np.asarray(image).astype(int)
    coloured = (rgb.max(axis=2) - rgb.min(axis=2)) > 20
    red = coloured & (rgb[..., 0] > rgb[..., 2])
    blue = coloured & (rgb[..., 2] > rgb[..., 0])
    assert red.sum() + blue.sum() == coloured.sum() > 0  # no hue the reference lacks
    assert read_colorize_params  # noqa: B018 (imported API)
    assert image.info["mmgen-colorize"]


def test_a_colour_image_is_read_as_its_lightness(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"colorize {files / 'colour.png'} {METHOD_ARGS['learned'](files)} "
                               f"--size 32 --out {out}")
    assert code == 0, err
    assert read_colorize_params(out).input_mode == "color (L only)"
    assert (lightness(out) - lightness(files / "colour.png")).abs().max() < L_TOLERANCE


def test_colorfulness_raises_the_chroma(files, tmp_path):
    torch.manual_seed(1)
    net = mmgen.create_model("color/unet-tiny")
    with torch.no_grad():
        net.head[-1].bias.normal_(0, 1)  # a spread-out distribution: T matters
    net.save_pretrained(tmp_path / "soft")
    for method in ("learned", "reference"):
        chroma = []
        for c in (0.5, 1.0, 2.0):
            request = ColorizeRequest(method=method, colorfulness=c, size=32,
                                      weights=str(tmp_path / "soft") if method == "learned"
                                      else None)
            image = colorize(files / "gray.png", request, reference=files / "reference.png"
                             if method == "reference" else None)
            lab = rgb_to_lab(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None] / 255)
            chroma.append(float(lab[0, 1:].norm(dim=0).mean()))
        assert chroma[0] < chroma[1] < chroma[2], (method, chroma)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "1"])
def test_other_image_modes_are_converted(files, tmp_path, capsys, mode):
    with Image.open(files / "gray.png") as im:
        if mode == "I;16":
            im = Image.fromarray(np.asarray(im).astype(np.uint16) * 257)
        elif mode == "RGBA":
            im = im.convert("RGBA")
        else:
            im = im.convert(mode)
        src = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
        im.save(src)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"colorize {src} {METHOD_ARGS['learned'](files)} --size 32 "
                               f"--out {out}")
    assert code == 0, err
    with Image.open(out) as result:
        assert result.size == (W, H)


# ----------------------------------------------------------------------------- sepia guard


class Stub(torch.nn.Module):
    """A class network whose colours are sepia at T >= 0.2 and varied below."""

    predicts_classes = True

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.temperatures = []

    def predict_ab(self, lightness, temperature):
        self.temperatures.append(temperature)
        n, _, h, w = lightness.shape
        if temperature >= 0.2:
            return torch.tensor([6.0, 12.0]).view(1, 2, 1, 1).expand(n, 2, h, w)  # brown
        ab = torch.zeros(n, 2, h, w)
        ab[:, 0, :, : w // 2], ab[:, 1, :, w // 2:] = 40.0, -40.0  # red and blue
        return ab


def test_the_sepia_guard_decodes_a_sepia_result_more_colourfully():
    rgb = torch.full((1, 3, 20, 20), 0.5)
    stub = Stub()
    _, temperature, guard = run_network(stub, rgb, ColorizeRequest())
    assert guard == "applied" and temperature == pytest.approx(0.19)
    assert stub.temperatures == [pytest.approx(0.38), pytest.approx(0.19)]
    _, temperature, guard = run_network(Stub(), rgb, ColorizeRequest(sepia_guard=False))
    assert guard == "off" and temperature == pytest.approx(0.38)
    _, temperature, guard = run_network(Stub(), rgb, ColorizeRequest(colorfulness=2))
    assert guard == "not needed" and temperature == pytest.approx(0.19)
    assert is_sepia(torch.tensor([6.0, 12.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4))
    assert not is_sepia(torch.zeros(1, 2, 4, 4))  # gray is not sepia
    assert not is_sepia(torch.tensor([-30.0, 30.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4))


# ----------------------------------------------------------------------------- bad inputs


# name -> (argv after "colorize", a piece of the expected message); {g} the gray photo, {d} the
# files fixture, {t} this test's folder, {learned} a working learned model's arguments
BAD = {
    "missing image": ("{t}/nope.png {learned}", "no such file, nor a bundled photo name"),
    "unreadable image": ("{d}/text.png {learned}", "not a readable image"),
    "tiny image": ("{t}/tiny.png {learned}", "is 1x1 px; colorization needs at least 16 px"),
    "thin image": ("{t}/thin.png {learned}", "is 300x8 px"),
    "float pixels": ("{t}/float.tiff {learned}", "PIL mode 'F'"),
    "zhang without weights": ("{g} --method zhang", "needs weights: the file of Zhang"),
    "missing zhang file": ("{g} --method zhang --weights {t}/nope.pth", "no such file"),
    "wrong zhang file": ("{g} --method zhang --weights {d}/wrong.safetensors", "wrong.safetens"),
    "unreadable zhang file": ("{g} --method zhang --weights {d}/text.png", "text.png"),
    "learned model missing": ("{g} --weights {t}/nope", "learned colorizer"),
    "another kind of model": ("{g} --weights {t}/gan", "not a colorizer"),
    "reference with zhang": ("{g} --reference {d}/reference.png --method zhang "
                             "--weights {d}/eccv16.pth", "--reference is read by --method "
                                                          "reference"),
    "reference method without one": ("{g} --method reference", "needs --reference"),
    "missing reference": ("{g} --reference {t}/nope.png", "reference {t}/nope.png: no such"),
    "tiny reference": ("{g} --reference {t}/tiny.png", "reference"),
    "seed without reference": ("{g} {learned} --seed 3", "--seed: --method reference only"),
    "colorfulness": ("{g} {learned} --colorfulness 0", "must be in (0, 4]"),
    "size": ("{g} {learned} --size 8", "must be at least 16 px"),
    "out suffix": ("{g} {learned} --out {t}/out.jpg", "give a file ending in .png"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_exit_2_and_no_file(files, tmp_path, capsys, name):
    Image.new("L", (1, 1)).save(tmp_path / "tiny.png")
    Image.new("L", (300, 8)).save(tmp_path / "thin.png")
    Image.new("F", (64, 64)).save(tmp_path / "float.tiff")
    mmgen.create_model("gan/dcgan/tiny").save_pretrained(tmp_path / "gan")
    template, message = BAD[name]
    argv = template.format(g=files / "gray.png", d=files, t=tmp_path,
                           learned=METHOD_ARGS["learned"](files))
    message = message.format(t=tmp_path)
    size = "" if "--size" in argv else "--size 32"
    run_refused(capsys, "colorize", f"{argv} {size}", tmp_path / "out.png", message)


def test_a_huge_input_file_is_refused_from_its_header(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMGEN_MAX_INPUT_PIXELS", "1000")  # 72 x 40 = 2,880 pixels
    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"colorize {files / 'gray.png'} {METHOD_ARGS['learned'](files)} "
                               f"--out {out}")
    assert code == 2 and "image size 72x40 (2,880 pixels) is over the limit" in err
    assert err.count("\n") == 1 and not out.exists()


def test_existing_output_and_debug(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"mine")
    code, _, err = run(capsys, f"colorize {files / 'gray.png'} {METHOD_ARGS['learned'](files)} "
                               f"--size 32 --out {out}")
    assert code == 2 and "--overwrite replaces it" in err and out.read_bytes() == b"mine"
    with pytest.raises(ValueError, match="needs weights"):
        main(["--debug", "colorize", str(files / "gray.png"), "--method", "zhang", "--out",
              str(tmp_path / "new.png")])


def test_request_checks():
    with pytest.raises(ValueError, match="method must be one of learned, reference, zhang"):
        ColorizeRequest(method="deoldify")
    with pytest.raises(ValueError, match="colorfulness must be a number in"):
        ColorizeRequest(colorfulness=float("nan"))
    with pytest.raises(ValueError, match="seed must be a whole number"):
        ColorizeRequest(method="reference", seed=1.5)
    with pytest.raises(ValueError, match="uses no network"):
        ColorizeRequest(method="reference", weights="x.pth")
    with pytest.raises(ValueError, match="only read by method reference"):
        colorize("coffee", ColorizeRequest(), reference="chelsea")
