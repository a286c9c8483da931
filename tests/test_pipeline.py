"""Text-to-image pipeline: guidance, seeds, modes, PNG parameters, save/load, CLI, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmgen
from mmgen import cli
from mmgen.diffusion import NoiseSchedule
from mmgen.diffusion.guidance import GuidedDenoiser
from mmgen.diffusion.images import image_grid
from mmgen.diffusion.metadata import GenerationParams, read_params, save_png
from mmgen.diffusion.pipeline import (
    GenerationCancelled,
    PipelineConfig,
    TextToImagePipeline,
)

PROMPT = "a large red circle in the center on a white background"


def tiny_pipeline(dtype: str = "fp32") -> TextToImagePipeline:
    """A tiny random-weight pipeline making 32x32 images (the same weights for every dtype)."""
    torch.manual_seed(0)
    unet = mmgen.create_model("unet/tiny", cross_attention_dim=64)
    vae = mmgen.create_model("vae/tiny")
    clip = mmgen.create_model("clip/tiny", text={"width": 64, "layers": 1, "heads": 2,
                                                 "context_length": 16})
    config = PipelineConfig(name="tiny-test", schedule=NoiseSchedule(), steps=4, guidance=3.0,
                            height=32, width=32, pad_token_id=0)
    return TextToImagePipeline(unet, vae, clip.text_model(), config, dtype=dtype)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def pixels(images):
    return np.stack([np.asarray(im) for im in images])


# ----------------------------------------------------------------------------- guidance


def test_guidance_is_one_batched_call_and_the_cfg_formula():
    calls = []

    def denoiser(x, t, ctx):
        calls.append(x.shape[0])
        return x * ctx.mean(dim=(1, 2))[:, None, None, None] + t[:, None, None, None] / 1000

    x, t = torch.randn(3, 4, 5, 5), torch.tensor(500)
    cond, uncond = torch.randn(3, 7, 8), torch.randn(3, 7, 8)
    c, u = denoiser(x, t.expand(3), cond), denoiser(x, t.expand(3), uncond)
    calls.clear()
    out = GuidedDenoiser(denoiser, cond, uncond, 4.0)(x, t)
    assert calls == [6]  # conditional + unconditional in one forward pass
    torch.testing.assert_close(out, u + 4.0 * (c - u))
    assert torch.equal(GuidedDenoiser(denoiser, cond, uncond, 1.0)(x, t), c)  # no guidance
    guided = u + 4.0 * (c - u)
    dims = (1, 2, 3)
    rescaled = guided * c.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    torch.testing.assert_close(GuidedDenoiser(denoiser, cond, uncond, 4.0, rescale=0.7)(x, t),
                               0.7 * rescaled + 0.3 * guided)
    with pytest.raises(ValueError, match=">= 0"):
        GuidedDenoiser(denoiser, cond, uncond, -1.0)
    with pytest.raises(ValueError, match="rescale"):
        GuidedDenoiser(denoiser, cond, uncond, 2.0, rescale=1.5)


# ----------------------------------------------------------------------------- metadata


def test_png_parameters_round_trip(tmp_path):
    params = GenerationParams("a red circle", "blurry", 7, "dpm++2m", 20, 5.0, 64, 48,
                              "shapes-t2i", "0123456789")
    text = params.a1111()
    assert text.splitlines()[0] == "a red circle"
    assert text.splitlines()[1] == "Negative prompt: blurry"
    assert "Steps: 20, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 7, Size: 64x48" in text
    image = Image.new("RGB", (64, 48), "red")
    image.info.update(parameters=text, mmgen=params.to_json())
    path = save_png(image, tmp_path / "x.png")
    assert read_params(path) == params
    with Image.open(path) as im:
        assert im.info["parameters"] == text
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no mmgen generation parameters"):
        read_params(tmp_path / "plain.png")


def test_image_grid_layout():
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    grid = image_grid(images, cols=2, scale=2)
    assert grid.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    assert grid.getpixel((2 + 16 + 2 + 1, 3)) == (0, 128, 0)
    with pytest.raises(ValueError, match="labels"):
        image_grid(images, labels=["a"])


# ----------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("sampler", ["ddim", "euler_a"])
def test_seeds_reproduce_across_runs_batch_sizes_and_positions(pipe, sampler):
    run = dict(sampler=sampler, seed=11, num_images=4, progress=False)
    a = pixels(pipe(PROMPT, batch_size=4, **run))
    b = pixels(pipe(PROMPT, batch_size=4, **run))
    c = pixels(pipe(PROMPT, batch_size=1, **run))
    assert np.array_equal(a, b)
    assert np.array_equal(a, c)
    third = pixels(pipe(PROMPT, sampler=sampler, seed=13, progress=False))  # image 2 alone
    assert np.array_equal(a[2], third[0])
    assert not np.array_equal(a[0], a[1])  # different seeds, different images


def test_every_sampler_runs_and_images_carry_parameters(pipe, tmp_path):
    for sampler in ("ddim", "ddpm", "dpm++2m", "euler", "euler_a"):
        (image,) = pipe(PROMPT, negative_prompt="blue", sampler=sampler, steps=3, seed=5,
                        progress=False)
        assert image.size == (32, 32)
        params = read_params(save_png(image, tmp_path / f"{sampler}.png"))
        assert (params.prompt, params.negative_prompt, params.sampler, params.steps,
                params.seed, params.guidance, params.model) == (
            PROMPT, "blue", sampler, 3, 5, 3.0, "tiny-test")
        assert params.model_hash == pipe.model_hash and len(params.model_hash) == 10


def test_guidance_changes_the_image(pipe):
    one = pixels(pipe(PROMPT, guidance=1.0, seed=0, progress=False))
    three = pixels(pipe(PROMPT, guidance=3.0, seed=0, progress=False))
    assert not np.array_equal(one, three)


def test_save_and_load_pipeline(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "pipe")
    loaded = mmgen.load(folder)
    assert isinstance(loaded, TextToImagePipeline) and loaded.config == pipe.config
    assert np.array_equal(pixels(pipe(PROMPT, seed=3, progress=False)),
                          pixels(loaded(PROMPT, seed=3, progress=False)))


def test_img2img_and_inpaint(pipe):
    (source,) = pipe(PROMPT, seed=1, progress=False)
    # strength 0 keeps the image (through the VAE); 1 ignores it
    (same,) = pipe.img2img(source, PROMPT, strength=0.0, seed=2, progress=False)
    latents = pipe.encode_latents(torch.from_numpy(np.asarray(source).astype(np.float32)
                                                   / 127.5 - 1).permute(2, 0, 1)[None])
    assert np.array_equal(pixels([same]), pixels(pipe.decode_latents(latents)))
    (half,) = pipe.img2img(source, PROMPT, strength=0.5, seed=2, progress=False)
    assert read_params_of(half).mode == "img2img" and half.size == source.size
    # a mask that keeps everything returns the re-encoded source; latent blending keeps the
    # unmasked half of the latent exactly
    keep_all = Image.new("L", source.size, 0)
    (kept,) = pipe.inpaint(source, keep_all, PROMPT, seed=2, progress=False)
    assert np.array_equal(pixels([kept]), pixels(pipe.decode_latents(latents)))
    with pytest.raises(ValueError, match="mask must be"):
        pipe.inpaint(source, Image.new("L", (8, 8), 255), PROMPT, progress=False)


def read_params_of(image):
    return GenerationParams.from_json(image.info["mmgen"])


def test_callback_progress_and_cancel(pipe):
    seen = []
    pipe(PROMPT, steps=3, seed=0, progress=False, callback=lambda i, t, x: seen.append(i))
    assert seen == [0, 1, 2]
    with pytest.raises(GenerationCancelled, match="step 2 of 3"):
        pipe(PROMPT, steps=3, seed=0, progress=False, callback=lambda i, t, x: i < 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"height": 33}, "multiples of"),
    ({"steps": 0}, "steps must be"),
    ({"guidance": -1.0}, "guidance must be"),
    ({"sampler": "plms"}, "unknown sampler 'plms'; available: "),
    ({"num_images": 0}, "num_images"),
])
def test_bad_arguments(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(PROMPT, progress=False, **kwargs)


def test_bad_strength(pipe):
    image = Image.new("RGB", (32, 32))
    for strength in (-0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            pipe.img2img(image, PROMPT, strength=strength, progress=False)


# ----------------------------------------------------------------------------- CLI


def test_cli_generate(pipe, tmp_path, capsys):
    model = str(pipe.save_pretrained(tmp_path / "pipe"))
    out = tmp_path / "x.png"
    args = ["generate", PROMPT, "--model", model, "--seed", "0", "--steps", "3"]
    assert cli.main([*args, "--out", str(out)]) == 0
    first = np.asarray(Image.open(out))
    assert cli.main([*args, "--out", str(out), "--overwrite"]) == 0
    assert np.array_equal(first, np.asarray(Image.open(out)))
    capsys.readouterr()
    assert cli.main([*args, "--num-images", "2", "--out", str(tmp_path / "many"),
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    slug = "a-large-red-circle-in-the-center-on-a-white-back"
    assert [Path(r["path"]).name for r in report["images"]] == [f"00001-0-{slug}.png",
                                                                f"00002-1-{slug}.png"]
    assert Path(report["grid"]).name == f"00003-grid-{slug}.png"
    assert [r["seed"] for r in report["images"]] == [0, 1]
    # --from-image re-creates the first image exactly
    again = tmp_path / "again.png"
    assert cli.main(["generate", "--from-image", report["images"][0]["path"], "--model", model,
                     "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(again)),
                          np.asarray(Image.open(report["images"][0]["path"])))


@pytest.mark.parametrize("extra, match", [
    (["--out", ""], "--out must not be empty"),
    (["--num-images", "0"], "must be at least 1"),
    (["--model", "no-such-model"], "bundled: "),
])
def test_cli_generate_errors(pipe, tmp_path, capsys, extra, match):
    try:
        code = cli.main(["generate", PROMPT, "--out", str(tmp_path / "y.png"), *extra])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_generate_unwritable_and_unparametrised(tmp_path, capsys):
    blocker = tmp_path / "a-file"  # a folder cannot be created under a file (even by root)
    blocker.write_text("")
    code = cli.main(["generate", PROMPT, "--out", str(blocker / "sub" / "x.png")])
    assert code == 2 and "cannot create the output folder" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    code = cli.main(["generate", "--from-image", str(tmp_path / "plain.png")])
    assert code == 2 and "no mmgen generation parameters" in capsys.readouterr().err
