"""``mmgen style`` and :func:`mmgen.style.transfer.stylize` on tiny inputs: 64 px images, a few
gatys steps on the random features, and tiny random-weight fast (TransformerNet) and AdaIN
networks saved to a temporary folder.

What holds, per method: each writes a PNG of the content's aspect at long side --size that
carries its parameters; --preserve-color keeps the content's YIQ chroma for gatys and fast
(luminance-only transfer) and colour-matches the style to the content first for adain;
strength 0 returns the content exactly for gatys and fast, and for adain (alpha 0) the
decoder's reconstruction of the content, whatever the style. Every bad input is one stderr
line, exit code 2, no traceback and no file.
"""


import numpy as np
import pytest
import torch
from cli_runner import run, run_refused
from PIL import Image

import mmgen
from mmgen.checkpoint import save_state_dict
from mmgen.cli import main
from mmgen.data.images import to_pil, to_rgb, to_tensor
from mmgen.style.color import match_color, rgb_to_yiq
from mmgen.style.features import FeatureConfig, FeatureNetwork
from mmgen.style.images import check_images
from mmgen.style.transfer import (
    JSON_KEY,
    StyleParams,
    StyleRequest,
    gatys_config,
    read_style_params,
    stylize,
)

W, H = 64, 48  # the content's size: with --size 64 it is not resized
FAST_STYLES = ("mosaic", "swirls", "waves")  # of the tiny multi-style fast network


