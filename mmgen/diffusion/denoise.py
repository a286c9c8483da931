"""The denoising loop, shared by every diffusion pipeline (text-to-image U-Net, DiT, class-
conditional): a denoiser ``model(x, t)`` (e.g. a :class:`~mmgen.diffusion.guidance.
GuidedDenoiser`) and a :class:`~mmgen.diffusion.samplers.Sampler` turn noise into latents.

Seeds: item ``i`` of a batch draws its noise from its own CPU generator (:func:`initial_noise`),
and stochastic samplers draw from the same generators, so an image depends on its seed only,
not on the device, the batch size or its position in the batch.

NaN/Inf: every model prediction is checked before the sampler step that consumes it (samplers
keep a history and draw random numbers, so a step cannot be replayed once it ran), and the
latents after it. A non-finite prediction is recomputed once by the ``fallback`` model (the
same denoiser in fp32, when the pipeline computes in bf16/fp16); anything still non-finite
raises :class:`NonFiniteError` rather than becoming a black image. The check is one
``torch.isfinite(x).all()`` per tensor and step, and changes no result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from mmgen.diffusion.samplers import Sampler

# model(x_t (B, C, h, w), t ()) -> the network's prediction (B, C, h, w)
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# callback(step_index, timestep, latents) after each step; returning False cancels.
StepCallback = Callable[[int, int, torch.Tensor], Any]


class GenerationCancelled(RuntimeError):
    """Raised when a step callback returns False (the app's Cancel button)."""


class NonFiniteError(ValueError):
    """Sampling, encoding or decoding produced NaN/Inf; raised instead of returning an image
    made from them (a ValueError: the CLI prints it as a one-line error)."""


def is_finite(x: torch.Tensor) -> bool:
    """Whether every element of ``x`` is finite (no NaN, no +-Inf)."""
    return bool(torch.isfinite(x).all())


def initial_noise(seeds: list[int], shape: tuple[int, ...], device: torch.device
                  ) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Noise (B, *shape) with item i drawn from ``torch.Generator("cpu").manual_seed(seeds[i])``,
    and those generators (for the stochastic samplers' later draws)."""
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators])
    return noise.to(device), generators  # (B, *shape)


def skipped_steps(steps: int, strength: float, from_image: bool) -> int:
    """Steps of an ``steps``-step schedule that img2img / inpainting skip: they start
    ``strength`` of the way from the clean image (SDEdit, Meng et al. 2022)."""
    return steps - min(int(steps * strength), steps) if from_image else 0


@torch.no_grad()
def denoise(model: Model, sampler: Sampler, noise: torch.Tensor, steps: int,
            generators: list[torch.Generator], init: torch.Tensor | None = None,
            strength: float = 1.0, mask: torch.Tensor | None = None,
            callback: StepCallback | None = None, fallback: Model | None = None
            ) -> torch.Tensor:
    """Run ``sampler`` for ``steps`` steps from ``noise`` (B, C, h, w); returns latents.

    Args:
        model: the denoiser ``model(x, t)``, e.g. a guided U-Net.
        sampler: a fresh sampler on the model's noise schedule.
        noise: initial noise (see :func:`initial_noise`).
        steps: sampler steps of the full schedule.
        generators: one CPU generator per item, for stochastic samplers.
        init: clean latents (1 or B, C, h, w) to start from (img2img, inpainting): noised to
            ``strength`` of the schedule, then denoised (the first steps are skipped).
        mask: (1, 1, h, w), 1 = repaint; elsewhere ``init``, noised to the next step's level,
            replaces the latent after every step (latent blending, as in RePaint / SD's
            legacy inpainting).
        callback: ``callback(i, t, x)`` after each step; returning False cancels.
        fallback: the same denoiser computing in fp32, for a ``model`` that computes in lower
            precision: a step whose prediction is NaN/Inf is recomputed with it (once per
            step; a UserWarning at the first one). None: no retry.

    Raises:
        NonFiniteError: a prediction (after the fallback) or the latents after a step hold
            NaN/Inf; the message names the step.
    """
    sampler.set_timesteps(steps)
    timesteps = sampler.timesteps[skipped_steps(steps, strength, init is not None):]
    if init is None:
        x = noise * sampler.init_noise_sigma  # (B, C, h, w)
    else:
        init = init.expand(len(noise), -1, -1, -1)
        x = sampler.add_noise(init, noise, timesteps[:1]) if len(timesteps) else init
    recomputed = False  # warn at the first fp32 recomputation only
    for i, t in enumerate(timesteps):
        step = f"step {i + 1} of {len(timesteps)}"
        x_in, t_in = sampler.scale_model_input(x, t), t.to(x.device)
        out = model(x_in, t_in)  # (B, C, h, w)
        if fallback is not None and not is_finite(out):  # before the step: it can't be undone
            if not recomputed:
                warnings.warn(f"{step}: the model's prediction overflowed to NaN/Inf in reduced "
                              "precision and was recomputed in fp32 (so are any later steps "
                              "that overflow); use dtype='fp32' to compute in fp32 throughout",
                              UserWarning, stacklevel=3)
            recomputed = True
            out = fallback(x_in, t_in)
        _check_step(out, f"{step} (the model's prediction)")
        x = sampler.step(out.float(), t, x, generator=generators)
        _check_step(x, f"{step} (the latents after the sampler step)")
        if mask is not None:  # keep the known region: the original at the next level
            known = sampler.add_noise(init, noise, timesteps[i + 1:i + 2]) \
                if i + 1 < len(timesteps) else init
            x = mask * x + (1 - mask) * known
        if callback is not None and callback(i, int(t), x) is False:
            raise GenerationCancelled(f"cancelled at {step}")
    return x


def _check_step(x: torch.Tensor, where: str) -> None:
    """A :class:`NonFiniteError` naming ``where`` if ``x`` holds NaN/Inf."""
    if not is_finite(x):
        raise NonFiniteError(
            f"sampling produced NaN/Inf at {where}; the model's inputs may be too large for "
            "it (e.g. a guidance scale far above the usual 1 to 15), or its weights hold "
            "NaN/Inf (a damaged or badly converted checkpoint)")
