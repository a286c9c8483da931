"""Classifier-free guidance (Ho & Salimans, 2022) as a wrapper around a denoiser.

The network stays pure (``unet(x, t, context) -> prediction``); guidance is a function of two
of its predictions, made in one batched forward pass:

    out = uncond + scale * (cond - uncond)

``uncond`` is the prediction for the empty (or negative) prompt. Guidance rescale (Lin et al.
2023, "Common Diffusion Noise Schedules and Sample Steps Are Flawed", eq. 15-16) pulls the
standard deviation of the guided prediction back towards the conditional one, which fixes
over-exposure at high scales:

    out = phi * out * std(cond) / std(out) + (1 - phi) * out
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# denoiser(x_t (B, C, h, w), t (B,), context (B, L, D)) -> prediction (B, C, h, w)
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class GuidedDenoiser:
    """``model(x, t)`` of a conditional denoiser with classifier-free guidance.

    Args:
        denoiser: the network, called as ``denoiser(x, t, context)``.
        cond: text context of the prompts (B, L, D).
        uncond: context of the negative / empty prompts (B, L, D); None disables guidance.
        scale: guidance scale (>= 0); 1 returns the conditional prediction, 0 the
            unconditional one.
        rescale: guidance rescale factor phi in [0, 1]; 0 is plain CFG.
    """

    def __init__(self, denoiser: Denoiser, cond: torch.Tensor, uncond: torch.Tensor | None,
                 scale: float, rescale: float = 0.0):
        if scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {scale}")
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"guidance rescale must be in [0, 1], got {rescale}")
        if uncond is not None and uncond.shape != cond.shape:
            raise ValueError(f"negative context {tuple(uncond.shape)} must have the prompt "
                             f"context's shape {tuple(cond.shape)}")
        self.denoiser, self.cond, self.uncond = denoiser, cond, uncond
        self.scale, self.rescale = float(scale), float(rescale)

    @property
    def guided(self) -> bool:
        """Whether a step needs the unconditional prediction (two passes, batched as one)."""
        return self.uncond is not None and self.scale != 1.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.dim() == 0 else t  # (B,)
        if not self.guided:
            return self.denoiser(x, t, self.cond)
        both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]),
                             torch.cat([self.uncond, self.cond]))  # (2B, C, h, w)
        uncond, cond = both.float().chunk(2)  # (B, C, h, w) each
        out = uncond + self.scale * (cond - uncond)
        if self.rescale > 0:
            dims = list(range(1, out.dim()))
            rescaled = out * cond.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True)
            out = self.rescale * rescaled + (1 - self.rescale) * out
        return out.to(x.dtype)
