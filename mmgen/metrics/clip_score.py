"""CLIP score (Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning"): how well generated images match their prompts.

    CLIPScore(image, text) = w · max(cos(E_image, E_text), 0)

averaged over image-text pairs, with w = 100 as in torchmetrics and the text-to-image literature
(Hessel et al. use w = 2.5). The clamp is per pair, as in the paper; torchmetrics clamps the
average instead, which gives the same number whenever no pair has a negative cosine.

Any CLIP works: an object with ``encode_image(images) -> (B, D)`` and
``encode_text(texts) -> (B, D)``. Images reach ``encode_image`` as float ``(B, 3, H, W)`` in
``[0, 1]``, so resizing and normalisation are the model's job; texts are passed as a list of
strings, or through ``tokenizer`` first if one is given. An mmgen CLIP model is one through
:class:`ScoringCLIP`: ``clip_score(images, prompts, ScoringCLIP(mmgen.load("shapes-clip")))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmgen.metrics.features import count_batches, eval_mode, iter_image_batches, module_device
from mmgen.metrics.result import MetricResult

# CLIP score as usually reported (torchmetrics, text-to-image papers); the paper's w is 2.5.
CLIP_SCORE_WEIGHT = 100.0


class CLIPModel(Protocol):
    """The two methods :func:`clip_score` needs."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, texts: Any) -> torch.Tensor: ...


class ScoringCLIP(torch.nn.Module):
    """An mmgen CLIP (``mmgen.load("shapes-clip")``, ``from_open_clip(...)``) as a
    :class:`CLIPModel`: images in [0, 1] of any size are resized and normalised with the
    model's ``preprocess``, strings tokenized with its ``tokenize``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, E)
        return self.model.encode_image(self.model.preprocess(images))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:  # N strings -> (N, E)
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.model.tokenize(list(texts)).to(device))


def clip_score_from_embeddings(image_embeds: torch.Tensor, text_embeds: torch.Tensor
                               ) -> MetricResult:
    """Mean of ``100 · max(cos, 0)`` over paired embeddings.

    Args:
        image_embeds: ``(N, D)`` image embeddings (need not be normalised).
        text_embeds: ``(N, D)`` embeddings of the matching texts.
    """
    if image_embeds.ndim != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(f"image and text embeddings must both be (N, D), got "
                         f"{tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}")
    cos = F.cosine_similarity(image_embeds.double(), text_embeds.double(), dim=1)  # (N,)
    scores = CLIP_SCORE_WEIGHT * cos.clamp(min=0)
    return MetricResult("CLIPScore", float(scores.mean()), n=image_embeds.shape[0])


@torch.no_grad()
def clip_score(images: Any, texts: Sequence[str], model: CLIPModel,
               tokenizer: Callable[[list[str]], Any] | None = None, batch_size: int = 64,
               progress: bool = True) -> MetricResult:
    """CLIP score of images against their prompts.

    Args:
        images: ``N`` images (tensor, PIL list or iterable of batches) in ``[0, 1]``.
        texts: the ``N`` prompts, in the same order.
        model: any object with ``encode_image`` and ``encode_text`` (see module docstring).
        tokenizer: turns a list of strings into what ``encode_text`` takes; without one the
            strings are passed as they are.
        batch_size: pairs per forward pass.
        progress: show a progress bar.
    """
    texts = list(texts)
    device = module_device(model)
    image_embeds, text_embeds, done = [], [], 0
    bar = tqdm(iter_image_batches(images, batch_size), total=count_batches(images, batch_size),
               desc="CLIP score", unit="batch", disable=not progress)
    with eval_mode(model):
        for batch in bar:
            chunk = texts[done:done + len(batch)]
            if len(chunk) != len(batch):
                raise ValueError(f"more images than texts: only {len(texts)} texts given")
            tokens = tokenizer(chunk) if tokenizer is not None else chunk
            if isinstance(tokens, torch.Tensor):
                tokens = tokens.to(device)
            image_embeds.append(model.encode_image(batch.to(device)).cpu())
            text_embeds.append(model.encode_text(tokens).cpu())
            done += len(batch)
    if done != len(texts):
        raise ValueError(f"got {done} images but {len(texts)} texts; pass one text per image")
    return clip_score_from_embeddings(torch.cat(image_embeds), torch.cat(text_embeds))

