"""Latent-diffusion pipelines: text-to-image, image-to-image (SDEdit) and inpainting.

A :class:`TextToImagePipeline` holds the three networks of Stable Diffusion (Rombach et al.
2022) and nothing else: a CLIP text encoder (prompt -> token states), a :class:`UNet` (noise
prediction in latent space, cross-attending to the token states) and an
:class:`AutoencoderKL` (latents <-> pixels). The noise schedule is data (a
:class:`NoiseSchedule`); a sampler is built from it for each call, so one pipeline runs with
every sampler. The denoising loop is :func:`mmgen.diffusion.denoise.denoise`, shared with the
other diffusion pipelines; the options of a call are one
:class:`~mmgen.diffusion.metadata.GenerationRequest`.

Seeds: image ``i`` of a call with seed ``s`` starts from the noise of
``torch.Generator("cpu").manual_seed(s + i)`` (and stochastic samplers draw from that generator
too), so the same seed gives the same image on every device, whatever the batch size or the
image's position in it. The images of a call go through the networks in batches of at most
``mmgen.limits.MAX_BATCH_PIXELS`` pixels (``$MMGEN_MAX_BATCH_PIXELS``), so memory stays
bounded however many images are asked for.

NaN/Inf never become an image: latents and pixels are checked, and a NaN/Inf raises
:class:`~mmgen.diffusion.denoise.NonFiniteError` (a ValueError) naming the step; with
``dtype`` bf16/fp16, a step that overflows is first recomputed in fp32 (with a warning).

    pipe = mmgen.load("shapes-t2i")                      # or a Stable Diffusion folder / file
    images = pipe("a large red circle in the center on a white background", seed=0)
    save_png(images[0], "circle.png")                    # PNG with its generation parameters
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmgen.clip.tokenizer import PAD_TOKEN_ID, CLIPTokenizer
from mmgen.diffusion.denoise import (
    GenerationCancelled,
    NonFiniteError,
    StepCallback,
    denoise,
    initial_noise,
    is_finite,
    skipped_steps,
)
from mmgen.diffusion.guidance import GuidedDenoiser
from mmgen.diffusion.latent import LatentDiffusionPipeline
from mmgen.diffusion.metadata import GenerationParams, GenerationRequest, attach
from mmgen.diffusion.samplers import SAMPLERS, Sampler, create_sampler
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.limits import MAX_BATCH_PIXELS

__all__ = ["GenerationCancelled", "NonFiniteError", "PipelineConfig", "TextToImagePipeline",
           "network_batch_size", "to_latent_mask", "to_pixels"]


@dataclass
class PipelineConfig:
    name: str = "pipeline"  # model name written into the images' parameters
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)  # the training schedule
    sampler: str = "ddim"  # default sampler
    steps: int = 25  # default sampler steps
    guidance: float = 7.5  # default classifier-free guidance scale
    height: int = 512  # default image height in pixels
    width: int = 512  # default image width in pixels
    pad_token_id: int = PAD_TOKEN_ID  # prompt padding id (SD 1.x pads with <|endoftext|>)
    set_alpha_to_one: bool = True  # DDIM's last step: to a clean image (False in SD's configs)


class TextToImagePipeline(LatentDiffusionPipeline):
    """Text encoder + U-Net + VAE of a latent diffusion model (see the module docstring).

    Args:
        unet: noise predictor ``unet(x, t, context)`` in latent space.
        vae: autoencoder with ``encode``/``decode``, ``latent_factor`` and
            ``config.scaling_factor`` / ``config.shift_factor``.
        text_encoder: a CLIP text model: ``encode_context(tokens)`` is what the U-Net
            cross-attends to, ``context_dim`` its channels.
        config: defaults and the noise schedule.
        device: "auto", "cpu", "cuda", ...
        dtype: "fp32" (exact; the default), "auto" (bf16 autocast where the CPU/GPU has it),
            "bf16" or "fp16". In bf16/fp16, a sampling step whose U-Net prediction overflows
            to NaN/Inf is recomputed in fp32 (with a warning).
        batch_invariant: on the CPU, compute convolutions with PyTorch's native kernels,
            which treat every image of a batch alike, instead of oneDNN's, whose algorithm
            (and so the last bits of the result) depends on the batch size. This is what makes
            a seed give the same pixels whatever the batch size, at some speed (measured by
            benchmarks/unet_step.py). False: fastest kernels; images may then differ by a
            grey level between batch sizes.
    """

    components = ("unet", "vae", "text_encoder")
    denoiser_name = "unet"  # a U-Net, or a text-conditioned DiT
    config_class = PipelineConfig

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module,
                 text_encoder: torch.nn.Module, config: PipelineConfig,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "fp32",
                 batch_invariant: bool = True):
        self.unet, self.vae, self.text_encoder, self.config = unet, vae, text_encoder, config
        self.batch_invariant = batch_invariant
        self.tokenizer = CLIPTokenizer(text_encoder.text_config.context_length,
                                       pad_token_id=config.pad_token_id)
        if text_encoder.context_dim != unet.config.cross_attention_dim:
            raise ValueError(f"the {type(unet).__name__} takes text states of "
                             f"{unet.config.cross_attention_dim} channels but the text "
                             f"encoder's context has {text_encoder.context_dim}; give the text "
                             f"encoder the {type(unet).__name__} was trained with")
        self.to(device, dtype)

    # ------------------------------------------------------------------ public calls

    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                 *, callback: StepCallback | None = None, progress: bool = True,
                 **options: Any) -> list[Image.Image]:
        """Text-to-image: ``num_images`` images per prompt, as PIL images whose ``info``
        holds their generation parameters (write them with :func:`save_png`).

        Args:
            prompt: one prompt or a list.
            negative_prompt: what to steer away from (one, or one per prompt).
            callback: ``callback(i, t, latents)`` after each step; return False to cancel.
            progress: show a progress bar (stderr).
            options: the other fields of :class:`~mmgen.diffusion.metadata.GenerationRequest`
                (steps, guidance, sampler, seed, num_images, height, width,
                guidance_rescale, batch_size: see :func:`network_batch_size`).

        Raises:
            ValueError: an option out of range; a ``LimitError`` for a ``batch_size`` over
                ``MMGEN_MAX_BATCH_PIXELS``; a ``NonFiniteError`` if sampling or decoding
                produced NaN/Inf (no image is returned).
        """
        request = GenerationRequest(prompt, negative_prompt, **options)
        return self.generate(request, callback=callback, progress=progress)

    def img2img(self, image: Image.Image | torch.Tensor, prompt: str | list[str],
                negative_prompt: str | list[str] | None = None, *, strength: float = 0.75,
                callback: StepCallback | None = None, progress: bool = True,
                **options: Any) -> list[Image.Image]:
        """SDEdit (Meng et al. 2022): noise ``image``'s latent to ``strength`` of the schedule
        and denoise it with the prompt; 0 returns the (re-encoded) image, 1 ignores it.
        Other arguments as :meth:`__call__` (height/width come from the image)."""
        request = GenerationRequest(prompt, negative_prompt, strength=strength, **options)
        return self.generate(request, image=image, callback=callback, progress=progress)

    def inpaint(self, image: Image.Image | torch.Tensor, mask: Image.Image | torch.Tensor,
                prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                *, strength: float = 1.0, callback: StepCallback | None = None,
                progress: bool = True, **options: Any) -> list[Image.Image]:
        """Repaint the white (> 0.5) part of ``mask`` (same size as ``image``) and keep the
        rest (latent blending, see :func:`~mmgen.diffusion.denoise.denoise`). Works with any
        text-to-image U-Net."""
        request = GenerationRequest(prompt, negative_prompt, strength=strength, **options)
        return self.generate(request, image=image, mask=mask, callback=callback,
                             progress=progress)

    # ------------------------------------------------------------------ the work

    def generate(self, request: GenerationRequest, image: Any = None, mask: Any = None,
                 callback: StepCallback | None = None, progress: bool = True
                 ) -> list[Image.Image]:
        """Images for ``request``: text-to-image, or from ``image`` (img2img), or repainting
        ``mask`` of ``image`` (inpainting). See :meth:`__call__`."""
        mode = "txt2img" if image is None else "img2img" if mask is None else "inpaint"
        init = latent_mask = None
        if image is not None:
            pixels = to_pixels(image)  # (1, 3, H, W) in [-1, 1]
            size = tuple(pixels.shape[-2:])
            if (request.height or size[0], request.width or size[1]) != size:
                raise ValueError(f"height and width come from the input image ({size[1]}x"
                                 f"{size[0]}); resize the image instead")
            request = replace(request, height=size[0], width=size[1])
        req = request.resolved(self.config)
        req.check(SAMPLERS, self.latent_factor)
        prompts, negatives = req.prompts()
        seeds = [req.seed + i for i in range(len(prompts))]
        batch = network_batch_size(req, len(prompts))
        if image is not None:
            init = self.encode_latents(pixels)  # (1, C, h, w)
        if mask is not None:
            latent_mask = to_latent_mask(mask, (req.height, req.width), self.latent_factor)
        images: list[Image.Image] = []
        skipped = skipped_steps(req.steps, req.strength, image is not None)
        bar, on_step = self._progress(len(prompts) * req.steps, progress, callback)
        with bar, self._kernels():
            for lo in range(0, len(prompts), batch):
                sl = slice(lo, lo + batch)
                bar.update(skipped * len(prompts[sl]))
                latents = self._denoise(req, prompts[sl], negatives[sl], seeds[sl], init,
                                        latent_mask, on_step)
                for k, img in enumerate(self.decode_latents(latents)):
                    images.append(attach(img, GenerationParams(
                        prompts[lo + k], negatives[lo + k], seeds[lo + k], req.sampler,
                        req.steps, float(req.guidance), req.width, req.height,
                        self.config.name, self.model_hash, mode, float(req.strength),
                        float(req.guidance_rescale))))
        return images

    def _denoise(self, req: GenerationRequest, prompts: list[str], negatives: list[str],
                 seeds: list[int], init: torch.Tensor | None, mask: torch.Tensor | None,
                 callback: StepCallback) -> torch.Tensor:
        """Latents (B, C, h, w) of one batch: noise, prompt contexts, the guided loop (with
        an fp32 fallback for steps that overflow in reduced precision)."""
        f = self.latent_factor
        shape = (self.unet.config.in_channels, req.height // f, req.width // f)
        noise, generators = initial_noise(seeds, shape, self.device)  # (B, C, h, w)
        context = self.encode_prompt(prompts)  # (B, L, D)
        uncond = self.encode_prompt(negatives) if req.guidance != 1.0 else None

        def guided(dtype: torch.dtype) -> GuidedDenoiser:  # the U-Net computing in dtype
            unet = functools.partial(self._denoiser_call, dtype=dtype)
            return GuidedDenoiser(unet, context, uncond, req.guidance, req.guidance_rescale)

        fallback = guided(torch.float32) if self.fp32_fallback else None
        try:
            return denoise(guided(self.dtype), self.make_sampler(req.sampler), noise, req.steps,
                           generators, init=init, strength=req.strength, mask=mask,
                           callback=callback, fallback=fallback)
        except NonFiniteError as e:
            raise NonFiniteError(f"{e}; this request's guidance scale is {req.guidance:g}"
                                 ) from None

    def make_sampler(self, name: str) -> Sampler:
        """A fresh sampler ``name`` on this model's noise schedule."""
        options = {"set_alpha_to_one": self.config.set_alpha_to_one} if name == "ddim" else {}
        return create_sampler(name, self.config.schedule, **options)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text context (N, L, D) that the U-Net cross-attends to."""
        tokens = self.tokenizer(prompts).to(self.device)  # (N, L)
        with self._precision(self.dtype):
            return self.text_encoder.encode_context(tokens).float()

    @torch.no_grad()
    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (N, 3, H, W) in [-1, 1] -> scaled latents (the distribution's mean)."""
        vc = self.vae.config
        with self._precision(self.dtype):
            mean = self.vae.encode(self._input(pixels.to(self.device))).mean.float()
        if not is_finite(mean):
            raise NonFiniteError("encoding the input image produced NaN/Inf latents; the "
                                 "VAE's weights may hold NaN/Inf (a damaged or badly converted "
                                 "checkpoint)")
        return (mean - vc.shift_factor) * vc.scaling_factor

