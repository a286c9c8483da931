"""One-step generators (DCGAN, ConvVAE) as pipelines, with the calling convention of every
mmgen generator::

    g = mmgen.load("mnist-dcgan")
    images = g([3, "7"], seed=0, num_images=4)         # class numbers or names
    g = mmgen.load("shapes-dcgan")
    images = g("a large red circle in the center on a white background", seed=0)
    g = mmgen.load("mnist-vae")
    images = g(num_images=16, seed=0)                   # unconditional

Images are PIL images carrying their :class:`~mmgen.diffusion.metadata.GenerationParams`
(sampler ``"one-step"``, 1 step, guidance 1), so ``mmgen generate --model shapes-dcgan
"..."`` writes them like any text-to-image result and ``--from-image`` re-creates them. Image
``i`` of a call with seed ``s`` comes from the latent ``model.sample_latents(1,
torch.Generator().manual_seed(s + i))``, whatever the batch it is computed in.

A model here follows the one-step protocol (see :mod:`mmgen.latents`): ``config.latent_dim``,
``config.image_size``, ``config.channels``, ``sample_latents(n, generator)``,
``input_vector(z, labels)`` and ``synthesize(w)``, images in [-1, 1].

``config.conditioning`` says what a condition is: ``"none"`` (unconditional: no conditions),
``"class"`` (one label: a class number, "class N" or one of ``config.labels``) or
``"shapes"`` (the five Shapes attributes, given as a caption that
:func:`mmgen.data.shapes.parse` reads; images record the canonical caption).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from mmgen.data import shapes
from mmgen.device import (
    autocast,
    batch_invariant_kernels,
    resolve_device,
    resolve_dtype,
)
from mmgen.diffusion.metadata import GenerationParams, GenerationRequest, attach
from mmgen.latents import interpolate
from mmgen.pipeline import Pipeline, class_index, class_prompt, weights_hash

CONDITIONINGS = ("none", "class", "shapes")
SAMPLER = "one-step"  # what images record as their sampler


@dataclass
class OneStepConfig:
    name: str = ""  # the model's name, recorded in every image
    conditioning: str = "none"  # "none", "class" or "shapes" (see the module docstring)
    labels: tuple[str, ...] = ()  # "class": one name per class (e.g. "0" ... "9"), or none
    batch_size: int = 256  # images per network call (results do not depend on it)

    def __post_init__(self):
        self.labels = tuple(self.labels)
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"OneStepConfig.conditioning must be one of {CONDITIONINGS}, got "
                             f"{self.conditioning!r}")
        if self.batch_size < 1:
            raise ValueError(f"OneStepConfig.batch_size must be >= 1, got {self.batch_size}")


class OneStepPipeline(Pipeline):
    """A one-step generator and how it is conditioned (see the module docstring).

    Args:
        model: a DCGAN or ConvVAE (anything following the one-step protocol).
        config: name, conditioning and class names.
        device: "auto", "cpu", "cuda", ...
        dtype: "fp32" (the default, exact), "auto", "bf16" or "fp16" (autocast).
        batch_invariant: CPU convolutions with batch-independent kernels, so an image does
            not depend on the batch it is computed in.
    """

    components = ("model",)
    config_class = OneStepConfig

    def __init__(self, model: torch.nn.Module, config: OneStepConfig,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "fp32",
                 batch_invariant: bool = True):
        self.model, self.config, self.batch_invariant = model, config, batch_invariant
        conditions = tuple(getattr(model.config, "conditions", ()))
        expected = {"none": "()", "class": "one condition",
                    "shapes": f"the five Shapes attributes {_shapes_conditions()}"}
        ok = {"none": conditions == (), "class": len(conditions) == 1,
              "shapes": conditions == _shapes_conditions()}[config.conditioning]
        if not ok:
            raise ValueError(f"conditioning {config.conditioning!r} needs a model with "
                             f"{expected[config.conditioning]} as conditions; this "
                             f"{type(model).__name__} has {conditions}")
        if config.labels and (config.conditioning != "class" or len(config.labels) !=
                              conditions[0]):
            raise ValueError(f"config.labels has {len(config.labels)} names; give one per "
                             "class of a class-conditional model, or none")
        self._hash: str | None = None
        self.to(device, dtype)

    def to(self, device: str | torch.device = "cpu",
           dtype: str | torch.dtype = "fp32") -> OneStepPipeline:
        """Move the network to ``device`` and set the compute precision."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model.to(self.device).eval()
        return self

    @property
    def model_hash(self) -> str:
        """First 10 hex digits of the SHA-256 of the weights (recorded in every image)."""
        if self._hash is None:
            self._hash = weights_hash(self.model)
        return self._hash

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    # ------------------------------------------------------------------ conditions

    def condition(self, text: str | int | None) -> tuple[str, list[int] | None]:
        """One condition -> (the prompt images record, its labels (K,) or None)."""
        kind = self.config.conditioning
        if kind == "none":
            if text not in (None, ""):
                raise ValueError(f"{self.config.name or 'this model'} is unconditional; give "
                                 f"no condition, got {text!r}")
            return "", None
        if text is None or str(text).strip() == "":
            what = "a class number or name" if kind == "class" else "a Shapes caption"
            raise ValueError(f"{self.config.name or 'this model'} is conditional: give {what}")
        if kind == "class":
            index = class_index(text, self.config.labels, self.model.config.conditions[0])
            return class_prompt(index, self.config.labels), [index]
        attrs = shapes.parse(str(text))
        return shapes.caption(attrs), list(attrs.labels)

    def conditions(self, items: Sequence[str | int | None]
                   ) -> tuple[list[str], torch.Tensor | None]:
        """Conditions -> (recorded prompts, labels (N, K) on the device, or None)."""
        parsed = [self.condition(c) for c in items]
        prompts = [p for p, _ in parsed]
        if self.config.conditioning == "none":
            return prompts, None
        return prompts, torch.tensor([y for _, y in parsed], device=self.device)

    # ------------------------------------------------------------------ generation

    def __call__(self, conditions: str | int | Sequence[str | int] | None = None, *,
                 seed: int | None = None, num_images: int = 1, batch_size: int | None = None,
                 progress: bool = False) -> list[Image.Image]:
        """``num_images`` images per condition (one or a list; ``None`` for an unconditional
        model), as PIL images holding their generation parameters."""
        items = list(conditions) if isinstance(conditions, (list, tuple)) else [conditions]
        request = GenerationRequest(["" if c is None else str(c) for c in items], seed=seed,
                                    num_images=num_images, batch_size=batch_size)
        return self.generate(request, progress=progress)

    def generate(self, request: GenerationRequest, progress: bool = False
                 ) -> list[Image.Image]:
        """Images for ``request`` (whose prompts are the conditions); the options a one-step
        generator does not have (sampler, steps, guidance, negative prompt, another size)
        are an error unless they hold the values its images record."""
        self.check_request(request)
        req = request.resolved(self.defaults())
        items, _ = req.prompts()
        prompts, labels = self.conditions(items)
        seeds = [req.seed + i for i in range(len(prompts))]
        z = self.latents(seeds)  # (N, nz)
        with torch.no_grad():
            w = self.model.input_vector(z, labels)  # (N, W)
        return self.render(w, prompts, seeds, req.batch_size, progress)

    def defaults(self) -> GenerationRequest:
        """The values of a one-step generator's request fields (what images record)."""
        return GenerationRequest("", steps=1, guidance=1.0, sampler=SAMPLER,
                                 height=self.image_size, width=self.image_size)

    def check_request(self, request: GenerationRequest) -> None:
        """A ``ValueError`` for an option this generator does not have."""
        request.check_limits()
        fixed = self.defaults()
        for name in ("sampler", "steps", "guidance", "height", "width"):
            value = getattr(request, name)
            if value is not None and value != getattr(fixed, name):
                raise ValueError(f"{self.config.name or 'a one-step generator'} makes "
                                 f"{self.image_size}x{self.image_size} images in one step: it "
                                 f"has no {name} option (got {value!r})")
        _, negatives = request.prompts()
        if any(negatives) or request.guidance_rescale or request.strength != 1.0:
            raise ValueError("a one-step generator takes no negative prompt, guidance rescale "
                             "or strength")

    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """z (N, nz): image i's from a CPU generator seeded with ``seeds[i]``."""
        return torch.cat([self.model.sample_latents(1, torch.Generator().manual_seed(s))
                          for s in seeds])

    @torch.no_grad()
    def render(self, w: torch.Tensor, prompts: Sequence[str], seeds: Sequence[int],
               batch_size: int | None = None, progress: bool = False) -> list[Image.Image]:
        """Images of the generator's input vectors ``w`` (N, W), recording ``prompts`` and
        ``seeds``; a ``ValueError`` if the network produced NaN/Inf."""
        from tqdm.auto import tqdm

        batch = batch_size or self.config.batch_size
        images: list[Image.Image] = []
        bar = tqdm(total=len(w), desc="generate", unit="image", leave=False,
                   disable=not progress)
        with batch_invariant_kernels(self.device, self.batch_invariant), bar:
            for lo in range(0, len(w), batch):
                with autocast(self.device, self.dtype):
                    pixels = self.model.synthesize(w[lo:lo + batch].to(self.device)).float()
                if not torch.isfinite(pixels).all():
                    raise ValueError("the generator produced NaN/Inf pixels; its weights may "
                                     "hold NaN/Inf (a damaged checkpoint)")
                for k, img in enumerate(to_pil(pixels)):
                    images.append(attach(img, GenerationParams(
                        prompts[lo + k], "", int(seeds[lo + k]), SAMPLER, 1, 1.0,
                        self.image_size, self.image_size, self.config.name, self.model_hash)))
                bar.update(len(pixels))
        return images

    # ------------------------------------------------------------------ latent walks

    def interpolate(self, start: str | int | None = None, end: str | int | None = None, *,
                    seed: int = 0, end_seed: int | None = None, frames: int = 16,
                    method: str = "slerp") -> list[Image.Image]:
        """A latent walk of ``frames`` images from (``start`` condition, ``seed``'s z) to
        (``end`` condition, ``end_seed``'s z), both ends included: z by ``method`` (slerp or
        lerp), the condition embedding by a straight line (see :mod:`mmgen.latents`).
        ``end`` defaults to ``start``, ``end_seed`` to ``seed + 1``. Frame i records the
        start's prompt and seed for its first half, the end's for the second."""
        end = start if end is None else end
        end_seed = seed + 1 if end_seed is None else end_seed
        prompts, labels = self.conditions([start, end])
        z = self.latents([seed, end_seed])  # (2, nz)
        with torch.no_grad():
            w = self.model.input_vector(z, labels)  # (2, W)
        path = interpolate(w[0], w[1], frames, self.model.config.latent_dim, method)  # (F, W)
        half = [i >= frames / 2 for i in range(frames)]
        return self.render(path, [prompts[h] for h in half],
                           [(seed, end_seed)[h] for h in half])


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """Images (N, C, H, W) in [-1, 1] -> PIL images (grayscale for one channel)."""
    arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()  # (N, C, H, W)
    if arr.shape[1] == 1:
        return [Image.fromarray(a[0].numpy(), mode="L") for a in arr]
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in arr]


def _shapes_conditions() -> tuple[int, ...]:
    """Values of each Shapes attribute, in label order: (6, 4, 2, 9, 3)."""
    return tuple(len(shapes.CLASS_NAMES[a]) for a in shapes.ATTRIBUTES)

