"""Zero-shot classification, text<->image retrieval and CLIP score with a CLIP model.

Zero-shot (Radford et al., 2021, sec. 3.1.4): each class name is written into prompt
templates, the normalised text embeddings of a class's prompts are averaged (prompt
ensembling) and re-normalised; an image is assigned the class whose embedding has the
largest cosine with the image embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")


@torch.no_grad()
def class_embeddings(model: nn.Module, tokenize: Callable[[Sequence[str]], torch.Tensor],
                     class_names: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """One normalised text embedding per class, averaged over templates: (C, D).

    Args:
        model: a CLIP model (``encode_text``).
        tokenize: captions -> token ids.
        class_names: the C class names.
        templates: format strings with one ``{}`` for the class name.
    """
    if not class_names or not templates:
        raise ValueError("zero-shot needs at least one class name and one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' for the class name: {bad}")
    device = next(model.parameters()).device
    prompts = [t.format(c) for c in class_names for t in templates]
    emb = model.encode_text(tokenize(prompts).to(device), normalize=True)  # (C*T, D)
    emb = emb.view(len(class_names), len(templates), -1).mean(1)  # (C, D)
    return F.normalize(emb, dim=-1)


@torch.no_grad()
def encode_images(model: nn.Module, images: torch.Tensor, batch_size: int = 256
                  ) -> torch.Tensor:
    """Normalised image embeddings (N, D) of model-ready images (N, 3, H, W), in batches."""
    device = next(model.parameters()).device
    return torch.cat([model.encode_image(images[i:i + batch_size].to(device), normalize=True)
                      for i in range(0, len(images), batch_size)]).cpu()


@torch.no_grad()
def encode_texts(model: nn.Module, tokenize: Callable[[Sequence[str]], torch.Tensor],
                 captions: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Normalised text embeddings (N, D) of ``captions``, in batches, on the CPU."""
    device = next(model.parameters()).device
    return torch.cat([model.encode_text(tokenize(captions[i:i + batch_size]).to(device),
                                        normalize=True).cpu()
                      for i in range(0, len(captions), batch_size)])


@torch.no_grad()
def zero_shot(model: nn.Module, tokenize: Callable[[Sequence[str]], torch.Tensor],
              images: torch.Tensor, class_names: Sequence[str],
              templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """Class probabilities (N, C) for model-ready ``images`` (N, 3, H, W).

    Args:
        model: a CLIP model.
        tokenize: captions -> token ids.
        images: preprocessed images.
        class_names: the C class names.
        templates: prompt templates (one ``{}`` each), averaged per class.
    """
    classes = class_embeddings(model, tokenize, class_names, templates).cpu()  # (C, D)
    scale = model.logit_scale.exp().item()
    return (scale * encode_images(model, images) @ classes.t()).softmax(-1)  # (N, C)


def retrieve(query: torch.Tensor, index: torch.Tensor, k: int = 5
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine matches of normalised ``query`` (Q, D) in ``index`` (N, D).

    Returns:
        (scores (Q, k), indices (Q, k)), best first.
    """
    k = min(k, len(index))
    return (query @ index.t()).topk(k, dim=-1)
