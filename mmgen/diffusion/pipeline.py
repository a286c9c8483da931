"""Latent-diffusion pipelines: text-to-image, image-to-image (SDEdit) and inpainting.

A :class:`TextToImagePipeline` holds the three networks of Stable Diffusion (Rombach et al.
2022) and nothing else: a CLIP text encoder (prompt -> token states), a :class:`UNet` (noise
prediction in latent space, cross-attending to the token states) and an
:class:`AutoencoderKL` (latents <-> pixels). The noise schedule is data (a
:class:`NoiseSchedule`); a sampler is built from it for each call, so one pipeline runs with
every sampler. The denoising loop is :meth:`TextToImagePipeline._denoise`.

Seeds: image ``i`` of a call with seed ``s`` starts from the noise of
``torch.Generator("cpu").manual_seed(s + i)`` (and stochastic samplers draw from that generator
too), so the same seed gives the same image on every device, whatever the batch size or the
image's position in it.

    pipe = mmgen.load("shapes-t2i")                      # or a Stable Diffusion folder / file
    images = pipe("a large red circle in the center on a white background", seed=0)
    save_png(images[0], "circle.png")                    # PNG with its generation parameters
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from mmgen.checkpoint import atomic_path
from mmgen.clip.tokenizer import CLIPTokenizer
from mmgen.device import (
    autocast,
    native_cpu_convolutions,
    prefers_channels_last,
    resolve_device,
    resolve_dtype,
)
from mmgen.diffusion.guidance import GuidedDenoiser
from mmgen.diffusion.metadata import GenerationParams, attach
from mmgen.diffusion.samplers import SAMPLERS, Sampler, create_sampler
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.registry import PIPELINE_CONFIG, PretrainedModel

COMPONENTS = ("unet", "vae", "text_encoder")
# What the U-Net cross-attends to (PipelineConfig.context): "last" is the text encoder's last
# hidden state (Stable Diffusion 1.x / 2.x); "last+input" concatenates, along the channels, each
# token's input embedding (token + position, layer-normalised), which no other word has touched.
CONTEXTS = ("last", "last+input")
# callback(step_index, timestep, latents) after each sampler step; returning False cancels.
StepCallback = Callable[[int, int, torch.Tensor], Any]


class GenerationCancelled(RuntimeError):
    """Raised when a step callback returns False (the app's Cancel button)."""


@dataclass
class PipelineConfig:
    name: str = "pipeline"  # model name written into the images' parameters
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)  # the training schedule
    sampler: str = "ddim"  # default sampler
    steps: int = 25  # default sampler steps
    guidance: float = 7.5  # default classifier-free guidance scale
    height: int = 512  # default image height in pixels
    width: int = 512  # default image width in pixels
    pad_token_id: int = 49407  # prompt padding id (SD 1.x pads with <|endoftext|>, SD 2 with 0)
    set_alpha_to_one: bool = True  # DDIM's last step: to a clean image (False in SD's configs)
    context: str = "last"  # U-Net context from the text encoder, one of CONTEXTS

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown PipelineConfig.context {self.context!r}; expected one of "
                             f"{CONTEXTS}")


def text_context(text_encoder: torch.nn.Module, tokens: torch.Tensor, mode: str = "last"
                 ) -> torch.Tensor:
    """The U-Net context (N, L, D) of token ids (N, L): the last hidden state (D = W) for
    ``"last"``; for ``"last+input"`` that and the layer-normalised input embeddings (D = 2W).

    A causal text tower's state at "circle" in "a purple circle" has read "purple": for a
    colour-shape pair never seen in training it is a new vector. The input embedding of
    "circle" is the same in every caption, which gives the U-Net one clean cue per word.
    """
    out = text_encoder.encode_text_states(tokens)
    if mode == "last":
        return out.last_hidden_state
    if mode == "last+input":
        inputs = F.layer_norm(out.input_embeds, out.input_embeds.shape[-1:])  # (N, L, W)
        return torch.cat([out.last_hidden_state, inputs], dim=-1)  # (N, L, 2W)
    raise ValueError(f"unknown text context {mode!r}; expected one of {CONTEXTS}")


