"""Generation parameters carried inside the PNGs mmgen writes.

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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from mmgen.checkpoint import atomic_path

# mmgen sampler name -> the name AUTOMATIC1111 shows
A1111_SAMPLER_NAMES = {"ddim": "DDIM", "ddpm": "DDPM", "dpm++2m": "DPM++ 2M",
                       "euler": "Euler", "euler_a": "Euler a"}
JSON_KEY = "mmgen"


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> GenerationParams:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def attach(image: Image.Image, params: GenerationParams) -> Image.Image:
    """Record ``params`` in ``image.info`` (written as PNG text chunks by :func:`save_png`)."""
    image.info["parameters"] = params.a1111()
    image.info[JSON_KEY] = params.to_json()
    return image


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as a PNG with its generation parameters, atomically."""
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    for key in ("parameters", JSON_KEY):
        if key in image.info:
            info.add_itxt(key, image.info[key])
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def read_params(path: str | Path) -> GenerationParams:
    """The :class:`GenerationParams` stored in a PNG written by mmgen."""
    try:
        with Image.open(path) as im:
            text: Any = im.info.get(JSON_KEY) or getattr(im, "text", {}).get(JSON_KEY)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as an image: {e}") from None
    if not text:
        raise ValueError(f"{path} carries no mmgen generation parameters (no '{JSON_KEY}' PNG "
                         "text chunk); only PNGs written by mmgen generate can be re-created")
    try:
        return GenerationParams.from_json(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path}: malformed generation parameters ({e})") from None
