"""``mmgen sample``, ``mmgen interpolate`` and ``mmgen generate`` on one-step generators (tiny
random-weight GAN and VAE pipelines): what they write equals what the pipeline makes, and every
user error is one line, exit code 2, and no file."""

import json

import numpy as np
import pytest
import torch
from cli_runner import run
from PIL import Image

import mmgen
from mmgen.onestep import OneStepConfig, OneStepPipeline

CAPTION = "a large red circle in the center on a white background"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Saved tiny pipelines: a class-conditional 28 px GAN, a Shapes GAN and a VAE."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)  # the same random weights every run
    pipes = {
        "gan": OneStepPipeline(
            mmgen.create_model("gan/dcgan/tiny"),
            OneStepConfig("tiny-gan", "class", tuple("0123456789")),
        ),
        "shapes": OneStepPipeline(
            mmgen.create_model(
                "gan/dcgan/64", conditions=(6, 4, 2, 9, 3), width=4, latent_dim=8, embed_dim=4
            ),
            OneStepConfig("tiny-shapes", "shapes"),
        ),
        "vae": OneStepPipeline(mmgen.create_model("vae/conv/tiny"), OneStepConfig("tiny-vae")),
    }
    for name, pipe in pipes.items():
        pipe.save_pretrained(d / name)
    return {name: (str(d / name), pipe) for name, pipe in pipes.items()}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def tile(grid: Image.Image, row: int, col: int, size: int, label_h: int = 0) -> np.ndarray:
    """The tile at (row, col) of an ``image_grid`` (pad 2) of ``size`` px tiles."""
    x, y = 2 + col * (size + 2), 2 + row * (size + label_h + 2)
    return pixels(grid.crop((x, y, x + size, y + size)))


def upscaled(image: Image.Image, size: int) -> np.ndarray:
    return pixels(image.resize((size, size), Image.NEAREST))


