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

A batch's 127 other captions rarely include an image's nearest neighbours in caption space
("a small orange circle" for a small orange square). :class:`CatalogueObjective` adds a
cross-entropy of each image over a fixed catalogue of captions (e.g. the canonical captions of
every attribute combination seen in training), so every step ranks each image against all of
them (a hard-negative term, in the spirit of NegCLIP, Yuksekgonul et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
        img, txt, scale = self.embed(model, batch)
        return self.contrast(img, txt, scale, batch)

    def embed(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, ...]:
        """Normalised image and caption embeddings (N, D) each, and the clamped logit scale."""
        images, captions = (batch["image"], batch["caption"]) if isinstance(batch, dict) \
            else batch
        tokens = self.tokenize(captions).to(images.device)  # (N, L)
        img = model.encode_image(images, normalize=True)  # (N, D)
        txt = model.encode_text(tokens, normalize=True)  # (N, D)
        return img, txt, model.logit_scale.exp().clamp(max=self.max_logit_scale)

    def contrast(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                 batch: Any) -> dict[str, torch.Tensor]:
        """The symmetric loss of the embeddings :meth:`embed` made of ``batch``."""
        logits = scale * img @ txt.t()  # (N, N)
        captions = batch["caption"] if isinstance(batch, dict) else batch[1]
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


@dataclass
class CatalogueObjective(ContrastiveObjective):
    """:class:`ContrastiveObjective` plus ``weight`` x the cross-entropy of each image over
    ``catalogue``, a fixed list of K captions described by ``catalogue_labels`` (K, A); the
    batch's ``labels`` (N, A) name each image's entry (the row with equal labels; images with
    none are left out of this term). With a frozen text tower the catalogue's embeddings are
    made once; otherwise at every step, with gradients."""

    catalogue: Sequence[str] = ()
    catalogue_labels: torch.Tensor | None = None  # (K, A)
    weight: float = 1.0
    _embeddings: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        labels = self.catalogue_labels
        if labels is None or labels.ndim != 2 or len(labels) != len(self.catalogue) \
                or not self.catalogue:
            raise ValueError("CatalogueObjective needs K captions and their labels (K, A)")
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        img, txt, scale = self.embed(model, batch)
        out = self.contrast(img, txt, scale, batch)
        catalogue = self.catalogue_embeddings(model).to(img.device)  # (K, D)
        labels = batch["labels"].to(img.device)  # (N, A)
        match = (labels[:, None, :] == self.catalogue_labels.to(img.device)).all(-1)  # (N, K)
        target = torch.where(match.any(1), match.float().argmax(1), -100)  # (N,)
        logits = scale * img.float() @ catalogue.float().t()  # (N, K)
        term = F.cross_entropy(logits, target, ignore_index=-100) if bool(match.any()) \
            else logits.new_zeros(())
        out["loss"] = out["loss"] + self.weight * term
        known = target >= 0
        out["catalogue_acc"] = (logits.argmax(1)[known] == target[known]).float().mean()
        return out

    def catalogue_embeddings(self, model: nn.Module) -> torch.Tensor:
        """Normalised embeddings (K, D) of the catalogue's captions."""
        frozen = not any(p.requires_grad for n, p in model.named_parameters()
                         if not n.startswith("visual.") and n != "logit_scale")
        if frozen and self._embeddings is not None:
            return self._embeddings
        device = next(model.parameters()).device
        with torch.set_grad_enabled(not frozen and torch.is_grad_enabled()):
            emb = model.encode_text(self.tokenize(list(self.catalogue)).to(device),
                                    normalize=True)  # (K, D)
        if frozen:
            self._embeddings = emb = emb.detach()
        return emb


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
