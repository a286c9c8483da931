"""Class-conditional latent diffusion with a DiT (Peebles & Xie 2023): class label -> image.

A :class:`ClassConditionalPipeline` holds a class-conditional :class:`~mmgen.dit.DiT` (noise
prediction in latent space, conditioned on a class label) and an :class:`AutoencoderKL`
(latents -> pixels, Stable Diffusion's VAE for the released DiTs). Sampling is the same loop as
text-to-image (:func:`mmgen.diffusion.denoise.denoise`, any mmgen sampler, one CPU generator
per image); classifier-free guidance contrasts the class with the "no class" label
``num_classes`` that the DiT learned through label dropout (Sec. 3 of the paper)::

    eps = eps(x, t, null) + guidance * (eps(x, t, class) - eps(x, t, null))

applied to the first C (noise) channels; a learned-sigma DiT's variance channels are dropped
(the samplers use fixed variances).

The options of a call are one :class:`~mmgen.diffusion.metadata.GenerationRequest` whose
prompts name the classes: ``"207"``, ``"class 207"`` or a label of ``config.labels``; each
image records its class as ``"class 207"`` (``"class 207 (golden retriever)"`` with labels) in
its PNG parameters, which ``mmgen generate --from-image`` reads back.

    dit = load_dit_checkpoint("DiT-XL-2-256x256.pt")      # mmgen.interop: the official file
    vae = from_diffusers("sd-vae-ft-ema")                  # or mmgen.load(an mmgen VAE folder)
    pipe = ClassConditionalPipeline(dit, vae, default_config(dit, vae))  # 256 x 256 images
    images = pipe([207, 360], seed=0)          # DDIM, 50 steps, guidance 4 by default

(``mmgen.hub.load_class_pipeline(dit_file, vae_folder)`` does the first three lines.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from mmgen.diffusion.denoise import StepCallback, denoise, initial_noise
from mmgen.diffusion.guidance import GuidedDenoiser
from mmgen.diffusion.latent import LatentDiffusionPipeline
from mmgen.diffusion.metadata import GenerationParams, GenerationRequest, attach
from mmgen.diffusion.pipeline import network_batch_size
from mmgen.diffusion.samplers import SAMPLERS, Sampler, create_sampler
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.dit.model import DiT
from mmgen.pipeline import class_index, class_prompt

# The schedule the released DiTs were trained with (ADM's "linear": 1000 steps, betas 1e-4 to
# 0.02), as diffusers' DiT scheduler config states it.
DIT_SCHEDULE = NoiseSchedule(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                             steps_offset=0)


@dataclass
class ClassConditionalConfig:
    name: str = "dit"  # model name written into the images' parameters
    schedule: NoiseSchedule = field(default_factory=lambda: DIT_SCHEDULE)  # training schedule
    sampler: str = "ddim"  # default sampler
    steps: int = 50  # default sampler steps (the paper samples with 250 DDPM steps)
    guidance: float = 4.0  # default guidance scale (diffusers' DiT default; the paper: 1.5)
    height: int = 256  # default image height in pixels
    width: int = 256  # default image width in pixels
    labels: tuple[str, ...] = ()  # class names, one per class ((): classes go by number)


class ClassConditionalPipeline(LatentDiffusionPipeline):
    """Class-conditional DiT + VAE (see the module docstring).

    Args:
        dit: a class-conditional DiT, ``dit(x, t, labels)``.
        vae: autoencoder with ``decode``, ``latent_factor`` and ``config.scaling_factor``.
        config: defaults, the noise schedule and the class labels.
        device: "auto", "cpu", "cuda", ...
        dtype: "fp32" (the default), "auto", "bf16" or "fp16"; as for
            :class:`~mmgen.diffusion.pipeline.TextToImagePipeline`.
        batch_invariant: CPU convolutions with batch-independent kernels (see
            :class:`~mmgen.diffusion.pipeline.TextToImagePipeline`).
    """

    components = ("dit", "vae")
    denoiser_name = "dit"
    config_class = ClassConditionalConfig

    def __init__(self, dit: DiT, vae: torch.nn.Module, config: ClassConditionalConfig,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "fp32",
                 batch_invariant: bool = True):
        self.dit, self.vae, self.config = dit, vae, config
        self.batch_invariant = batch_invariant
        dc = dit.config
        if not dc.num_classes:
            raise ValueError("this DiT is text-conditioned (num_classes=0); use it in a "
                             "TextToImagePipeline")
        if vae.config.latent_channels != dc.in_channels:
            raise ValueError(f"the DiT denoises {dc.in_channels}-channel latents but the VAE's "
                             f"have {vae.config.latent_channels}; give the VAE it was trained "
                             "with")
        if config.labels and len(config.labels) != dc.num_classes:
            raise ValueError(f"config.labels has {len(config.labels)} names for the DiT's "
                             f"{dc.num_classes} classes; give one per class, or none")
        self.to(device, dtype)

    def make_sampler(self, name: str) -> Sampler:
        """A fresh sampler ``name`` on this model's noise schedule."""
        return create_sampler(name, self.config.schedule)

    # ------------------------------------------------------------------ classes

    def class_prompt(self, index: int) -> str:
        """How an image records class ``index``: "class 207", or "class 207 (label)"."""
        return class_prompt(index, self.config.labels)

    def class_index(self, text: str | int) -> int:
        """The class named by ``text``: a number, "class N" (what images record) or one of
        ``config.labels`` (a whole label or one of its comma-separated names, any case)."""
        return class_index(text, self.config.labels, self.dit.config.num_classes)

    # ------------------------------------------------------------------ generation

    def __call__(self, classes: int | str | list[int | str], *,
                 callback: StepCallback | None = None, progress: bool = True,
                 **options: Any) -> list[Image.Image]:
        """Images of ``classes`` (one or a list of numbers or names), ``num_images`` each, as
        PIL images whose ``info`` holds their generation parameters.

        Args:
            classes: class numbers or names (see :meth:`class_index`).
            callback: ``callback(i, t, latents)`` after each step; return False to cancel.
            progress: show a progress bar (stderr).
            options: the other fields of :class:`~mmgen.diffusion.metadata.GenerationRequest`
                (steps, guidance, sampler, seed, num_images, height, width,
                guidance_rescale, batch_size).
        """
        items = classes if isinstance(classes, (list, tuple)) else [classes]
        request = GenerationRequest([str(c) for c in items], **options)
        return self.generate(request, callback=callback, progress=progress)

    def generate(self, request: GenerationRequest, callback: StepCallback | None = None,
                 progress: bool = True) -> list[Image.Image]:
        """Images for ``request``, whose prompts name the classes (see :meth:`__call__`)."""
        req = request.resolved(self.config)
        req.check(SAMPLERS, self.latent_factor)
        prompts, negatives = req.prompts()
        if any(negatives):
            raise ValueError("a class-conditional DiT takes no negative prompt: guidance "
                             "steers away from the 'no class' label")
        side = self.latent_factor * self.dit.config.patch_size
        if req.height % side or req.width % side:
            raise ValueError(f"height and width must be multiples of {side} (VAE factor x DiT "
                             f"patch size), got {req.height}x{req.width}")
        if req.guidance != 1.0 and not self.dit.config.class_dropout_prob:
            raise ValueError("this DiT was trained without label dropout, so it has no 'no "
                             "class' label to guide with; use guidance 1")
        classes = [self.class_index(p) for p in prompts]
        seeds = [req.seed + i for i in range(len(classes))]
        batch = network_batch_size(req, len(classes))
        images: list[Image.Image] = []
        bar, on_step = self._progress(len(classes) * req.steps, progress, callback)
        with bar, self._kernels():
            for lo in range(0, len(classes), batch):
                latents = self._denoise(req, classes[lo:lo + batch], seeds[lo:lo + batch],
                                        on_step)
                for k, img in enumerate(self.decode_latents(latents)):
                    images.append(attach(img, GenerationParams(
                        self.class_prompt(classes[lo + k]), "", seeds[lo + k], req.sampler,
                        req.steps, float(req.guidance), req.width, req.height,
                        self.config.name, self.model_hash, "txt2img", 1.0,
                        float(req.guidance_rescale))))
        return images

    def _denoise(self, req: GenerationRequest, classes: list[int], seeds: list[int],
                 callback: StepCallback) -> torch.Tensor:
        """Latents (B, C, h, w) of one batch: noise, then the guided loop (with an fp32
        fallback for steps that overflow in reduced precision)."""
        f = self.latent_factor
        shape = (self.dit.config.in_channels, req.height // f, req.width // f)
        noise, generators = initial_noise(seeds, shape, self.device)  # (B, C, h, w)
        labels = torch.tensor(classes, device=self.device)  # (B,)
        null = torch.full_like(labels, self.dit.config.num_classes)  # the "no class" label

        def guided(dtype: torch.dtype) -> GuidedDenoiser:  # the DiT computing in dtype
            dit = functools.partial(self._denoiser_call, dtype=dtype)
            return GuidedDenoiser(dit, labels, null, req.guidance, req.guidance_rescale)

        fallback = guided(torch.float32) if self.fp32_fallback else None
        return denoise(guided(self.dtype), self.make_sampler(req.sampler), noise, req.steps,
                       generators, callback=callback, fallback=fallback)


def default_config(dit: DiT, vae: torch.nn.Module, **fields: Any) -> ClassConditionalConfig:
    """The pipeline defaults for ``dit`` and ``vae``: images of the DiT's latent side times the
    VAE's factor (256 px for DiT-XL/2-256 with Stable Diffusion's VAE), the class names the
    DiT's folder records (``info["labels"]``), and ``fields`` (e.g. ``name``)."""
    side = dit.config.input_size * int(vae.latent_factor)
    labels = tuple(dit.info.get("labels", ()))
    return ClassConditionalConfig(**{"height": side, "width": side, "labels": labels, **fields})