def test_sample_cycles_classes_and_is_seeded(models, tmp_path, capsys):
    path, pipe = models["gan"]
    code, out, err = run(capsys, f"sample --model {path} -n 12 --seed 5 --out {tmp_path}/a.png")
    assert code == 0 and out.strip() == str(tmp_path / "a.png"), err
    grid = Image.open(tmp_path / "a.png")
    # Ten columns (one per class), two rows of 112 px tiles (28 px upscaled 4x) with labels.
    assert grid.width == 10 * 114 + 2
    label_h = (grid.height - 2) // 2 - 114
    assert label_h > 0
    for i in (0, 7, 11):  # image i: class i % 10, seed 5 + i
        (expected,) = pipe(i % 10, seed=5 + i)
        assert np.array_equal(tile(grid, i // 10, i % 10, 112, label_h), upscaled(expected, 112))
    run(capsys, f"sample --model {path} -n 12 --seed 5 --out {tmp_path}/b.png")
    run(capsys, f"sample --model {path} -n 12 --seed 6 --out {tmp_path}/c.png")
    a, b, c = (pixels(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sample_listed_conditions_and_unconditional(models, tmp_path, capsys):
    path, pipe = models["gan"]
    command = f"sample --model {path} --class 3 --class 7 -n 2 --seed 1 --out {tmp_path}/g.png"
    code, _, err = run(capsys, command)
    assert code == 0, err
    grid = Image.open(tmp_path / "g.png")
    assert grid.width == 2 * 114 + 2  # one row per class
    label_h = (grid.height - 2) // 2 - 114
    (expected,) = pipe(7, seed=1 + 3)  # second image of the second class
    assert np.array_equal(tile(grid, 1, 1, 112, label_h), upscaled(expected, 112))

    path, pipe = models["vae"]
    code, _, err = run(capsys, f"sample --model {path} -n 4 --out {tmp_path}/v.png")
    assert code == 0, err
    grid = Image.open(tmp_path / "v.png")
    assert grid.size == (2 * 114 + 2, 2 * 114 + 2)  # no labels
    expected = pipe(None, seed=0, num_images=4)[3]
    assert np.array_equal(tile(grid, 1, 1, 112), upscaled(expected, 112))


def test_generate_caption_and_from_image(models, tmp_path, capsys):
    path, pipe = models["shapes"]
    caption = "'A  LARGE red circle in the center on a white background'"  # not canonical
    code, out, err = run(
        capsys, f"generate {caption} --model {path} --seed 9 --json --out", tmp_path / "a.png"
    )
    assert code == 0, err
    (record,) = json.loads(out)["images"]
    assert (record["prompt"], record["sampler"], record["steps"]) == (CAPTION, "one-step", 1)
    (expected,) = pipe(CAPTION, seed=9)
    first = Image.open(tmp_path / "a.png")
    assert np.array_equal(pixels(first), pixels(expected))
    command = f"generate --model {path} --from-image {tmp_path}/a.png --out {tmp_path}/b.png"
    code, _, err = run(capsys, command)
    again = Image.open(tmp_path / "b.png")
    assert code == 0 and np.array_equal(pixels(again), pixels(first)), err
    assert again.info["mmgen"] == first.info["mmgen"]


def test_generate_classes(models, tmp_path, capsys):
    path, pipe = models["gan"]
    command = f"generate --model {path} --class 3 --class 8 --seed 2 --json --out {tmp_path}"
    code, out, err = run(capsys, command)
    assert code == 0, err
    records = json.loads(out)["images"]
    assert [r["prompt"] for r in records] == ["class 3 (3)", "class 8 (8)"]
    assert [r["seed"] for r in records] == [2, 3]
    expected = pipe([3, 8], seed=2)
    for record, image in zip(records, expected, strict=True):
        assert np.array_equal(np.asarray(Image.open(record["path"])), np.asarray(image))


def test_interpolate_gif_and_strip(models, tmp_path, capsys):
    path, pipe = models["gan"]
    walk = "--from 3 --to 8 --seed 2 --end-seed 9 --frames 5 --fps 10"
    code, out, err = run(capsys, f"interpolate --model {path} {walk} --out {tmp_path}/walk.gif")
    assert code == 0 and out.strip() == str(tmp_path / "walk.gif"), err
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 5 and gif.size == (252, 252)  # 28 px upscaled 9x
    assert gif.info["duration"] == 100
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(pixels(gif))
    (start,), (end,) = pipe(3, seed=2), pipe(8, seed=9)
    assert np.array_equal(frames[0], upscaled(start, 252))
    assert np.array_equal(frames[-1], upscaled(end, 252))
    walk = "--from 3 --frames 4"
    code, _, err = run(capsys, f"interpolate --model {path} {walk} --out {tmp_path}/walk.png")
    assert code == 0, err
    strip = Image.open(tmp_path / "walk.png")
    assert strip.size == (4 * 114 + 2, 116)  # one row of 112 px tiles
    (start,) = pipe(3, seed=0)
    assert np.array_equal(tile(strip, 0, 0, 112), upscaled(start, 112))


def test_errors_are_one_line_and_write_nothing(models, tmp_path, capsys):
    gan, shapes, vae = (models[n][0] for n in ("gan", "shapes", "vae"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "exists.png").write_bytes(b"keep")
    cases = [
        (
            ["sample", "--model", "shapes-t2i"],
            "shapes-t2i is a TextToImagePipeline, not a one-step generator (GAN/VAE); use mmgen "
            "generate",
        ),
        (["sample", "--model", "mnist-lenet5"], "is a LeNet5, not a one-step generator"),
        (["sample", "--model", gan, "--class", 10], "class 10 is out of range"),
        (["sample", "--model", gan, "--class", "cat"], "not a class number or a single class"),
        (["sample", "--model", gan, "--prompt", CAPTION], "class-conditional: give --class K"),
        (["sample", "--model", shapes, "--class", 1], "give --prompt CAPTION, not --class"),
        (["sample", "--model", shapes, "--prompt", "a red circle"], "cannot parse caption"),
        (["sample", "--model", shapes], "give --prompt CAPTION"),
        (["sample", "--model", vae, "--class", 1], "unconditional: give no --class"),
        (["sample", "--model", gan, "--class", 1, "--prompt", "x"], "not both"),
        (["sample", "--model", gan, "-n", 0], "must be at least 1"),
        (["sample", "--model", "no-such-model"], "neither a model folder"),
        (["interpolate", "--model", gan, "--from", 1, "--frames", 1], "at least 2 frames"),
        (["interpolate", "--model", gan], "conditional: give --from K"),
        (["interpolate", "--model", vae, "--from", 1], "unconditional: give no --from"),
        (["interpolate", "--model", gan, "--from", 1, "--to", 12], "class 12 is out of range"),
        (["interpolate", "--model", gan, "--from", 1, "--method", "cubic"], "invalid choice"),
        (["generate", "--model", gan, "--class", 3, "--steps", 4], "has no steps option"),
        (["generate", "--model", gan, "--class", 3, "--sampler", "ddim"], "no sampler option"),
        (["generate", "--model", gan, "--class", 3, "--guidance", 5], "no guidance option"),
        (["generate", "--model", gan, "--class", 3, "--width", 64], "no width option"),
        (
            ["generate", "--model", gan, "--class", 3, "--negative-prompt", "x"],
            "takes no negative prompt",
        ),
        (["generate", "--model", shapes, "--class", 3], "give a PROMPT, not --class"),
        (["generate", "--model", vae, "--class", 3], "unconditional: give no --class"),
    ]
    for argv, match in cases:
        suffix = ".gif" if argv[0] == "interpolate" else ".png"
        target = out if argv[0] == "generate" else out / f"new{suffix}"
        code, _, err = run(capsys, "", *argv, "--out", target)
        assert code == 2 and match in err and err.count("\n") == 1, (argv, err)
    for argv, match in [
        (["sample", "--model", gan, "--out", out / "x.jpg"], "ending in .png"),
        (["interpolate", "--model", vae, "--out", out / "x.png.txt"], "ending in .gif or .png"),
        (
            ["sample", "--model", gan, "--out", out / "exists.png"],
            "already exists; --overwrite replaces it",
        ),
    ]:
        code, _, err = run(capsys, "", *argv)
        assert code == 2 and match in err and err.count("\n") == 1, (argv, err)
    assert [p.name for p in out.iterdir()] == ["exists.png"]
    assert (out / "exists.png").read_bytes() == b"keep"


def test_failed_write_leaves_no_file(models, tmp_path, capsys, monkeypatch):
    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full_disk)
    for overwrite in ([], ["--overwrite"]):
        command = f"sample --model {models['vae'][0]} -n 2 --out {tmp_path}/a.png"
        code, _, err = run(capsys, command, *overwrite)
        assert code == 2 and "No space left" in err, err
    assert list(tmp_path.iterdir()) == []