def _as_list(text: str | Sequence[str] | None, n: int, what: str) -> list[str]:
    if text is None:
        return [""] * n
    items = [text] if isinstance(text, str) else list(text)
    if len(items) == 1:
        return items * n
    if len(items) != n:
        raise ValueError(f"got {len(items)} {what}s for {n} prompts; give one or one per prompt")
    return items


class TextToImagePipeline:
    """Text encoder + U-Net + VAE of a latent diffusion model (see the module docstring).

    Args:
        unet: noise predictor ``unet(x, t, context)`` in latent space.
        vae: autoencoder with ``encode``/``decode``, ``latent_factor`` and
            ``config.scaling_factor`` / ``config.shift_factor``.
        text_encoder: a CLIP text model with ``encode_text_states`` (its last hidden state is
            the context).
        config: defaults and the noise schedule.
        device: "auto", "cpu", "cuda", ...
        dtype: "fp32" (exact; the default), "auto" (bf16 autocast where the CPU/GPU has it),
            "bf16" or "fp16".
        batch_invariant: on the CPU, compute convolutions with PyTorch's native kernels,
            which treat every image of a batch alike, instead of oneDNN's, whose algorithm
            (and so the last bits of the result) depends on the batch size. This is what makes
            a seed give the same pixels whatever the batch size, at some speed (measured by
            benchmarks/unet_step.py). False: fastest kernels; images may then differ by a
            grey level between batch sizes.
    """

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module,
                 text_encoder: torch.nn.Module, config: PipelineConfig,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "fp32",
                 batch_invariant: bool = True):
        self.unet, self.vae, self.text_encoder, self.config = unet, vae, text_encoder, config
        self.batch_invariant = batch_invariant
        self.tokenizer = CLIPTokenizer(text_encoder.text_config.context_length,
                                       pad_token_id=config.pad_token_id)
        width = text_encoder.text_config.width * (2 if config.context == "last+input" else 1)
        if width != unet.config.cross_attention_dim:
            raise ValueError(f"the U-Net cross-attends to {unet.config.cross_attention_dim} "
                             f"channels but context {config.context!r} of this text encoder "
                             f"has {width}; give PipelineConfig(context=...) the U-Net was "
                             "trained with")
        self._hash: str | None = None
        self.to(device, dtype)

    # ------------------------------------------------------------------ setup

    def to(self, device: str | torch.device = "cpu",
           dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
        """Move the networks to ``device`` and set the compute precision (weights stay fp32;
        reduced precision runs through autocast)."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        fmt = torch.channels_last if prefers_channels_last(self.device) else torch.contiguous_format
        for net in (self.unet, self.vae):
            net.to(self.device, memory_format=fmt).eval()
        self.text_encoder.to(self.device).eval()
        return self

    @property
    def latent_factor(self) -> int:
        return int(self.vae.latent_factor)

    @property
    def model_hash(self) -> str:
        """First 10 hex digits of the SHA-256 of the U-Net's weights (sorted names + bytes)."""
        if self._hash is None:
            h = hashlib.sha256()
            for name, tensor in sorted(self.unet.state_dict().items()):
                h.update(name.encode())
                flat = tensor.detach().cpu().contiguous(memory_format=torch.contiguous_format)
                flat = flat.reshape(-1)  # (numel,)
                h.update(flat.view(torch.uint8).numpy().tobytes())
            self._hash = h.hexdigest()[:10]
        return self._hash

    # ------------------------------------------------------------------ public calls

    def __call__(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None
                 = None, *, steps: int | None = None, guidance: float | None = None,
                 sampler: str | None = None, seed: int | None = None, num_images: int = 1,
                 height: int | None = None, width: int | None = None,
                 guidance_rescale: float = 0.0, batch_size: int | None = None,
                 callback: StepCallback | None = None, progress: bool = True
                 ) -> list[Image.Image]:
        """Text-to-image: ``num_images`` images per prompt, as PIL images whose ``info``
        holds their generation parameters (write them with :func:`save_png`).

        Args:
            prompt: one prompt or a list.
            negative_prompt: what to steer away from (one, or one per prompt).
            steps: sampler steps (default: the pipeline's).
            guidance: classifier-free guidance scale >= 0 (1 = no guidance).
            sampler: one of ``SAMPLERS`` (ddim, ddpm, dpm++2m, euler, euler_a).
            seed: seed of the first image; image i uses ``seed + i``. None draws one.
            num_images: images per prompt.
            height, width: pixels, multiples of the VAE's latent factor.
            guidance_rescale: phi of guidance rescale, in [0, 1].
            batch_size: images per U-Net batch (default: all); results do not depend on it.
            callback: ``callback(i, t, latents)`` after each step; return False to cancel.
            progress: show a progress bar (stderr).
        """
        return self._generate("txt2img", prompt, negative_prompt, steps, guidance, sampler,
                              seed, num_images, height, width, guidance_rescale, batch_size,
                              callback, progress)

    def img2img(self, image: Image.Image | torch.Tensor, prompt: str | Sequence[str],
                negative_prompt: str | Sequence[str] | None = None, *, strength: float = 0.75,
                **kwargs: Any) -> list[Image.Image]:
        """SDEdit (Meng et al. 2022): noise ``image``'s latent to ``strength`` of the schedule
        and denoise it with the prompt; 0 returns the (re-encoded) image, 1 ignores it.
        Other arguments as :meth:`__call__` (height/width come from the image)."""
        return self._generate("img2img", prompt, negative_prompt, init=image,
                              strength=strength, **self._defaults(kwargs))

    def inpaint(self, image: Image.Image | torch.Tensor, mask: Image.Image | torch.Tensor,
                prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None,
                *, strength: float = 1.0, **kwargs: Any) -> list[Image.Image]:
        """Repaint the white (> 0.5) part of ``mask`` (same size as ``image``) and keep the
        rest: after every step the known region of the latent is replaced by the original,
        noised to the next step's level (latent blending, as in RePaint / SD's legacy
        inpainting). Works with any text-to-image U-Net."""
        return self._generate("inpaint", prompt, negative_prompt, init=image, mask=mask,
                              strength=strength, **self._defaults(kwargs))

    @staticmethod
    def _defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
        allowed = ("steps", "guidance", "sampler", "seed", "num_images", "guidance_rescale",
                   "batch_size", "callback", "progress")
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"unexpected argument(s) {unknown}; allowed: {allowed}")
        out: dict[str, Any] = {"steps": None, "guidance": None, "sampler": None, "seed": None,
                               "num_images": 1, "guidance_rescale": 0.0, "batch_size": None,
                               "callback": None, "progress": True, "height": None,
                               "width": None}
        out.update(kwargs)
        return out

    # ------------------------------------------------------------------ the work

    def _generate(self, mode: str, prompt: str | Sequence[str],
                  negative_prompt: str | Sequence[str] | None, steps: int | None,
                  guidance: float | None, sampler: str | None, seed: int | None,
                  num_images: int, height: int | None, width: int | None,
                  guidance_rescale: float, batch_size: int | None,
                  callback: StepCallback | None, progress: bool, init: Any = None,
                  mask: Any = None, strength: float = 1.0) -> list[Image.Image]:
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        guidance = cfg.guidance if guidance is None else guidance
        sampler = cfg.sampler if sampler is None else sampler
        init_latents = latent_mask = None
        if init is not None:
            pixels = to_pixels(init)  # (1, 3, H, W) in [-1, 1]
            height, width = pixels.shape[-2:]
        height, width = height or cfg.height, width or cfg.width
        self._check(steps, guidance, sampler, num_images, height, width, strength)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        negatives = _as_list(negative_prompt, len(prompts), "negative prompt")
        prompts = [p for p in prompts for _ in range(num_images)]  # (N,)
        negatives = [n for n in negatives for _ in range(num_images)]
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        seeds = [seed + i for i in range(len(prompts))]
        if init is not None:
            init_latents = self.encode_latents(pixels)  # (1, C, h, w)
        if mask is not None:
            latent_mask = to_latent_mask(mask, (height, width), self.latent_factor)
        batch = batch_size or len(prompts)
        if batch < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch}")
        images: list[Image.Image] = []
        bar = tqdm(total=len(prompts) * steps, desc="generate", disable=not progress,
                   unit="step", leave=False)
        with bar, self._kernels():
            for lo in range(0, len(prompts), batch):
                sl = slice(lo, lo + batch)
                latents = self._denoise(prompts[sl], negatives[sl], seeds[sl], sampler, steps,
                                        guidance, guidance_rescale, height, width,
                                        init_latents, latent_mask, strength, callback, bar)
                for k, img in enumerate(self.decode_latents(latents)):
                    images.append(attach(img, GenerationParams(
                        prompts[lo + k], negatives[lo + k], seeds[lo + k], sampler, steps,
                        float(guidance), width, height, cfg.name, self.model_hash, mode,
                        float(strength), float(guidance_rescale))))
        return images

    @torch.no_grad()
    def _denoise(self, prompts: list[str], negatives: list[str], seeds: list[int],
                 sampler_name: str, steps: int, guidance: float, rescale: float, height: int,
                 width: int, init: torch.Tensor | None, mask: torch.Tensor | None,
                 strength: float, callback: StepCallback | None, bar: tqdm) -> torch.Tensor:
        """The sampling loop for one batch; returns latents (B, C, h, w)."""
        sampler = self.make_sampler(sampler_name)
        sampler.set_timesteps(steps)
        timesteps = sampler.timesteps  # (steps,) descending
        if init is not None:  # img2img / inpaint start part-way through the schedule
            timesteps = timesteps[steps - min(int(steps * strength), steps):]
        bar.update(steps - len(timesteps))
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        shape = (1, self.unet.config.in_channels, height // self.latent_factor,
                 width // self.latent_factor)
        noise = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(self.device)
        if init is None:
            x = noise * sampler.init_noise_sigma  # (B, C, h, w)
        else:
            init = init.expand(len(seeds), -1, -1, -1)
            x = sampler.add_noise(init, noise, timesteps[:1]) if len(timesteps) else init
        context = self.encode_prompt(prompts)  # (B, L, D)
        uncond = self.encode_prompt(negatives) if guidance != 1.0 else None
        denoiser = GuidedDenoiser(self._unet_call, context, uncond, guidance, rescale)
        for i, t in enumerate(timesteps):
            out = denoiser(sampler.scale_model_input(x, t), t.to(self.device))  # (B, C, h, w)
            x = sampler.step(out.float(), t, x, generator=generators)
            if mask is not None:  # keep the known region: the original at the next level
                known = sampler.add_noise(init, noise, timesteps[i + 1:i + 2]) \
                    if i + 1 < len(timesteps) else init
                x = mask * x + (1 - mask) * known
            bar.update(1)
            if callback is not None and callback(i, int(t), x) is False:
                raise GenerationCancelled(f"cancelled at step {i + 1} of {len(timesteps)}")
        return x

    def _kernels(self) -> contextlib.AbstractContextManager:
        """Batch-invariant convolution kernels on the CPU (see ``batch_invariant``)."""
        if self.batch_invariant and self.device.type == "cpu":
            return native_cpu_convolutions()
        return contextlib.nullcontext()

    def _unet_call(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor
                   ) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            return self.unet(x, t, context).float()

    def make_sampler(self, name: str) -> Sampler:
        """A fresh sampler ``name`` on this model's noise schedule."""
        options = {"set_alpha_to_one": self.config.set_alpha_to_one} if name == "ddim" else {}
        return create_sampler(name, self.config.schedule, **options)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text context (N, L, D): the text encoder's last hidden state (``config.context``)."""
        tokens = self.tokenizer(prompts).to(self.device)  # (N, L)
        with autocast(self.device, self.dtype):
            return text_context(self.text_encoder, tokens, self.config.context).float()

    @torch.no_grad()
    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (N, 3, H, W) in [-1, 1] -> scaled latents (the distribution's mean)."""
        vc = self.vae.config
        with autocast(self.device, self.dtype):
            mean = self.vae.encode(pixels.to(self.device)).mean.float()
        return (mean - vc.shift_factor) * vc.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> list[Image.Image]:
        """Scaled latents (N, C, h, w) -> PIL images."""
        vc = self.vae.config
        with autocast(self.device, self.dtype):
            pixels = self.vae.decode(latents / vc.scaling_factor + vc.shift_factor).float()
        arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, 3, H, W)
        return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arr]

    def _check(self, steps: int, guidance: float, sampler: str, num_images: int, height: int,
               width: int, strength: float) -> None:
        f = self.latent_factor
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if height < f or width < f or height % f or width % f:
            raise ValueError(f"height and width must be positive multiples of {f} (the VAE's "
                             f"latent factor), got {height}x{width}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")

    # ------------------------------------------------------------------ save / load

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write ``pipeline.json`` and one mmgen model folder per network (atomically)."""
        directory = Path(directory)
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            for name in COMPONENTS:
                getattr(self, name).save_pretrained(tmp / name, dtype=dtype)
            meta = {"class": "TextToImagePipeline", "config": asdict(self.config),
                    "components": list(COMPONENTS)}
            (tmp / PIPELINE_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
        """Load a pipeline folder written by :meth:`save_pretrained`."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / PIPELINE_CONFIG).read_text())
            config = meta["config"]
            config = PipelineConfig(**{**config, "schedule": NoiseSchedule(**config["schedule"])})
        except FileNotFoundError:
            raise FileNotFoundError(f"{directory} is not a pipeline folder (no "
                                    f"{PIPELINE_CONFIG})") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{directory / PIPELINE_CONFIG} is malformed: {e}") from None
        nets = {name: PretrainedModel.from_pretrained(directory / name) for name in COMPONENTS}
        return cls(**nets, config=config, device=device, dtype=dtype)

    @classmethod
    def from_diffusers_folder(cls, directory: str | Path, device: str | torch.device = "cpu",
                              dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
        """A Stable Diffusion 1.x folder in diffusers' layout (``model_index.json``)."""
        from mmgen.interop.stable_diffusion import read_sd_folder

        return cls.from_components(read_sd_folder(directory), device, dtype)

    @classmethod
    def from_single_file(cls, path: str | Path, device: str | torch.device = "cpu",
                         dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
        """An original (CompVis / AUTOMATIC1111) Stable Diffusion 1.x ``.safetensors`` or
        ``.ckpt`` file (pickles only through ``torch.load(weights_only=True)``)."""
        from mmgen.interop.stable_diffusion import read_sd_single_file

        return cls.from_components(read_sd_single_file(path), device, dtype)

    @classmethod
    def from_components(cls, c: Any, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
        """A pipeline of :class:`mmgen.interop.stable_diffusion.SDComponents`."""
        side = c.unet.config.sample_size * c.vae.latent_factor  # SD 1.x: 64 * 8 = 512
        config = PipelineConfig(
            name=c.name, schedule=c.sampler.schedule, height=side, width=side,
            pad_token_id=c.tokenizer.pad_token_id,
            set_alpha_to_one=bool(c.scheduler_config.get("set_alpha_to_one", True)))
        return cls(c.unet, c.vae, c.text_encoder, config, device=device, dtype=dtype)



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
