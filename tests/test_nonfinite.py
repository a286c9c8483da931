"""NaN/Inf never become an image, and network batches stay within MMGEN_MAX_BATCH_PIXELS.

Sampling checks every model prediction before the sampler step that uses it (and the latents
after it); a bf16 step that overflows is recomputed in fp32; anything still non-finite, and
non-finite encoder/decoder outputs, raise ``NonFiniteError``. Network batches default to the
largest that fits the pixel limit, and do not change the images.
"""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from test_pipeline import PROMPT, tiny_pipeline

from mmgen.diffusion import NoiseSchedule
from mmgen.diffusion.denoise import NonFiniteError, denoise, initial_noise
from mmgen.diffusion.metadata import GenerationRequest
from mmgen.diffusion.pipeline import network_batch_size
from mmgen.diffusion.samplers import create_sampler
from mmgen.limits import LimitError

SIZE = 32  # pixels of tiny_pipeline's images (height = width)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture
def fresh_pipe():
    """A pipeline a test may damage."""
    return tiny_pipeline()


def pixels(images):
    return np.stack([np.asarray(im) for im in images])


def poison(module: torch.nn.Module, name: str) -> None:
    """Set one element of parameter ``name`` to NaN."""
    with torch.no_grad():
        weight = dict(module.named_parameters())[name]
        weight[(0,) * weight.dim()] = float("nan")


# ----------------------------------------------------------------------------- the loop


def test_a_nonfinite_prediction_is_caught_before_the_sampler_step():
    steps_run = []
    sampler = create_sampler("ddim", NoiseSchedule())
    step = sampler.step
    sampler.step = lambda *a, **k: steps_run.append(1) or step(*a, **k)
    calls = []

    def model(x, t):  # NaN at the third call
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) == 3 else torch.zeros_like(x)

    noise, generators = initial_noise([0], (4, 4, 4), torch.device("cpu"))
    with pytest.raises(NonFiniteError, match=r"step 3 of 5 \(the model's prediction\)"):
        denoise(model, sampler, noise, 5, generators)
    assert len(steps_run) == 2  # the sampler never saw the NaN


def test_overflowing_latents_are_caught_after_the_step():
    sampler = create_sampler("ddim", NoiseSchedule())
    noise, generators = initial_noise([0], (4, 4, 4), torch.device("cpu"))
    huge = lambda x, t: torch.full_like(x, 3e38)  # noqa: E731  finite, but x0 overflows
    with pytest.raises(NonFiniteError, match=r"step 1 of 5 \(the latents after the sampler"):
        denoise(huge, sampler, noise, 5, generators)


def test_fallback_recomputes_nonfinite_predictions_and_warns_once():
    noise, generators = initial_noise([0], (4, 4, 4), torch.device("cpu"))
    model = lambda x, t: torch.full_like(x, float("inf"))  # noqa: E731
    fallback = lambda x, t: 0.1 * x  # noqa: E731
    with pytest.warns(UserWarning, match="step 1 of 5") as record:
        out = denoise(model, create_sampler("ddim", NoiseSchedule()), noise, 5, generators,
                      fallback=fallback)
    assert len(record) == 1
    ref = denoise(fallback, create_sampler("ddim", NoiseSchedule()), noise, 5, generators)
    assert torch.equal(out, ref)


# ----------------------------------------------------------------------------- the pipeline


def test_a_huge_guidance_scale_raises_instead_of_a_black_image(pipe):
    with pytest.raises(NonFiniteError, match=r"at step \d+ of 4 .*guidance scale is 1e\+30"):
        pipe(PROMPT, guidance=1e30, seed=0, progress=False)
    assert issubclass(NonFiniteError, ValueError)  # the CLI: one line, exit 2


def test_nan_in_the_unet_raises(fresh_pipe):
    poison(fresh_pipe.unet, "conv_in.weight")
    with pytest.raises(NonFiniteError, match="step 1 of 4 .*weights hold NaN/Inf"):
        fresh_pipe(PROMPT, seed=0, progress=False)