@pytest.fixture(autouse=True)
def no_installed_models(tmp_path, monkeypatch):
    """An empty model directory, so no installed style model changes what a test sees."""
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A colourful content PNG (W x H), a style PNG, and tiny random fast and AdaIN models as
    mmgen folders and as bare weight files."""
    d = tmp_path_factory.mktemp("style")
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W]).reshape(2, 1, 1)
    content = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.4 * x * y], -1)  # moderate chroma
    content[10:30, 20:40] = (0.8, 0.3, 0.2)  # a red-brown square: some structure
    Image.fromarray((content * 255).round().astype(np.uint8)).save(d / "content.png")
    rng = np.random.default_rng(0)
    stripes = np.where((np.arange(W)[None, :] // 4 + rng.integers(0, 2, (H, 1))) % 2, 40, 220)
    Image.fromarray(np.stack([stripes, stripes // 2, 255 - stripes], -1).astype(np.uint8)) \
        .save(d / "style.png")
    torch.manual_seed(0)
    fast = mmgen.create_model("style/transformer-net-small")
    with torch.no_grad():  # random weights, output mid-grey with texture (not all black)
        fast.deconv3.conv2d.weight.mul_(20.0)
        fast.deconv3.conv2d.bias.fill_(128.0)
    fast.save_pretrained(d / "fast")
    save_state_dict(fast.state_dict(), d / "fast.safetensors")
    fast3 = mmgen.create_model("style/transformer-net-small", styles=FAST_STYLES)
    with torch.no_grad():  # the same, and norm rows that differ per style
        fast3.deconv3.conv2d.weight.mul_(20.0)
        fast3.deconv3.conv2d.bias.fill_(128.0)
        for name, p in fast3.named_parameters():
            if name.split(".")[-2].startswith("in"):  # (3, C) gamma and beta rows
                p.add_(0.5 * torch.randn(p.shape))
    fast3.save_pretrained(d / "fast3")
    adain = mmgen.create_model("style/adain-small")
    adain.save_pretrained(d / "adain")
    save_state_dict(adain.encoder.state_dict(), d / "encoder.safetensors")
    save_state_dict(adain.decoder.state_dict(), d / "decoder.safetensors")
    save_state_dict({"a": torch.zeros(3)}, d / "wrong.safetensors")
    (d / "damaged.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    (d / "text.png").write_text("not an image")
    return d


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


METHOD_ARGS = {  # argv after CONTENT for each method, given the files fixture folder d
    "gatys": lambda d: f"{d / 'style.png'} --steps 8",
    "fast": lambda d: f"--method fast --weights {d / 'fast'}",
    "adain": lambda d: f"{d / 'style.png'} --method adain --weights {d / 'adain'}",
}


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("method", ["gatys", "fast", "adain"])
def test_each_method_writes_a_png_with_its_parameters(files, tmp_path, capsys, method):
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, f"style {files / 'content.png'} {METHOD_ARGS[method](files)}"
                                    f" --size 64 --out {out}")
    assert code == 0, err
    assert stdout.strip() == str(out)
    with Image.open(out) as im:
        assert im.size == (W, H) and im.mode == "RGB"
        assert im.info["parameters"].startswith(f"Style transfer: {method}")
    params = read_style_params(out)
    assert (params.method, params.size, params.width, params.height) == (method, 64, W, H)
    assert params.content == str(files / "content.png")
    assert params.styles == (() if method == "fast" else (str(files / "style.png"),))
    assert params.weights == {"gatys": "random", "fast": str(files / "fast"),
                              "adain": str(files / "adain")}[method]
    assert len(params.weights_hash) == 10 and params.strength == 1.0
    assert params.steps == (8 if method == "gatys" else 0)
    assert np.abs(pixels(out).astype(int) - pixels(files / "content.png")).mean() > 2  # styled
    assert ("style transfer" in err) == (method == "gatys")  # gatys' progress bar, on stderr


def test_the_cli_writes_what_the_api_makes_and_sizes_follow_the_long_side(files, tmp_path,
                                                                         capsys):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"style {files / 'content.png'} mosaic waves --method adain "
                               f"--weights {files / 'adain'} --style-weights 3 1 --size 40 "
                               f"--out {out}")
    assert code == 0, err
    image = stylize(files / "content.png", ["mosaic", "waves"],
                    StyleRequest("adain", size=40, weights=str(files / "adain"),
                                 style_weights=(3, 1)))
    assert image.size == (40, 30)  # 64x48 -> long side 40, aspect kept
    np.testing.assert_array_equal(pixels(out), np.asarray(image))
    params = read_style_params(out)
    assert params.styles == ("mosaic", "waves") and params.style_weights == (0.75, 0.25)
    # The published two-file form gives the same network, hence the same image.
    pair = f"{files / 'encoder.safetensors'},{files / 'decoder.safetensors'}"
    again = stylize(files / "content.png", ["mosaic", "waves"],
                    StyleRequest("adain", size=40, weights=pair, style_weights=(3, 1)))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(image))


def test_gatys_reads_a_torchvision_vgg16_file(files, tmp_path):
    torch.manual_seed(0)
    vgg16 = FeatureNetwork(FeatureConfig(kind="vgg", arch="vgg16"))  # random, torchvision keys
    save_state_dict(vgg16.state_dict(), tmp_path / "vgg16.safetensors")
    image = stylize(files / "content.png", ["mosaic"],
                    StyleRequest(size=32, steps=2, vgg_weights=tmp_path / "vgg16.safetensors"),
                    progress=False)
    params = StyleParams.from_json(image.info[JSON_KEY])
    assert image.size == (32, 24) and params.weights == str(tmp_path / "vgg16.safetensors")


def test_the_bundled_fast_network_transfers_offline(tmp_path, capsys):
    """No --weights and nothing installed: --method fast runs the bundled style-fast, and
    its output keeps the photo's contours and takes the painting's colours."""
    from mmgen.data.photos import load_photo
    from mmgen.metrics.style import color_histogram_distance, structure_similarity
    from mmgen.style.styles import load_style

    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"style astronaut swirls --method fast --size 128 --out {out}")
    assert code == 0, err
    params = read_style_params(out)
    assert params.weights == "style-fast" and params.styles == ("swirls",)
    output = to_tensor(Image.open(out))  # (1, 3, 128, 128)
    content = to_tensor(load_photo("astronaut", 128))
    style = to_tensor(load_style("swirls", 128))
    assert structure_similarity(output, content) > 0.3  # unrelated images: about 0
    assert color_histogram_distance(output, style) < 0.75 * color_histogram_distance(
        content, style)


def test_fast_picks_and_blends_the_styles_of_its_network_by_name(files, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path))
    net = mmgen.load(files / "fast3")
    net.save_pretrained(tmp_path / "models" / "style-fast")  # the installed fast model
    content = to_tensor(Image.open(files / "content.png"))  # (1, 3, H, W)
    for argv, mix, names, weights in (
            ("swirls", 1, ("swirls",), (1.0,)),
            ("mosaic waves --style-weights 3 1", torch.tensor([0.75, 0.0, 0.25]),
             ("mosaic", "waves"), (0.75, 0.25))):
        out = tmp_path / "out.png"
        code, _, err = run(capsys, f"style {files / 'content.png'} {argv} --method fast "
                                   f"--size 64 --out {out} --overwrite")
        assert code == 0, err
        params = read_style_params(out)
        assert params.weights == "style-fast" and params.styles == names
        assert params.style_weights == weights
        # stylize runs the network in channels_last (NHWC), the reference here in NCHW: the
        # same up to float rounding, at most one grey level on a few pixels
        diff = np.abs(pixels(out).astype(int) - np.asarray(to_pil(net.stylize(content, mix))))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.005, (diff.max(), (diff > 0).mean())
    # the same network given as weights, through the API; another style, another image
    by_folder = stylize(files / "content.png", ["mosaic", "waves"],
                        StyleRequest("fast", size=64, weights=str(files / "fast3"),
                                     style_weights=(3, 1)))
    np.testing.assert_array_equal(pixels(out), np.asarray(by_folder))
    waves = stylize(files / "content.png", "waves",
                    StyleRequest("fast", size=64, weights=str(files / "fast3")))
    assert np.abs(np.asarray(waves, dtype=int) - pixels(out)).mean() > 2


def test_fast_runs_a_one_style_network_file_as_before(files):
    folder = stylize(files / "content.png", [], StyleRequest("fast", size=64,
                                                             weights=str(files / "fast")))
    by_file = stylize(files / "content.png", [],
                      StyleRequest("fast", size=64, weights=str(files / "fast.safetensors")))
    np.testing.assert_array_equal(np.asarray(folder), np.asarray(by_file))  # same network
    params = StyleParams.from_json(by_file.info[JSON_KEY])
    assert params.styles == () and params.style_weights == ()


def test_preserve_color_keeps_the_content_chroma(files, tmp_path, capsys):
    content = to_tensor(Image.open(files / "content.png"))
    iq_content = rgb_to_yiq(content)[:, 1:]
    for method in ("gatys", "fast"):
        out = tmp_path / f"{method}.png"
        code, _, err = run(capsys, f"style {files / 'content.png'} {METHOD_ARGS[method](files)} "
                                   f"--size 64 --preserve-color --out {out}")
        assert code == 0, err
        styled = to_tensor(Image.open(out))
        iq = rgb_to_yiq(styled)[:, 1:]
        assert (iq - iq_content).abs().mean() < 0.02, method  # 8-bit rounding, a few clipped
        plain = stylize(files / "content.png", [] if method == "fast" else [files / "style.png"],
                        StyleRequest(method, size=64, steps=8, weights=str(files / "fast")
                                     if method == "fast" else None), progress=False)
        iq_plain = rgb_to_yiq(to_tensor(plain))[:, 1:]
        assert (iq_plain - iq_content).abs().mean() > 0.03, method  # without: colours move
    # adain: the style is recoloured to the content's colour statistics before the transfer
    request = StyleRequest("adain", size=64, weights=str(files / "adain"))
    kept = stylize(files / "content.png", [files / "style.png"],
                   StyleRequest("adain", size=64, weights=str(files / "adain"),
                                preserve_color=True))
    recoloured = to_pil(match_color(to_tensor(Image.open(files / "style.png")), content))
    np.testing.assert_allclose(np.asarray(kept, dtype=int),
                               np.asarray(stylize(files / "content.png", [recoloured], request),
                                          dtype=int), atol=1)  # match_color's 8-bit rounding


def test_strength_zero(files, tmp_path, capsys):
    content = pixels(files / "content.png")
    for method in ("gatys", "fast"):  # the content itself
        out = tmp_path / f"{method}.png"
        code, _, err = run(capsys, f"style {files / 'content.png'} {METHOD_ARGS[method](files)} "
                                   f"--size 64 --strength 0 --out {out}")
        assert code == 0, err
        np.testing.assert_array_equal(pixels(out), content)
    # adain, alpha 0: the decoder's reconstruction of the content, whatever the style
    request = StyleRequest("adain", strength=0.0, size=64, weights=str(files / "adain"))
    a = stylize(files / "content.png", [files / "style.png"], request)
    b = stylize(files / "content.png", ["mosaic"], request)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model = mmgen.load(files / "adain")
    with torch.no_grad():
        reconstruction = model.decoder(model.encode(to_tensor(Image.open(files / "content.png"))))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(to_pil(reconstruction[..., :H, :W])))


def test_overwrite(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    argv = f"style {files / 'content.png'} {METHOD_ARGS['fast'](files)} --size 64 --out {out}"
    code, _, err = run(capsys, argv)
    assert code == 2 and "already exists; --overwrite replaces it" in err
    assert out.read_bytes() == b"old"
    code, _, err = run(capsys, argv + " --overwrite")
    assert code == 0, err
    assert read_style_params(out).method == "fast"


def test_list(capsys):
    code, out, _ = run(capsys, "style --list")
    assert code == 0
    for name in ("mosaic", "swirls", "hubble_deep_field", "astronaut", "chelsea"):
        assert name in out
    assert "fast:  style-fast (bundled; styles swirls, pointillism, waves;" in out
    assert "adain: style-adain (bundled; --method adain runs it)" in out


def test_missing_models_name_their_recipes(files, tmp_path, monkeypatch, capsys):
    """Without the bundled folder (a package built without weights) and with nothing
    installed, --list and the methods that need a model say how to make it."""
    import mmgen.hub

    monkeypatch.setattr(mmgen.hub, "BUNDLED_DIR", tmp_path / "no-bundled-models")
    code, out, _ = run(capsys, "style --list")
    assert code == 0
    assert "adain: none (make it with mmgen train --recipe style-adain --install)" in out
    assert "fast:  none (make it with mmgen train --recipe style-fast --install)" in out
    for method, name in (("adain", "style-adain"), ("fast", "style-fast")):
        style = files / "style.png" if method == "adain" else "swirls"
        run_refused(capsys, "style", f"{files / 'content.png'} {style} --method {method} "
                    "--size 64", tmp_path / "out.png", f"mmgen train --recipe {name}")


# ----------------------------------------------------------------------------- input kinds


def test_image_modes_become_rgb():
    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 255, 255)])  # transparent red, opaque blue
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [0, 0, 255]]]  # on white
    assert to_rgb(Image.new("LA", (1, 1), (0, 128))).getpixel((0, 0)) == (127, 127, 127)
    palette = Image.new("P", (1, 1), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (1, 1), 90)).getpixel((0, 0)) == (90, 90, 90)
    sixteen = Image.fromarray(np.array([[65535, 257 * 100]], dtype=np.uint16))
    assert np.asarray(to_rgb(sixteen)).tolist() == [[[255] * 3, [100] * 3]]
    assert to_rgb(Image.new("CMYK", (1, 1), (0, 255, 255, 0))).getpixel((0, 0)) == (255, 0, 0)
    rotated = Image.new("RGB", (40, 20))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees clockwise to view
    rotated.info["exif"] = exif.tobytes()
    assert to_rgb(rotated).size == (20, 40)
    with pytest.raises(ValueError, match="PIL mode 'F'"):
        to_rgb(Image.new("F", (1, 1)))


def test_an_rgba_content_is_composited_on_white(files, tmp_path, capsys):
    rgba = Image.open(files / "content.png").convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))))
    rgba.save(tmp_path / "rgba.png")
    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"style {tmp_path / 'rgba.png'} {METHOD_ARGS['fast'](files)} "
                               f"--size 64 --strength 0 --out {out}")
    assert code == 0, err
    white = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    np.testing.assert_array_equal(pixels(out), np.asarray(white))


def test_the_shared_tensor_check():
    with pytest.raises(ValueError, match=r"TransformerNet expects images of shape \(N, 3, H, W\) "
                                         r"with H, W >= 5, got \(1, 3, 4, 8\)"):
        check_images(torch.zeros(1, 3, 4, 8), "images", "TransformerNet", 5)
    with pytest.raises(ValueError, match="float tensor"):
        check_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "content", "gatys")


def test_gatys_schedule():
    config = gatys_config(512, 384)  # the GatysConfig default stages, steps near its 200/120/60
    assert config.scales == (128, 256, 512) and config.steps == (218, 108, 54)
    assert gatys_config(256, 256, 30).scales == (128, 256)  # 64 px is under MIN_STAGE
    assert gatys_config(64, 48, 8).steps == (8,)
    assert gatys_config(512, 40).scales == (256, 512)  # 128 x 10 is too thin for relu5_1
    # the content layer follows the feature network: the paper's for VGG, a shallower one
    # for the random network (docs/style.md)
    assert config.content_layers == ("relu1_1", "relu2_1", "relu4_2")
    assert gatys_config(512, 384, network="vgg").content_layers == ("relu4_2",)


def test_stylize_gatys_uses_the_networks_content_layer(monkeypatch):
    """stylize hands gatys the random network's content layer, or VGG's with --vgg-weights."""
    import mmgen.style.transfer as transfer

    seen = []

    def fake_gatys(content, styles, net, config, *args, **kwargs):
        seen.append(config.content_layers)
        return content

    monkeypatch.setattr(transfer, "gatys", fake_gatys)
    content, style = torch.rand(1, 3, 64, 64), [torch.rand(1, 3, 64, 64)]
    transfer._gatys(content, style, (1.0,), StyleRequest(method="gatys", size=64), "random",
                    False)
    assert seen == [("relu1_1", "relu2_1", "relu4_2")]


# ----------------------------------------------------------------------------- bad inputs


# name -> (argv after "style", a piece of the expected message); {c} content, {s} style, {d} the
# files fixture, {t} this test's folder, {fast} / {adain} a working method's arguments
BAD = {
    "missing content": ("{t}/nope.png {s}", "no such file, nor a bundled photo"),
    "missing style": ("{c} {t}/nope.png", "no such file, nor a style or bundled photo"),
    "unreadable content": ("{d}/text.png {s}", "not a readable image"),
    "content is a folder": ("{d} {s}", "is a folder"),
    "float pixels": ("{t}/float.tiff {s}", "PIL mode 'F'"),
    "tiny content": ("{t}/tiny.png {s}", "is 16x16 px; style transfer needs"),
    "tiny style": ("{c} {t}/tiny.png", "at least 32 px a side"),
    "thin content": ("{t}/thin.png {adain}", "would use it at 64x3, under its minimum of 9"),
    "thin style, gatys": ("{c} {t}/thin.png", "under its minimum of 16 px"),
    "huge output": ("{c} {s} --size 4096", "MMGEN_MAX_PIXELS"),
    "no style": ("{c}", "gatys needs at least one style"),
    "style weights": ("{c} {s} mosaic --style-weights 1", "1 weight(s) for 2 style(s)"),
    "negative style weight": ("{c} {s} --style-weights -1", "finite numbers >= 0"),
    "fast style the bundled network does not know": (
        "{c} mosaic --method fast", "unknown style(s) 'mosaic': the network knows swirls, "
                                    "pointillism, waves"),
    "fast style unknown to the network": ("{c} cubist --method fast --weights {d}/fast3",
                                          "unknown style(s) 'cubist': the network knows "
                                          "mosaic, swirls, waves"),
    "fast network of styles without one": ("{c} --method fast --weights {d}/fast3",
                                           "knows the styles mosaic, swirls, waves: name one"),
    "fast style weights count": ("{c} mosaic waves --method fast --weights {d}/fast3 "
                                 "--style-weights 1", "1 weight(s) for 2 style(s)"),
    "fast with an image": ("{c} {s} --method fast", "use method gatys or adain"),
    "fast with weights and a style": ("{c} mosaic {fast}", "give no style"),
    "fast style weights": ("{c} {fast} --style-weights 1", "give no style_weights"),
    "missing weights": ("{c} --method fast --weights {t}/nope.pth", "no such file or folder"),
    "wrong weights file": ("{c} --method fast --weights {d}/wrong.safetensors",
                           "the weights do not fit"),
    "damaged weights file": ("{c} --method fast --weights {d}/damaged.safetensors",
                             "truncated or damaged"),
    "weights of another model": ("{c} {s} --method adain --weights {d}/fast",
                                 "holds a TransformerNet"),
    "one adain file": ("{c} {s} --method adain --weights {d}/fast.safetensors",
                       "give ENCODER,DECODER"),
    "missing adain decoder": ("{c} {s} --method adain --weights "
                              "{d}/encoder.safetensors,{t}/nope.pth", "no weight file at"),
    "missing vgg file": ("{c} {s} --vgg-weights {t}/vgg19.pth", "no VGG weights file"),
    "wrong vgg file": ("{c} {s} --vgg-weights {d}/wrong.safetensors", "no 'features.*' tensors"),
    "steps with fast": ("{c} {fast} --steps 3", "--steps: gatys only"),
    "weights with gatys": ("{c} {s} --weights {d}/fast", "fast and adain only"),
    "strength": ("{c} {s} --strength 1.5", "must be in [0, 1]"),
    "size": ("{c} {s} --size 8", "must be at least 32 px"),
    "out suffix": ("{c} {s} --out {t}/out.jpg", "give a file ending in .png"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_exit_2_and_no_file(files, tmp_path, capsys, name):
    Image.new("RGB", (16, 16)).save(tmp_path / "tiny.png")
    Image.new("RGB", (640, 32)).save(tmp_path / "thin.png")
    Image.new("F", (64, 64)).save(tmp_path / "float.tiff")
    template, message = BAD[name]
    argv = template.format(c=files / "content.png", s=files / "style.png", d=files, t=tmp_path,
                           fast=METHOD_ARGS["fast"](files), adain=METHOD_ARGS["adain"](files))
    size = "" if "--size" in argv else "--size 64"
    run_refused(capsys, "style", f"{argv} {size}", tmp_path / "out.png", message)


def test_a_huge_input_file_is_refused_from_its_header(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMGEN_MAX_INPUT_PIXELS", "1000")  # 64 x 48 = 3,072 pixels
    out = tmp_path / "out.png"
    code, _, err = run(capsys, f"style {files / 'content.png'} mosaic --size 64 --out {out}")
    assert code == 2 and "image size 64x48 (3,072 pixels) is over the limit" in err
    assert err.count("\n") == 1 and not out.exists()


def test_debug_shows_the_traceback(files, tmp_path):
    argv = ["style", str(files / "content.png"), "mosaic", "--method", "fast", "--out",
            str(tmp_path / "out.png")]
    with pytest.raises(ValueError, match="unknown style\\(s\\) 'mosaic'"):
        main(["--debug", *argv])
    with pytest.raises(ValueError, match="unknown style\\(s\\) 'mosaic'"):
        main([*argv, "--debug"])


def test_request_checks():
    with pytest.raises(ValueError, match="method must be one of gatys, fast, adain"):
        StyleRequest("cnn")
    with pytest.raises(ValueError, match="strength must be a number in"):
        StyleRequest(strength=float("nan"))
    with pytest.raises(ValueError, match="size must be a whole number >= 32"):
        StyleRequest(size=16)
    with pytest.raises(ValueError, match="vgg_weights"):
        StyleRequest("adain", vgg_weights="vgg19.pth")
    with pytest.raises(ValueError, match="seed"):
        StyleRequest(seed=-1)
