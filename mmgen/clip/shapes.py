"""CLIP for the Shapes benchmark: pictures of one object on a flat background, captions from a
vocabulary of 35 words. The options the bundled ``shapes-clip`` and ``shapes-t2i`` need live
here, as subclasses, so that the OpenAI / Stable Diffusion compatible configs of
:mod:`mmgen.clip.model` stay as those checkpoints are.

* :class:`ShapesCLIP` (:class:`ShapesCLIPConfig`): CLIP with, optionally, the colour-split image
  tower (:class:`ColorSplitVision` around the ViT) and a restricted vocabulary
  (:meth:`ShapesCLIP.with_vocabulary`).
* :class:`ShapesTextModel` (:class:`ShapesTextConfig`): its text tower alone, the text encoder
  of ``shapes-t2i``, with the restricted vocabulary and a choice of U-Net context.

Registered: ``clip/shapes-tiny`` (``clip/tiny`` with the conv stem: recipe
``shapes-clip-joint``), ``clip/shapes-tiny-color-split`` (the same with the colour-split
tower, reading exact renders: the experiment ``shapes-clip-exact``) and
``clip/shapes-tiny-robust-split`` (its reading of real images: recipe ``shapes-clip``, the
bundled model, with ``text_head="words"``).
State-dict keys are CLIP's, plus ``visual.vit.*``,
``visual.color.*`` and ``visual.color_proj.*`` for the colour-split tower (the ViT's keys under
``visual.vit.``), the ``token_map`` buffer for a restricted vocabulary and
``word_projection`` for the bag-of-words text head (``ShapesCLIPConfig.text_head="words"``,
the bundled ``shapes-clip``).

Shapes: N batch, S image side, C colour channels, E embedding, L text tokens, W text width,
K kept tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.clip.model import (
    CLIP,
    PRESETS,
    CLIPConfig,
    CLIPTextModel,
    TextConfig,
    VisionConfig,
    VisionOutput,
    VisionTransformer,
)
from mmgen.registry import register_presets

CONTEXTS = ("last", "last+input")
TEXT_HEADS = ("eot", "words")
WORDS_HEAD_KEYS = ("word_projection",)  # the parameters of the "words" text head


# ----------------------------------------------------------------------------- configs


@dataclass
class ShapesCLIPConfig(CLIPConfig):
    color_split: bool = False  # True: the image tower is a ColorSplitVision around the ViT (it
    #   sees a colour-blind silhouette, a per-pixel MLP the colours; flat backgrounds only)
    color_width: int = 64  # with color_split: channels of the per-pixel colour MLP
    robust_split: bool = False  # with color_split: read silhouette and colours from a
    #   smoothed image against the border's median colour (robust to noise, JPEG and shifts;
    #   issue #24); False: against the top-left pixel, colours at every 4th pixel (the first
    #   bundled tower, which reads exact renders only)
    sharp_silhouette: bool = False  # with robust_split: the silhouette from the unsmoothed
    #   image (against the smoothed border's median colour); colours still read smoothed
    kept_tokens: int = 0  # > 0: a restricted vocabulary (ShapesCLIP.with_vocabulary):
    #   token_embedding has this many rows, read through the token_map buffer (ids -> rows;
    #   row 0 = every unknown id); 0 = the full BPE vocabulary
    text_head: str = "eot"  # how a caption becomes its embedding (ShapesCLIP.encode_text):
    #   "eot" (CLIP: the end-of-text state, projected) or "words" (the projected sum of the
    #   caption's token embeddings: a bag of words; the transformer is not run)

    def __post_init__(self) -> None:
        if self.text_head not in TEXT_HEADS:
            raise ValueError(f"ShapesCLIPConfig.text_head={self.text_head!r}; choose one of "
                             f"{TEXT_HEADS}")
        if self.kept_tokens < 0 or self.color_width < 1:
            raise ValueError(f"ShapesCLIPConfig: kept_tokens={self.kept_tokens} must be >= 0 "
                             f"(0 = the full vocabulary) and color_width={self.color_width} "
                             ">= 1")


@dataclass
class ShapesTextConfig(TextConfig):
    kept_tokens: int = 0  # > 0: a restricted vocabulary, as ShapesCLIPConfig.kept_tokens
    context: str = "last"  # what encode_context returns: "last" (the last hidden state) or
    #   "last+input" (that and the layer-normalised input embeddings, 2 * width channels)

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"ShapesTextConfig.context={self.context!r}; choose one of "
                             f"{CONTEXTS} (see ShapesTextModel.encode_context)")
        if self.kept_tokens < 0:
            raise ValueError(f"ShapesTextConfig.kept_tokens={self.kept_tokens}; use 0 for the "
                             "full vocabulary or the row count of a restricted one")


# ----------------------------------------------------------------------------- image tower


class ColorSplitVision(nn.Module):
    """An image tower that keeps shape and colour apart, for pictures of objects on a flat
    background (such as Shapes).

    The ViT sees only a colour-blind silhouette: each pixel's distance from the background's
    colour, divided by the image's largest, so an object looks the same in every colour. A
    per-pixel MLP reads the colours; its features are averaged over the silhouette (the
    object's colour) and over the rest (the background's), which says nothing of the object's
    shape. The embedding is the sum of the ViT's and the colours'
    projections. A discriminative tower that sees both at once learns the training set's
    colour -> shape statistics (purple is never a circle there) and misreads a shape in a
    colour it never had; this one cannot (docs/clip.md).

    Two readings (``robust``):

    * exact renders (False, the first bundled tower): the background is the top-left pixel's
      colour; the MLP reads every 4th pixel.
    * real images (True): the image is first smoothed (a 5x5 binomial filter, sigma 1 px),
      the background is the median colour of its border, and the MLP reads every pixel. A
      pixel's noise no longer moves the silhouette or the colour of a small object, and an
      object that covers the top-left corner no longer inverts it.

    Args:
        config: the ViT's architecture (it reads the silhouette).
        color_width: channels C of the per-pixel colour MLP.
        robust: the reading for real images.
        sharp_silhouette: with ``robust``, the silhouette from the unsmoothed image (small
            objects keep their corners), against the same background colour.
    """

    def __init__(self, config: VisionConfig, color_width: int = 64, robust: bool = False,
                 sharp_silhouette: bool = False):
        super().__init__()
        self.config, self.robust, self.sharp_silhouette = config, robust, sharp_silhouette
        self.vit = VisionTransformer(config)
        c = color_width
        self.color = nn.Sequential(nn.Conv2d(3, c, 1), nn.GELU(), nn.Conv2d(c, c, 1), nn.GELU())
        self.color_proj = nn.Linear(2 * c, config.embed_dim or config.width)
        taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
        self.register_buffer("smoothing", torch.outer(taps, taps).expand(3, 1, 5, 5).clone(),
                             persistent=False)  # (3, 1, 5, 5), one filter per channel

    def silhouette(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the images as this tower reads them: smoothed if robust, (N, 3, S, S); the
        silhouette in [0, 1], (N, 1, S, S)) of model-ready images (N, 3, S, S)."""
        images = images.to(self.color[0].weight.dtype)
        raw = images
        if self.robust:
            images = F.conv2d(F.pad(images, (2, 2, 2, 2), mode="replicate"),
                              self.smoothing.to(images.dtype), groups=3)  # (N, 3, S, S)
            border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0],
                                images[:, :, :, -1]], dim=2)  # (N, 3, 4S)
            background = border.median(dim=2).values[:, :, None, None]  # (N, 3, 1, 1)
        else:
            background = images[:, :, :1, :1]
        seen = raw if self.sharp_silhouette else images
        dist = (seen - background).norm(dim=1, keepdim=True)  # (N, 1, S, S)
        return images, dist / dist.amax((2, 3), keepdim=True).clamp(min=1e-6)  # 1: object

    def forward(self, images: torch.Tensor) -> VisionOutput:
        """Model-ready images (N, 3, S, S), as for :class:`VisionTransformer`."""
        images, mask = self.silhouette(images)  # (N, 3, S, S), (N, 1, S, S)
        out = self.vit((2 * mask - 1).expand(-1, 3, -1, -1))  # the silhouette in [-1, 1]
        if not self.robust:  # the colour MLP reads every 4th pixel
            step = (slice(None), slice(None), slice(1, None, 4), slice(1, None, 4))
            images, mask = images[step], mask[step]  # (N, 3, S/4, S/4), (N, 1, S/4, S/4)
        feats = self.color(images)  # (N, C, s, s)
        inside = (feats * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1e-6)  # (N, C)
        outside = (feats * (1 - mask)).sum((2, 3)) / (1 - mask).sum((2, 3)).clamp(min=1e-6)
        colors = self.color_proj(torch.cat([inside, outside], 1))  # (N, E)
        return VisionOutput(out.last_hidden_state, out.pooled, out.embeds + colors)

    def preprocess(self, images: Any) -> torch.Tensor:
        return self.vit.preprocess(images)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit.normalize_images(images)