def test_nan_in_the_vae_decoder_raises(fresh_pipe):
    poison(fresh_pipe.vae, "decoder.conv_in.weight")
    with pytest.raises(NonFiniteError, match="decoding the latents produced NaN/Inf pixels"):
        fresh_pipe(PROMPT, seed=0, progress=False)
    with pytest.raises(NonFiniteError, match="latents holding NaN/Inf"):
        fresh_pipe.decode_latents(torch.full((1, 4, 4, 4), float("nan")))


def test_nan_in_the_vae_encoder_raises(fresh_pipe):
    poison(fresh_pipe.vae, "encoder.conv_in.weight")
    with pytest.raises(NonFiniteError, match="encoding the input image"):
        fresh_pipe.img2img(Image.new("RGB", (SIZE, SIZE), "red"), PROMPT, progress=False)


def test_a_bf16_overflow_is_recomputed_in_fp32(pipe, monkeypatch):
    bf16 = tiny_pipeline("bf16")
    forward = bf16.unet.forward
    in_bf16 = []

    def overflows_in_bf16(x, t, context):  # the real U-Net, but inf under bf16 autocast
        in_bf16.append(torch.is_autocast_enabled("cpu"))
        out = forward(x, t, context)
        return torch.full_like(out, float("inf")) if in_bf16[-1] else out

    monkeypatch.setattr(bf16.unet, "forward", overflows_in_bf16)
    with pytest.warns(UserWarning, match="step 1 of 4.*recomputed in fp32") as record:
        images = pixels(bf16(PROMPT, seed=0, progress=False))
    assert len([w for w in record if "recomputed" in str(w.message)]) == 1
    assert in_bf16 == [True, False] * 4  # each step: bf16 (inf), then fp32
    # only the text encoder and the VAE computed in bf16: close to the fp32 pipeline's image
    reference = pixels(pipe(PROMPT, seed=0, progress=False))
    assert np.abs(images.astype(int) - reference).mean() < 2


def test_a_finite_bf16_run_does_not_recompute():
    bf16 = tiny_pipeline("bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bf16(PROMPT, seed=0, progress=False)


# ----------------------------------------------------------------------------- batch size


def test_default_batches_fit_the_pixel_limit(pipe, monkeypatch):
    run = dict(seed=7, num_images=5, progress=False)
    reference = pixels(pipe(PROMPT, batch_size=5, **run))
    monkeypatch.setenv("MMGEN_MAX_BATCH_PIXELS", str(2 * SIZE * SIZE))
    sizes = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    try:
        images = pixels(pipe(PROMPT, **run))
    finally:
        hook.remove()
    assert sorted(set(sizes)) == [2, 4]  # 2 + 2 + 1 images, conditional + unconditional
    assert np.array_equal(images, reference)


def test_network_batch_size():
    def batch(count, size, batch_size=None):
        request = GenerationRequest(PROMPT, height=size, width=size, batch_size=batch_size)
        return network_batch_size(request, count)

    assert batch(10_000, 512) == 4  # 4 * 512 * 512 = the default 1024 * 1024
    assert batch(3, 64) == 3
    assert batch(5, 2048) == 1  # one image over the batch limit still runs, alone
    assert batch(2, 512, batch_size=8) == 2  # only what is used counts


def test_an_explicit_batch_over_the_limit_raises(pipe, monkeypatch):
    monkeypatch.setenv("MMGEN_MAX_BATCH_PIXELS", str(2 * SIZE * SIZE))
    with pytest.raises(LimitError, match="batch of 3 images of 32x32.*MMGEN_MAX_BATCH_PIXELS"):
        pipe(PROMPT, num_images=3, batch_size=3, progress=False)
    assert issubclass(LimitError, ValueError)
