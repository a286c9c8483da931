"""What every latent-diffusion pipeline shares, whatever conditions its denoiser (text for
:class:`~mmgen.diffusion.pipeline.TextToImagePipeline`, a class label for
:class:`~mmgen.dit.pipeline.ClassConditionalPipeline`): a denoiser network (a U-Net or a DiT)
and an AutoencoderKL, the device and compute precision, the weights' hash recorded in every
image, batch-invariant CPU kernels, the denoiser call, checked decoding and the progress bar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from PIL import Image
from tqdm.auto import tqdm

from mmgen.device import (
    autocast,
    batch_invariant_kernels,
    prefers_channels_last,
    resolve_device,
    resolve_dtype,
)
from mmgen.diffusion.denoise import NonFiniteError, StepCallback, is_finite
from mmgen.pipeline import Pipeline, weights_hash


class LatentDiffusionPipeline(Pipeline):
    """Base of the latent-diffusion pipelines. A subclass names its denoiser component in
    ``denoiser_name`` (which must be in ``components``), holds ``vae``, ``config`` and
    ``batch_invariant``, and calls ``self.to(device, dtype)`` last in ``__init__``."""

    denoiser_name: ClassVar[str]  # the component that predicts the noise ("unet", "dit")
    vae: torch.nn.Module
    batch_invariant: bool
    _hash: str | None = None  # model_hash, computed once per instance

    @property
    def denoiser(self) -> torch.nn.Module:
        """The noise-predicting network (U-Net or DiT)."""
        return getattr(self, self.denoiser_name)

    def to(self, device: str | torch.device = "cpu",
           dtype: str | torch.dtype = "fp32") -> LatentDiffusionPipeline:
        """Move the networks to ``device`` and set the compute precision (weights stay fp32;
        reduced precision runs through autocast)."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        fmt = torch.channels_last if prefers_channels_last(self.device) else torch.contiguous_format
        for net in (self.denoiser, self.vae):
            net.to(self.device, memory_format=fmt).eval()
        for name in self.components:  # the others (a text encoder): as they are
            if name not in (self.denoiser_name, "vae"):
                getattr(self, name).to(self.device).eval()
        return self

    @property
    def latent_factor(self) -> int:
        return int(self.vae.latent_factor)

    @property
    def model_hash(self) -> str:
        """First 10 hex digits of the SHA-256 of the denoiser's weights (sorted names +
        bytes)."""
        if self._hash is None:
            self._hash = weights_hash(self.denoiser)
        return self._hash

    def _kernels(self) -> contextlib.AbstractContextManager:
        """Batch-invariant convolution kernels on the CPU (see ``batch_invariant``)."""
        return batch_invariant_kernels(self.device, self.batch_invariant)

    def _denoiser_call(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor:
        """The denoiser's noise prediction (B, C, h, w) in fp32, computed in ``dtype``
        (autocast); a learned-sigma DiT's variance channels (after the first C) are dropped."""
        with autocast(self.device, dtype):
            return self.denoiser(x, t, cond)[:, :x.shape[1]].float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> list[Image.Image]:
        """Scaled latents (N, C, h, w) -> PIL images; a ``NonFiniteError`` if the latents or
        the decoded pixels hold NaN/Inf (never a black image)."""
        vc = self.vae.config
        if not is_finite(latents):
            raise NonFiniteError("decode_latents got latents holding NaN/Inf; pass the finite "
                                 "latents of a sampling run")
        with autocast(self.device, self.dtype):
            pixels = self.vae.decode(latents / vc.scaling_factor + vc.shift_factor).float()
        if not is_finite(pixels):
            raise NonFiniteError("decoding the latents produced NaN/Inf pixels; the VAE's "
                                 "weights may hold NaN/Inf (a damaged or badly converted "
                                 "checkpoint)")
        arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, 3, H, W)
        return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arr]

    @staticmethod
    def _progress(total: int, progress: bool, callback: StepCallback | None
                  ) -> tuple[tqdm, Callable[[int, int, torch.Tensor], Any]]:
        """A progress bar over ``total`` image-steps (images x sampler steps), and the step
        callback that advances it by the batch's images and then calls ``callback`` (whose
        False cancels)."""
        bar = tqdm(total=total, desc="generate", disable=not progress, unit="image-step",
                   leave=False)

        def on_step(i: int, t: int, x: torch.Tensor) -> Any:
            bar.update(len(x))
            return None if callback is None else callback(i, t, x)

        return bar, on_step