# ----------------------------------------------------------------------------- vocabulary


def restrict_vocabulary(state: dict[str, torch.Tensor], vocab_size: int,
                        keep_tokens: Sequence[int]) -> tuple[dict[str, torch.Tensor], int]:
    """A text tower's ``state`` with the token embedding cut to ``keep_tokens``, and the new
    row count K (the ``kept_tokens`` of its config).

    Row 0 becomes the mean of the dropped rows, read for every unknown id; a ``token_map``
    (vocab_size,) maps ids to rows. Outputs for kept ids do not change.
    """
    kept = torch.tensor(sorted(set(int(t) for t in keep_tokens)))  # (K - 1,)
    if kept.numel() == 0 or kept.min() < 0 or kept.max() >= vocab_size:
        raise ValueError(f"keep_tokens must be ids in [0, {vocab_size})")
    table = state["token_embedding.weight"]  # (V, W)
    dropped = torch.ones(len(table), dtype=torch.bool)
    dropped[kept] = False
    unknown = table[dropped].mean(0, keepdim=True) if dropped.any() else table[:1] * 0
    token_map = torch.zeros(vocab_size, dtype=torch.long)
    token_map[kept] = torch.arange(1, len(kept) + 1)
    state = {**state, "token_embedding.weight": torch.cat([unknown, table[kept]]),  # (K, W)
             "token_map": token_map}
    return state, len(kept) + 1