def network_batch_size(request: GenerationRequest, count: int) -> int:
    """Images per network batch for ``count`` images of a resolved ``request``.

    By default (``request.batch_size`` None) the largest batch whose pixels, batch * height
    * width, fit ``mmgen.limits.MAX_BATCH_PIXELS`` (``$MMGEN_MAX_BATCH_PIXELS``), at least
    one image and at most ``count``. An explicit ``batch_size`` (at most ``count`` of it is
    used) over that limit is a ``LimitError``. Images do not depend on the batch size.
    """
    pixels = request.height * request.width
    if request.batch_size is None:
        return max(1, min(count, int(MAX_BATCH_PIXELS.value // pixels)))
    batch = min(request.batch_size, count)
    MAX_BATCH_PIXELS.check(batch * pixels, f"a batch of {batch} images of "
                           f"{request.width}x{request.height}")
    return batch


def to_pixels(image: Image.Image | torch.Tensor | np.ndarray) -> torch.Tensor:
    """An RGB image (PIL, HWC uint8 array, or (3, H, W)/(1, 3, H, W) tensor in [-1, 1]) ->
    a (1, 3, H, W) float tensor in [-1, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image array, got shape {image.shape}")
        image = torch.from_numpy(image.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a PIL image, array or tensor, got {type(image).__name__}")
    image = image[None] if image.dim() == 3 else image
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image, got a tensor of shape {tuple(image.shape)}")
    return image.float()


def to_latent_mask(mask: Image.Image | torch.Tensor | np.ndarray, size: tuple[int, int],
                   factor: int) -> torch.Tensor:
    """An inpainting mask (white/1 = repaint) of the image's size -> (1, 1, h, w) in {0, 1}
    at latent resolution (a latent pixel is repainted if any of its pixels is)."""
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32) if not isinstance(
        mask, torch.Tensor) else mask.float())
    m = m.reshape(m.shape[-2:]) if m.dim() > 2 and m.shape[:-2].numel() == 1 else m
    if m.dim() != 2 or tuple(m.shape) != tuple(size):
        raise ValueError(f"mask must be a single-channel image of the image's size "
                         f"{size[1]}x{size[0]} (WxH), got shape {tuple(m.shape)}")
    binary = (m > 0.5).float()[None, None]  # (1, 1, H, W)
    return torch.nn.functional.max_pool2d(binary, factor)  # (1, 1, h, w)
