"""Training objective of a diffusion model (Ho et al. 2020, algorithm 1): noise a clean batch
to a uniformly drawn timestep and regress the network's prediction onto the target of the
schedule's parametrisation (eps, v or x0):

    t ~ U{0, ..., T-1},  eps ~ N(0, I),  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    loss = mean_i  w_i * |model(x_t, t, context) - target|^2_i / (C H W)

Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
Strategy") weights sample i by min(SNR_t, gamma) in x0-space, which becomes

    eps: min(SNR, gamma) / SNR      v: min(SNR, gamma) / (SNR + 1)      x0: min(SNR, gamma)

for the other parametrisations (their losses are SNR and SNR + 1 times the x0 loss). Offset
noise (Guttenberg 2023, "Diffusion with Offset Noise") adds a per-channel constant to eps so
that the model learns to change an image's mean brightness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmgen.diffusion.schedule import NoiseSchedule


@dataclass
class DiffusionObjective:
    """``objective(model, batch)`` for :class:`mmgen.train.Trainer`; ``batch`` is a dict with
    ``"x0"`` (B, C, H, W) and optionally ``"context"`` (B, L, D); the model is called as
    ``model(x_t, t, context)`` (or ``model(x_t, t)`` without context)."""

    schedule: NoiseSchedule  # the noise schedule and prediction type to train
    min_snr_gamma: float = 0.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = off
    offset_noise: float = 0.0  # std of the per-(sample, channel) offset added to eps; 0 = off

    def __post_init__(self) -> None:
        if self.min_snr_gamma < 0:
            raise ValueError(f"min_snr_gamma must be >= 0 (0 = off), got {self.min_snr_gamma}")
        if self.offset_noise < 0:
            raise ValueError(f"offset_noise must be >= 0 (0 = off), got {self.offset_noise}")

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if not isinstance(batch, dict) or "x0" not in batch:
            raise ValueError("DiffusionObjective expects a batch dict with an 'x0' tensor "
                             "(B, C, H, W) and optionally 'context' (B, L, D)")
        x0 = batch["x0"]  # (B, C, H, W)
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.num_train_timesteps, (b,), device=x0.device)  # (B,)
        noise = self.noise_like(x0)  # (B, C, H, W)
        x_t = self.schedule.add_noise(x0, noise, t)  # (B, C, H, W)
        context = batch.get("context")
        pred = model(x_t, t) if context is None else model(x_t, t, context)
        target = self.schedule.target(x0, noise, t)  # (B, C, H, W)
        per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
        mse = per_sample.mean()
        if self.min_snr_gamma <= 0:
            return {"loss": mse}
        loss = (self.loss_weights(t) * per_sample).mean()
        return {"loss": loss, "mse": mse.detach()}

    def noise_like(self, x0: torch.Tensor) -> torch.Tensor:
        """eps ~ N(0, I), plus ``offset_noise`` * N(0, 1) per (sample, channel)."""
        noise = torch.randn_like(x0)
        if self.offset_noise > 0:
            offset = torch.randn(x0.shape[0], x0.shape[1], *[1] * (x0.dim() - 2),
                                 device=x0.device, dtype=x0.dtype)  # (B, C, 1, 1)
            noise = noise + self.offset_noise * offset
        return noise

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Min-SNR-gamma weights (B,) of timesteps ``t`` (B,) for the prediction type."""
        snr = self.schedule.snr(t.cpu()).to(t.device)  # (B,)
        clipped = torch.clamp(snr, max=self.min_snr_gamma)  # min(SNR, gamma)
        kind = self.schedule.prediction_type
        if kind == "eps":
            return clipped / snr
        if kind == "v":
            return clipped / (snr + 1)
        return clipped


@dataclass
class TextConditionedObjective:
    """The diffusion objective on ``{"latent": (B, C, h, w), "caption": [B str]}`` batches:
    captions go through a frozen text encoder (in fp32, as at sampling time; its
    ``encode_context`` is what the network cross-attends to); each is replaced by "" with
    probability ``dropout`` (classifier-free guidance training, Ho & Salimans 2022)."""

    objective: DiffusionObjective  # the loss on (x0, context)
    text_encoder: nn.Module  # frozen; encode_context(tokens) -> (B, L, D)
    tokenizer: Any  # captions -> token ids (B, L)
    dropout: float = 0.1  # probability of training on the empty caption

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        x0 = batch["latent"]  # (B, C, h, w)
        drop = (torch.rand(len(batch["caption"])) < self.dropout).tolist()
        captions = ["" if d else c for c, d in zip(batch["caption"], drop, strict=True)]
        with torch.no_grad(), torch.autocast(x0.device.type, enabled=False):
            tokens = self.tokenizer(captions).to(x0.device)
            context = self.text_encoder.encode_context(tokens)  # (B, L, D)
        return self.objective(model, {"x0": x0, "context": context})