# ----------------------------------------------------------------------------- models


class ShapesCLIP(CLIP):
    """CLIP with the Shapes options of :class:`ShapesCLIPConfig` (module docstring)."""

    config_class = ShapesCLIPConfig
    config: ShapesCLIPConfig

    def _build_towers(self, config: ShapesCLIPConfig) -> None:
        # CLIP's order (image tower, then text tower, then the words head): one seed gives
        # the same weights.
        self.visual = (ColorSplitVision(config.vision, config.color_width, config.robust_split,
                                        config.sharp_silhouette)
                       if config.color_split else VisionTransformer(config.vision))
        self._build_text_tower(config.text, config.kept_tokens)
        if config.text_head == "words":
            w = config.text.width
            self.word_projection = nn.Parameter(torch.empty(w, config.text.embed_dim))  # (W, E)
            nn.init.normal_(self.word_projection, std=w**-0.5)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embeddings (N, E) of token ids (N, L), by :attr:`ShapesCLIPConfig.text_head`.

        ``"words"``: the sum of the caption's token embeddings (start and end of text
        included, what follows not; no positional embedding, no transformer) times
        ``word_projection`` (W, E). A bag of words is all a Shapes caption needs (one object;
        colour, background and position words are distinct), and it is compositional by
        construction: the embedding of "a purple circle" is that of "purple" plus that of
        "circle" however rarely they met in training, as the colour-split image tower's is
        the sum of what it sees of the colour and of the shape (docs/clip.md)."""
        if self.config.text_head == "eot":
            return super().encode_text(tokens, normalize)
        rows = self._embedding_rows(tokens)  # (N, L)
        length = torch.arange(tokens.shape[1], device=tokens.device)  # (L,)
        real = length[None, :] <= self._pool_index(tokens)[:, None]  # (N, L): up to EOT
        words = (self.token_embedding(rows) * real[..., None]).sum(1)  # (N, W)
        embeds = words @ self.word_projection.to(words.dtype)  # (N, E)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def _text_state(self) -> dict[str, torch.Tensor]:
        # the words head is not part of the text tower (shapes-t2i's text encoder)
        return {k: v for k, v in super()._text_state().items() if k not in WORDS_HEAD_KEYS}

    def with_vocabulary(self, keep_tokens: Sequence[int]) -> ShapesCLIP:
        """A copy whose vocabulary is restricted to ``keep_tokens`` (all other ids map to one
        "unknown" row, the mean of the dropped rows; encoding one warns). A model trained on
        a small caption vocabulary learned nothing about the other 49k rows, so this shrinks
        the token embedding (12.6 MB of fp16 at width 128) to a few kB without changing any
        output for known tokens."""
        if self.config.kept_tokens:
            raise ValueError("the vocabulary is already restricted")
        state, kept = restrict_vocabulary(self.state_dict(), self.config.text.vocab_size,
                                          keep_tokens)
        model = type(self)(replace(self.config, kept_tokens=kept))
        model.load_state_dict(state, strict=True)
        model.info = dict(self.info or {})
        model.model_name = self.model_name
        return model

    def text_model(self, keep_tokens: Sequence[int] | None = None,
                   context: str = "last") -> ShapesTextModel:
        """The text tower as a stand-alone :class:`ShapesTextModel` (a copy of its weights),
        e.g. the text encoder of a text-to-image pipeline.

        Args:
            keep_tokens: restrict the vocabulary to these token ids (see
                :meth:`with_vocabulary`). On a model whose vocabulary is already restricted,
                they must be among its tokens, and the tower keeps that vocabulary.
            context: what its ``encode_context`` returns (:class:`ShapesTextConfig`).
        """
        state, kept = self._text_state(), self.config.kept_tokens
        if keep_tokens is not None and not kept:
            state, kept = restrict_vocabulary(state, self.config.text.vocab_size, keep_tokens)
        elif keep_tokens is not None and self.unknown_tokens(torch.tensor(list(keep_tokens))
                                                             ).any():
            raise ValueError("keep_tokens has ids outside this model's restricted vocabulary")
        config = ShapesTextConfig(**asdict(self.config.text), kept_tokens=kept, context=context)
        text = ShapesTextModel(config)
        text.load_state_dict(state, strict=True)
        text.info = {"text_tower_of": self.model_name}
        return text


class ShapesTextModel(CLIPTextModel):
    """The text tower of a :class:`ShapesCLIP` alone: a restricted vocabulary and the U-Net
    context of :attr:`ShapesTextConfig.context` (:meth:`encode_context`)."""

    config_class = ShapesTextConfig
    config: ShapesTextConfig

    def _build_towers(self, config: ShapesTextConfig) -> None:
        self._build_text_tower(config, config.kept_tokens)

    @property
    def context_dim(self) -> int:
        """Channels D of :meth:`encode_context`: W, or 2W for ``"last+input"``."""
        width = self.text_config.width
        return 2 * width if self.config.context == "last+input" else width

    def encode_context(self, tokens: torch.Tensor) -> torch.Tensor:
        """The U-Net context (N, L, D) of token ids (N, L): the last hidden state (D = W) for
        ``context="last"``; for ``"last+input"`` that and the layer-normalised input
        embeddings (D = 2W).

        A causal text tower's state at "circle" in "a purple circle" has read "purple": for a
        colour-shape pair never seen in training it is a new vector. The input embedding of
        "circle" is the same in every caption, which gives the U-Net one clean cue per word.
        """
        out = self.encode_text_states(tokens)
        if self.config.context == "last":
            return out.last_hidden_state  # (N, L, W)
        inputs = F.layer_norm(out.input_embeds, (self.text_config.width,))  # (N, L, W)
        return torch.cat([out.last_hidden_state, inputs], dim=-1)  # (N, L, 2W)


# ----------------------------------------------------------------------------- presets


_TINY = PRESETS["tiny"]
_SHAPES_TINY = ShapesCLIPConfig(replace(_TINY.vision, stem="conv"), _TINY.text,
                                _TINY.init_logit_scale)
SHAPES_PRESETS: dict[str, ShapesCLIPConfig] = {
    # clip/tiny with the conv stem: both towers of recipe shapes-clip-joint
    "shapes-tiny": _SHAPES_TINY,
    # the same with the colour-split image tower for exact renders (shapes-clip-exact)
    "shapes-tiny-color-split": replace(_SHAPES_TINY, color_split=True),
    # ... reading real images: recipe shapes-clip (the bundled model, with text_head="words")
    "shapes-tiny-robust-split": replace(_SHAPES_TINY, color_split=True, robust_split=True),
}
register_presets("clip", SHAPES_PRESETS, ShapesCLIP)
