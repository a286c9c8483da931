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
from mmgen.fast import compiled as fast_compiled
from mmgen.fast import fast_dtype
from mmgen.fast import prepare as fast_prepare
from mmgen.pipeline import Pipeline, weights_hash


class LatentDiffusionPipeline(Pipeline):
    """Base of the latent-diffusion pipelines. A subclass names its denoiser component in
    ``denoiser_name`` (which must be in ``components``), holds ``vae``, ``config`` and
    ``batch_invariant``, and calls ``self.to(device, dtype)`` last in ``__init__``."""

    denoiser_name: ClassVar[str]  # the component that predicts the noise ("unet", "dit")
    vae: torch.nn.Module
    batch_invariant: bool
    _hash: str | None = None  # model_hash, computed once per instance
    fast: bool = False  # enable_fast() was called: weights in self.dtype (mmgen.fast)
    _compiled: dict[str, Callable] = {}  # torch.compile'd calls by name (enable_fast)

    @property
    def denoiser(self) -> torch.nn.Module:
        """The noise-predicting network (U-Net or DiT)."""
        return getattr(self, self.denoiser_name)

    def to(self, device: str | torch.device = "cpu",
           dtype: str | torch.dtype = "fp32") -> LatentDiffusionPipeline:
        """Move the networks to ``device`` and set the compute precision (weights stay fp32;
        reduced precision runs through autocast). After :meth:`enable_fast`, ``dtype`` is
        ignored: the networks stay on the fast path, in its dtype for ``device``."""
        self.device = resolve_device(device)
        if self.fast:  # stays on the fast path: its dtype on the new device
            self.dtype = fast_dtype(self.device)
            for name in self.components:
                fast_prepare(getattr(self, name), self.device, self.dtype)
            return self
        self.dtype = resolve_dtype(dtype, self.device)
        fmt = torch.channels_last if prefers_channels_last(self.device) else torch.contiguous_format
        for net in (self.denoiser, self.vae):
            net.to(self.device, memory_format=fmt).eval()
        for name in self.components:  # the others (a text encoder): as they are
            if name not in (self.denoiser_name, "vae"):
                getattr(self, name).to(self.device).eval()
        return self

    def enable_fast(self, compile: bool = False) -> LatentDiffusionPipeline:
        """Switch to the fast inference path (:mod:`mmgen.fast`): every network's weights in
        bf16 where the hardware computes it natively (cast in place, once), channels_last,
        fused q/k/v projections, tiled attention on the CPU and oneDNN's kernels instead of
        the batch-invariant ones. ``compile=True`` adds ``torch.compile`` of the denoiser and
        the VAE decoder (the first call per image size compiles; a persistent cache serves
        later processes). A seed then gives the same image at the same batch size, and
        images differ from the exact path's by bf16 rounding (docs/performance.md). The
        exact fp32 weights are not kept: load the model again to go back. Returns self."""
        _ = self.model_hash  # of the weights as loaded, before they are cast
        self.batch_invariant = False
        self.fast = True
        self.to(self.device)  # on the fast path: prepares every network
        self._compiled = {}
        if compile:
            self._compiled = {"denoiser": fast_compiled(self.denoiser),
                              "decode": fast_compiled(self.vae.decode)}
        return self

    def _precision(self, dtype: torch.dtype) -> contextlib.AbstractContextManager:
        """Autocast to ``dtype`` on the exact path; nothing on the fast path, whose weights
        already are in ``self.dtype`` (its callers cast their inputs)."""
        return contextlib.nullcontext() if self.fast else autocast(self.device, dtype)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as a network input: a float tensor in the fast path's weight dtype."""
        return x.to(self.dtype) if self.fast and x.is_floating_point() else x

    @property
    def fp32_fallback(self) -> bool:
        """Whether a sampling step that overflows in reduced precision is recomputed in fp32
        (autocast only: the fast path's weights are bf16, whose range is fp32's)."""
        return self.dtype != torch.float32 and not self.fast

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
        denoiser = self._compiled.get("denoiser", self.denoiser)
        with self._precision(dtype):
            return denoiser(self._input(x), t, self._input(cond))[:, :x.shape[1]].float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> list[Image.Image]:
        """Scaled latents (N, C, h, w) -> PIL images; a ``NonFiniteError`` if the latents or
        the decoded pixels hold NaN/Inf (never a black image)."""
        vc = self.vae.config
        if not is_finite(latents):
            raise NonFiniteError("decode_latents got latents holding NaN/Inf; pass the finite "
                                 "latents of a sampling run")
        decode = self._compiled.get("decode", self.vae.decode)
        with self._precision(self.dtype):
            pixels = decode(self._input(latents / vc.scaling_factor + vc.shift_factor)).float()
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
