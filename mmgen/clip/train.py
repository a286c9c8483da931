"""Contrastive training of CLIP (Radford et al., 2021): the symmetric InfoNCE objective.

For a batch of N (image, caption) pairs with L2-normalised embeddings I (N, D) and T (N, D)
and learnable temperature ``t = exp(logit_scale)``::

    logits = t * I @ T^T                      # (N, N); the diagonal holds the true pairs
    loss   = (CE(logits, arange(N)) + CE(logits^T, arange(N))) / 2

Negatives are the other pairs of the same process's micro-batch (no cross-process gather).

Several positives per row: when two pairs of a batch share a caption, or a caption names only
some attributes that several images have ("a red shape"), treating the other matches as
negatives teaches the model to tell apart what the text cannot. The batch may therefore carry
``positives`` (N, N) bool, ``positives[i, j]`` = caption j describes image i (by default:
identical caption strings). Each row's target is then uniform over its positives (soft-target
cross entropy, as in UniCL / SupCon); with only the diagonal this is exactly the loss above.
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
    (what :func:`caption_collate` makes of dataset items) or an ``(images, captions)`` pair;
    an optional ``"positives"`` (N, N) bool matrix marks extra matching pairs (module doc).
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
        positives = batch.get("positives") if isinstance(batch, dict) else None
        if positives is None:
            positives = same_caption(captions)
        pos = positives.to(logits.device, torch.float32)  # (N, N)
        if pos.shape != logits.shape or not bool(pos.diagonal().all()):
            raise ValueError("positives must be (N, N) with every pair matching itself")
        loss = (F.cross_entropy(logits.float(), pos / pos.sum(1, keepdim=True))
                + F.cross_entropy(logits.t().float(), pos.t() / pos.sum(0)[:, None])) / 2
        hit = pos.gather(1, logits.argmax(1, keepdim=True))  # image -> text top-1 in batch
        return {"loss": loss, "acc_i2t": hit.mean(), "scale": scale.detach()}


def same_caption(captions: Sequence[str]) -> torch.Tensor:
    """(N, N) bool: captions i and j are the same string."""
    ids = {c: k for k, c in enumerate(dict.fromkeys(captions))}
    idx = torch.tensor([ids[c] for c in captions])
    return idx[:, None] == idx[None, :]


def caption_collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images, keep captions as a list (the default collate would too, but this also
    drops non-tensor extras that do not batch)."""
    return {"image": torch.stack([it["image"] for it in items]),
            "caption": [it["caption"] for it in items]}
