"""Contrastive training of CLIP (Radford et al., 2021): the symmetric InfoNCE objective.

For a batch of N (image, caption) pairs with L2-normalised embeddings I (N, D) and T (N, D)
and learnable temperature ``t = exp(logit_scale)``::

    logits = t * I @ T^T                      # (N, N); the diagonal holds the true pairs
    loss   = (CE(logits, arange(N)) + CE(logits^T, arange(N))) / 2

Negatives are the other pairs of the same process's micro-batch (no cross-process gather).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Tokenizes a list of captions into (N, context) token ids.
Tokenize = Callable[[Sequence[str]], torch.Tensor]


@dataclass
class ContrastiveObjective:
    """``objective(model, batch)`` for :class:`mmgen.train.Trainer`.

    ``batch`` is ``{"image": (N, 3, H, W) model-ready tensor, "caption": list of N str}``
    (what :func:`caption_collate` makes of dataset items) or an ``(images, captions)`` pair.
    """

    tokenize: Tokenize  # captions -> token ids
    max_logit_scale: float = 100.0  # clamp of exp(logit_scale), as in the paper

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, captions = (batch["image"], batch["caption"]) if isinstance(batch, dict) \
            else batch
        tokens = self.tokenize(captions).to(images.device)  # (N, L)
        img = model.encode_image(images, normalize=True)  # (N, D)
        txt = model.encode_text(tokens, normalize=True)  # (N, D)
        scale = model.logit_scale.exp().clamp(max=self.max_logit_scale)
        logits = scale * img @ txt.t()  # (N, N)
        target = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        acc = (logits.argmax(1) == target).float().mean()  # image -> text top-1 in batch
        return {"loss": loss, "acc_i2t": acc, "scale": scale.detach()}


def caption_collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images, keep captions as a list (the default collate would too, but this also
    drops non-tensor extras that do not batch)."""
    return {"image": torch.stack([it["image"] for it in items]),
            "caption": [it["caption"] for it in items]}
