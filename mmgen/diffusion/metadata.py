"""What to generate (:class:`GenerationRequest`) and what was generated
(:class:`GenerationParams`, carried inside the PNGs mmgen writes).

A :class:`GenerationRequest` is the one list of generation options, with their defaults: the
pipeline, ``mmgen generate`` and the app all build one. Each image the pipeline makes records
its own :class:`GenerationParams` (the request resolved for that image: its prompt, its seed).

Every generated image holds two PNG text chunks:

* ``parameters``: the AUTOMATIC1111 web UI's format, which many image tools display::

      a red circle in the center
      Negative prompt: blurry
      Steps: 25, Sampler: DDIM, CFG scale: 3.0, Seed: 7, Size: 64x64, Model hash: ..., Model: ...

* ``mmgen``: the same :class:`GenerationParams` as JSON, which ``mmgen generate --from-image``
  reads back to re-create the image exactly.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from PIL import Image

from mmgen.checkpoint import write_file, write_numbered
from mmgen.data.images import png_writer, read_png_text
from mmgen.limits import (
    MAX_IMAGES,
    MAX_STEPS,
    check_image_size,
    check_seed,
)
from mmgen.registry import config_from_dict

# mmgen sampler name -> the name AUTOMATIC1111 shows
A1111_SAMPLER_NAMES = {"ddim": "DDIM", "ddpm": "DDPM", "dpm++2m": "DPM++ 2M",
                       "euler": "Euler", "euler_a": "Euler a"}
JSON_KEY = "mmgen"


@dataclass
class GenerationRequest:
    """Options of one generation call. ``None`` means "the model's default" (its
    ``PipelineConfig``; for height and width with an input image: the image's size)."""

    prompt: str | list[str]  # one prompt or a list
    negative_prompt: str | list[str] | None = None  # what to steer away from: one, or one
    #   per prompt (None: the empty prompt)
    steps: int | None = None  # sampler steps
    guidance: float | None = None  # classifier-free guidance scale >= 0 (1 = no guidance)
    sampler: str | None = None  # one of mmgen.diffusion.SAMPLERS
    seed: int | None = None  # seed of the first image; image i uses seed + i (None: random)
    num_images: int = 1  # images per prompt
    height: int | None = None  # pixels, a multiple of the VAE's latent factor
    width: int | None = None  # pixels, a multiple of the VAE's latent factor
    guidance_rescale: float = 0.0  # phi of guidance rescale (Lin et al. 2023), in [0, 1]
    strength: float = 1.0  # img2img / inpaint: how much of the noise schedule is run, [0, 1]
    batch_size: int | None = None  # images per network batch (None: the most whose
    #   batch * height * width fits MMGEN_MAX_BATCH_PIXELS, at least 1); results do not
    #   depend on it

    def prompts(self) -> tuple[list[str], list[str]]:
        """(prompts, negative prompts), one per image: each prompt ``num_images`` times."""
        prompts = self.distinct_prompts()
        negatives = _one_per(self.negative_prompt, len(prompts), "negative prompt")
        return ([p for p in prompts for _ in range(self.num_images)],
                [n for n in negatives for _ in range(self.num_images)])

    def distinct_prompts(self) -> list[str]:
        """The prompts as a list, each once (not repeated ``num_images`` times)."""
        prompts = [self.prompt] if isinstance(self.prompt, str) else \
            list(self.prompt) if isinstance(self.prompt, (list, tuple)) else None
        if not prompts or any(not isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        return prompts

    def resolved(self, defaults: Any) -> GenerationRequest:
        """This request with every ``None`` replaced: steps, guidance, sampler, height and
        width from ``defaults`` (a ``PipelineConfig``), the seed drawn at random."""
        pick = {name: getattr(defaults, name) for name in
                ("steps", "guidance", "sampler", "height", "width")
                if getattr(self, name) is None}
        seed = secrets.randbelow(2**31) if self.seed is None else int(self.seed)
        return replace(self, **pick, seed=seed)

    def check(self, samplers: tuple[str, ...], latent_factor: int) -> None:
        """A clear ``ValueError`` for any option out of range (on a resolved request)."""
        self.check_limits()
        f = latent_factor
        if self.sampler not in samplers:
            raise ValueError(f"unknown sampler {self.sampler!r}; available: "
                             f"{', '.join(samplers)}")
        h, w = self.height, self.width
        if h < f or w < f or h % f or w % f:
            raise ValueError(f"height and width must be positive multiples of {f} (the VAE's "
                             f"latent factor), got {h}x{w}")

    def check_limits(self) -> None:
        """The checks that need no model, on the options given (``None`` is skipped): types
        and ranges, and the limits of :mod:`mmgen.limits` (image size, steps, images per
        call, seeds). ``mmgen generate`` runs them before it loads anything."""
        for name in ("steps", "num_images", "height", "width", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name, low, high in (("guidance", 0.0, math.inf), ("strength", 0.0, 1.0),
                                ("guidance_rescale", 0.0, 1.0)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and low <= value <= high):
                span = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
                raise ValueError(f"{name} must be a finite number {span}, got {value!r}")
        if self.steps is not None:
            MAX_STEPS.check(self.steps, f"{self.steps:,} steps")
        if self.height is not None and self.width is not None:
            check_image_size(self.height, self.width)
        count = len(self.distinct_prompts()) * self.num_images  # (not built: may be huge)
        MAX_IMAGES.check(count, f"{count:,} images")
        if self.seed is not None:
            check_seed(self.seed, count)


def _one_per(text: str | list[str] | None, n: int, what: str) -> list[str]:
    if text is None:
        return [""] * n
    items = [text] if isinstance(text, str) else list(text)
    if len(items) == 1:
        return items * n
    if len(items) != n:
        raise ValueError(f"got {len(items)} {what}s for {n} prompts; give one or one per prompt")
    return items


@dataclass
class GenerationParams:
    prompt: str  # the text prompt
    negative_prompt: str  # "" when none was given
    seed: int  # seed of this image's initial noise (a CPU generator per image)
    sampler: str  # mmgen sampler name ("ddim", "dpm++2m", ...)
    steps: int  # sampler steps
    guidance: float  # classifier-free guidance scale
    width: int  # image width in pixels
    height: int  # image height in pixels
    model: str  # model name or path
    model_hash: str  # first 10 hex digits of the SHA-256 of the model's weights
    mode: str = "txt2img"  # "txt2img", "img2img" or "inpaint"
    strength: float = 1.0  # img2img / inpaint: how much of the noise schedule is used
    guidance_rescale: float = 0.0  # guidance rescale phi (0 = plain CFG)

    def a1111(self) -> str:
        """The ``parameters`` text in AUTOMATIC1111's format."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        opts = {"Steps": self.steps,
                "Sampler": A1111_SAMPLER_NAMES.get(self.sampler, self.sampler),
                "CFG scale": self.guidance, "Seed": self.seed,
                "Size": f"{self.width}x{self.height}", "Model hash": self.model_hash,
                "Model": self.model}
        if self.mode != "txt2img":
            opts["Denoising strength"] = self.strength
        if self.guidance_rescale:
            opts["CFG rescale"] = self.guidance_rescale
        lines.append(", ".join(f"{k}: {v}" for k, v in opts.items()))
        return "\n".join(lines)

    def request(self) -> GenerationRequest:
        """The text-to-image request that re-creates this image (``mmgen generate
        --from-image``; an img2img or inpainting image also needs its input image)."""
        return GenerationRequest(
            self.prompt, self.negative_prompt, steps=self.steps, guidance=self.guidance,
            sampler=self.sampler, seed=self.seed, height=self.height, width=self.width,
            guidance_rescale=self.guidance_rescale)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> GenerationParams:
        """Parse :meth:`to_json`'s text; a ``ValueError`` naming the field for a value of the
        wrong type (unknown keys, from newer versions, are ignored)."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        return config_from_dict(cls, {k: v for k, v in data.items() if k in names})


def attach(image: Image.Image, params: GenerationParams) -> Image.Image:
    """Record ``params`` in ``image.info`` (written as PNG text chunks by :func:`save_png`)."""
    image.info["parameters"] = params.a1111()
    image.info[JSON_KEY] = params.to_json()
    return image


def save_png(image: Image.Image, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``image`` as a PNG with its generation parameters, atomically; with
    ``overwrite=False`` an existing ``path`` is a ``FileExistsError`` (checked atomically)."""
    return write_file(path, lambda tmp: _write_png(image, tmp), overwrite)


def save_png_numbered(image: Image.Image, folder: str | Path, label: str) -> Path:
    """Write ``image`` into ``folder`` as ``NNNNN-label.png``, with NNNNN one more than the
    highest number there; concurrent writers never take the same name or number (see
    :func:`mmgen.checkpoint.write_numbered`)."""
    return write_numbered(folder, lambda tmp: _write_png(image, tmp),
                          name=lambda n: f"{n:05d}-{label}.png")


def _write_png(image: Image.Image, path: Path) -> None:
    png_writer(image, ("parameters", JSON_KEY))(path)


def read_params(path: str | Path) -> GenerationParams:
    """The :class:`GenerationParams` stored in a PNG written by mmgen."""
    text = read_png_text(path, JSON_KEY)
    if not text:
        raise ValueError(f"{path} carries no mmgen generation parameters (no '{JSON_KEY}' PNG "
                         "text chunk); only PNGs written by mmgen generate can be re-created")
    try:
        return GenerationParams.from_json(text)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: malformed generation parameters ({e})") from None
