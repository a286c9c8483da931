"""CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): a ViT image tower and a causal Transformer text tower trained so that matching
(image, caption) pairs have the largest cosine similarity.

Parameter names are OpenAI's / open_clip's, so their state dicts load unchanged
(``visual.conv1.weight``, ``visual.transformer.resblocks.0.attn.in_proj_weight``,
``token_embedding.weight``, ``ln_final.weight``, ``text_projection``, ``logit_scale``, ...).
To keep the text tower's parameters at the top level, as OpenAI does, it is a base class
(:class:`TextTower`) of both :class:`CLIP` and the text-only :class:`CLIPTextModel` (Stable
Diffusion's text encoder); the image tower is the submodule ``visual`` of :class:`CLIP` and
of :class:`CLIPVisionModel`. Both towers use the same transformer
(:mod:`mmgen.clip.transformer`), whose attention runs through :func:`mmgen.nn.attention` (so
attention backends apply). Preprocessing is in :mod:`mmgen.clip.preprocess`; the Shapes
benchmark's variants (a colour-split image tower, a restricted vocabulary, a two-part text
context) are subclasses in :mod:`mmgen.clip.shapes`.

Shapes: N batch, L text tokens, P image patches, W tower width, E joint embedding size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.clip.preprocess import OPENAI_MEAN, OPENAI_STD, normalize_images, preprocess
from mmgen.clip.transformer import Transformer
from mmgen.registry import PretrainedModel, register_presets

ACTIVATIONS = ("quick_gelu", "gelu")
STEMS = ("patch", "conv")
POOLS = ("argmax", "eos")


# ----------------------------------------------------------------------------- configs


@dataclass
class VisionConfig:
    image_size: int = 224  # input side in pixels; sets the positional embedding's rows
    patch_size: int = 32  # side of a square patch (kernel and stride of conv1)
    width: int = 768  # transformer channels W
    layers: int = 12  # residual attention blocks
    heads: int = 12  # attention heads (OpenAI: width // 64)
    mlp_ratio: float = 4.0  # MLP hidden channels = round(width * mlp_ratio)
    activation: str = "quick_gelu"  # MLP activation: "quick_gelu" (OpenAI) or "gelu"
    embed_dim: int = 512  # output size of proj (the joint embedding); 0 = no projection
    image_mean: tuple[float, float, float] = OPENAI_MEAN  # per-channel mean of preprocessing
    image_std: tuple[float, float, float] = OPENAI_STD  # per-channel std of preprocessing
    stem: str = "patch"  # "patch": OpenAI's conv1 patchify; "conv": stride-2 3x3 convs first


@dataclass
class TextConfig:
    vocab_size: int = 49408  # token ids; the BPE tokenizer's start/end ids are 49406/49407
    context_length: int = 77  # maximum tokens; rows of the positional embedding
    width: int = 512  # transformer channels W
    layers: int = 12  # residual attention blocks
    heads: int = 8  # attention heads (OpenAI: width // 64)
    mlp_ratio: float = 4.0  # MLP hidden channels = round(width * mlp_ratio)
    activation: str = "quick_gelu"  # MLP activation: "quick_gelu" (OpenAI) or "gelu"
    embed_dim: int = 512  # output size of text_projection; 0 = no projection (SD encoder)
    pool: str = "argmax"  # pooled token: "argmax" of ids (OpenAI's EOT rule) or "eos"
    eos_token_id: int = 49407  # with pool="eos": pool at the first token with this id


@dataclass
class CLIPConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)  # the image tower
    text: TextConfig = field(default_factory=TextConfig)  # the text tower
    init_logit_scale: float = math.log(1 / 0.07)  # initial log temperature (paper, sec. 2.5)

    @property
    def embed_dim(self) -> int:
        """Size E of the joint embedding (both towers project to it)."""
        return self.text.embed_dim


def _check_tower(config: VisionConfig | TextConfig) -> None:
    name = type(config).__name__
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"{name}.activation={config.activation!r}; choose one of {ACTIVATIONS}")
    if config.width % config.heads:
        raise ValueError(f"{name}: width {config.width} is not divisible by heads "
                         f"{config.heads}; OpenAI models use heads = width // 64")
    if isinstance(config, TextConfig) and config.pool not in POOLS:
        raise ValueError(f"TextConfig.pool={config.pool!r}; choose one of {POOLS}")
    if isinstance(config, VisionConfig) and config.image_size % config.patch_size:
        raise ValueError(f"VisionConfig: image_size {config.image_size} is not a multiple "
                         f"of patch_size {config.patch_size}")
    if isinstance(config, VisionConfig) and config.stem not in STEMS:
        raise ValueError(f"VisionConfig.stem={config.stem!r}; choose one of {STEMS}")
    if isinstance(config, VisionConfig) and config.stem == "conv" and (
            config.patch_size < 2 or config.patch_size & (config.patch_size - 1)):
        raise ValueError(f"VisionConfig: the conv stem needs a power-of-two patch_size, got "
                         f"{config.patch_size}")


def _transformer(config: VisionConfig | TextConfig) -> Transformer:
    _check_tower(config)
    return Transformer(config.width, config.layers, config.heads, config.mlp_ratio,
                       config.activation)


class TextOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (N, L, W) every token after ln_final: diffusion context
    pooled: torch.Tensor  # (N, W) the token at the pooled position (end of text)
    embeds: torch.Tensor  # (N, E) pooled @ text_projection (= pooled without projection)
    # (N, L, W) token + position embeddings, the transformer's input (transformers'
    # hidden_states[0]): each token on its own, untouched by the words before it
    input_embeds: torch.Tensor | None = None


class VisionOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (N, 1 + P, W) transformer output, before ln_post
    pooled: torch.Tensor  # (N, W) ln_post of the class token
    embeds: torch.Tensor  # (N, E) pooled @ proj (= pooled without projection)


# ----------------------------------------------------------------------------- towers


class VisionTransformer(nn.Module):
    """The ViT image tower (Dosovitskiy et al., 2021) with OpenAI's extra ln_pre."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        w, grid = config.width, config.image_size // config.patch_size
        if config.stem == "patch":  # OpenAI: one linear projection per patch
            self.stem = None
            self.conv1 = nn.Conv2d(3, w, config.patch_size, stride=config.patch_size, bias=False)
        else:  # Xiao et al. 2021: log2(p) stride-2 3x3 convs, then a 1x1 projection to width
            self.stem = conv_stem(config.patch_size, w)
            self.conv1 = nn.Conv2d(self.stem[-3].out_channels, w, 1, bias=False)
        self.class_embedding = nn.Parameter(w**-0.5 * torch.randn(w))
        self.positional_embedding = nn.Parameter(w**-0.5 * torch.randn(grid * grid + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = _transformer(config)
        self.ln_post = nn.LayerNorm(w)
        e = config.embed_dim
        self.proj = nn.Parameter(w**-0.5 * torch.randn(w, e)) if e else None  # (W, E)
        self.transformer.init_weights()

    def forward(self, images: torch.Tensor) -> VisionOutput:
        """Model-ready images (N, 3, S, S) with S = image_size (see :meth:`preprocess`)."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"expected images of shape (N, 3, {size}, {size}) "
                             f"(VisionConfig.image_size), got {tuple(images.shape)}; "
                             "resize and normalise them with model.preprocess(...)")
        x = images.to(self.conv1.weight.dtype)  # (N, 3, S, S)
        if self.stem is not None:
            x = self.stem(x)  # (N, C, S/p, S/p)
        x = self.conv1(x)  # (N, W, S/p, S/p)
        x = x.flatten(2).transpose(1, 2)  # (N, P, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (N, 1, W)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (N, 1+P, W)
        x = self.transformer(self.ln_pre(x))  # (N, 1+P, W)
        pooled = self.ln_post(x[:, 0])  # (N, W) the class token
        embeds = pooled if self.proj is None else pooled @ self.proj  # (N, E)
        return VisionOutput(x, pooled, embeds)

    def preprocess(self, images: Any) -> torch.Tensor:
        """See :func:`preprocess`; uses this tower's image size, mean and std."""
        return preprocess(images, self.config)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """See :func:`normalize_images`; uses this tower's mean and std."""
        return normalize_images(images, self.config)


def conv_stem(patch_size: int, width: int) -> nn.Sequential:
    """log2(patch_size) blocks of stride-2 3x3 conv -> GroupNorm -> GELU, channels doubling
    up to ``width`` ("Early Convolutions Help Transformers See Better", Xiao et al. 2021).
    Non-linear features before tokenisation let a small ViT see shapes independently of
    their colour, which one linear patch projection does not."""
    layers: list[nn.Module] = []
    n = patch_size.bit_length() - 1
    c_in = 3
    for i in range(n):
        c = max(width >> (n - 1 - i), 16)  # ..., width/2, width
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.GELU()]
        c_in = c
    return nn.Sequential(*layers)


class ImageTower(nn.Module):
    """The methods of a model whose image tower is its submodule ``visual``."""

    visual: nn.Module  # a VisionTransformer, or a tower with its interface

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings (N, E) of model-ready images (N, 3, S, S); L2-normalised if
        ``normalize``."""
        embeds = self.visual(images).embeds  # (N, E)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL images or [0, 1] tensors -> model-ready (N, 3, S, S); see :func:`preprocess`."""
        return self.visual.preprocess(images)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images already at the model's size -> normalised model input."""
        return self.visual.normalize_images(images)


class TextTower(nn.Module):
    """The causal text transformer, as a base class so that its parameters sit at the top
    level of the model (OpenAI's ``token_embedding``, ``positional_embedding``,
    ``transformer``, ``ln_final``, ``text_projection``). Models call
    :meth:`_build_text_tower` in their ``__init__``."""

    text_config: TextConfig
    kept_tokens: int  # rows of a restricted vocabulary; 0 = the full vocabulary

    def _build_text_tower(self, config: TextConfig, kept_tokens: int = 0) -> None:
        """Build the tower's modules.

        Args:
            config: the tower's architecture.
            kept_tokens: > 0 for a restricted vocabulary (the Shapes models of
                :mod:`mmgen.clip.shapes`): ``token_embedding`` has this many rows, read
                through the ``token_map`` buffer (ids -> rows; row 0 = every unknown id).
        """
        self.text_config, self.kept_tokens = config, kept_tokens
        w, length = config.width, config.context_length
        self.token_embedding = nn.Embedding(kept_tokens or config.vocab_size, w)
        if kept_tokens:  # ids -> rows of the restricted vocabulary; 0 = unknown
            self.register_buffer("token_map", torch.zeros(config.vocab_size, dtype=torch.long))
        self.positional_embedding = nn.Parameter(torch.empty(length, w))
        self.transformer = _transformer(config)
        self.ln_final = nn.LayerNorm(w)
        e = config.embed_dim
        self.text_projection = nn.Parameter(torch.empty(w, e)) if e else None  # (W, E)
        # Token i may attend to tokens <= i (True = may attend), as in a language model.
        causal = torch.ones(length, length, dtype=torch.bool).tril()  # (L, L)
        self.register_buffer("attn_mask", causal, persistent=False)
        # open_clip's initialisation.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if self.text_projection is not None:
            nn.init.normal_(self.text_projection, std=w**-0.5)
        self.transformer.init_weights()

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids (N, context_length) of ``texts`` for this model (CLIP's BPE tokenizer,
        truncating with a warning; see :mod:`mmgen.clip.tokenizer`), on the CPU."""
        from mmgen.clip.tokenizer import tokenize

        return tokenize(texts, context_length=self.text_config.context_length)

    def encode_text_states(self, tokens: torch.Tensor) -> TextOutput:
        """Per-token hidden states (after ln_final), the pooled token and its embedding.

        Args:
            tokens: token ids (N, L), L <= context_length, from :mod:`mmgen.clip.tokenizer`.
        """
        n, length = tokens.shape
        if length > self.text_config.context_length:
            raise ValueError(f"got {length} tokens per text but context_length is "
                             f"{self.text_config.context_length}; tokenize with "
                             "model.tokenize(texts) or tokenize(texts, context_length="
                             f"{self.text_config.context_length})")
        rows = self._embedding_rows(tokens)  # (N, L)
        inputs = self.token_embedding(rows) + self.positional_embedding[:length]  # (N, L, W)
        x = self.transformer(inputs, self.attn_mask[:length, :length])  # (N, L, W)
        x = self.ln_final(x)  # (N, L, W)
        pooled = x[torch.arange(n, device=x.device), self._pool_index(tokens)]  # (N, W)
        embeds = pooled if self.text_projection is None else pooled @ self.text_projection
        return TextOutput(x, pooled, embeds, inputs)  # embeds: (N, E)

    def _embedding_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) rows of token_embedding for ids (N, L); warns about unknown ids."""
        if not self.kept_tokens:
            return tokens
        rows = self.token_map[tokens]  # (N, L)
        if bool((rows == 0).any()):
            warnings.warn(f"{int((rows == 0).sum())} token(s) are outside this model's "
                          f"{self.kept_tokens - 1}-token vocabulary (it knows only the words "
                          "it was trained on); they are read as one unknown token",
                          stacklevel=3)
        return rows

    def unknown_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) bool: ids outside a restricted vocabulary (all False for a full one)."""
        if not self.kept_tokens:
            return torch.zeros_like(tokens, dtype=torch.bool)
        return self.token_map[tokens] == 0

    def _pool_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N,) position of the end-of-text token in each row."""
        if self.text_config.pool == "argmax":  # EOT has the largest id of the vocabulary
            return tokens.argmax(dim=-1)
        # The first eos_token_id (padding may repeat it); position 0 when there is none.
        return (tokens == self.text_config.eos_token_id).int().argmax(dim=-1)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embeddings (N, E) of token ids (N, L); L2-normalised if ``normalize``."""
        embeds = self.encode_text_states(tokens).embeds  # (N, E)
        return F.normalize(embeds, dim=-1) if normalize else embeds


# ----------------------------------------------------------------------------- models


class CLIP(PretrainedModel, ImageTower, TextTower):
    """CLIP: ``visual`` (a ViT), the text tower, and the learnable ``logit_scale``."""

    config_class = CLIPConfig

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        if config.vision.embed_dim != config.text.embed_dim or config.text.embed_dim <= 0:
            raise ValueError(
                f"CLIP needs both towers to project to the same embedding size > 0; got "
                f"vision.embed_dim={config.vision.embed_dim}, text.embed_dim="
                f"{config.text.embed_dim}")
        self._build_towers(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def _build_towers(self, config: CLIPConfig) -> None:
        """``visual``, then the text tower. Subclasses that build other towers keep this
        order, so that one seed gives the same initial weights."""
        self.visual = VisionTransformer(config.vision)
        self._build_text_tower(config.text)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image (N, E) and text (M, E) features and the temperature
        ``logit_scale.exp()``, like open_clip; logits are ``scale * img @ txt.T``."""
        image = self.encode_image(images, normalize=True)  # (N, E)
        text = self.encode_text(tokens, normalize=True)  # (M, E)
        return image, text, self.logit_scale.exp()

    def text_model(self) -> CLIPTextModel:
        """The text tower as a stand-alone :class:`CLIPTextModel` (a copy of its weights),
        e.g. the text encoder of a text-to-image pipeline."""
        text = CLIPTextModel(self.config.text)
        text.load_state_dict(self._text_state(), strict=True)
        text.info = {"text_tower_of": self.model_name}
        return text

    def _text_state(self) -> dict[str, torch.Tensor]:
        """The text tower's part of the state dict: all but ``visual.*`` and ``logit_scale``."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("visual.") and k != "logit_scale"}


class CLIPTextModel(PretrainedModel, TextTower):
    """The text tower alone (e.g. Stable Diffusion's text encoder), with CLIP's parameter
    names: a CLIP state dict's text part loads into it unchanged.

    Every text encoder of a text-to-image pipeline has :meth:`encode_context` and
    :attr:`context_dim`; here the context is the last hidden state, as in Stable Diffusion.
    """

    config_class = TextConfig

    def __init__(self, config: TextConfig):
        super().__init__(config)
        self._build_towers(config)

    def _build_towers(self, config: TextConfig) -> None:
        """The text tower (a subclass may build a restricted one)."""
        self._build_text_tower(config)

    def forward(self, tokens: torch.Tensor) -> TextOutput:
        return self.encode_text_states(tokens)

    @property
    def context_dim(self) -> int:
        """Channels D of :meth:`encode_context` (what the U-Net's cross-attention reads)."""
        return self.text_config.width

    def encode_context(self, tokens: torch.Tensor) -> torch.Tensor:
        """The context (N, L, D) a text-to-image U-Net cross-attends to, for ids (N, L): the
        last hidden state (after ln_final)."""
        return self.encode_text_states(tokens).last_hidden_state  # (N, L, W)


class CLIPVisionModel(PretrainedModel, ImageTower):
    """The image tower alone (as transformers' ``CLIPVisionModelWithProjection``); parameter
    names are CLIP's (``visual.*``)."""

    config_class = VisionConfig

    def __init__(self, config: VisionConfig):
        super().__init__(config)
        self.visual = VisionTransformer(config)

    def forward(self, images: torch.Tensor) -> VisionOutput:
        return self.visual(images)


# ----------------------------------------------------------------------------- presets


def _vit(patch: int, width: int, layers: int, embed: int) -> VisionConfig:
    return VisionConfig(patch_size=patch, width=width, layers=layers, heads=width // 64,
                        embed_dim=embed)


def _text(width: int, layers: int, embed: int) -> TextConfig:
    return TextConfig(width=width, layers=layers, heads=width // 64, embed_dim=embed)


# OpenAI's architectures (open_clip's ViT-B-32, ViT-B-16, ViT-L-14 with QuickGELU, which
# OpenAI's weights need; open_clip's configs without "-quickgelu" use activation="gelu").
PRESETS: dict[str, CLIPConfig] = {
    "vit-b-32": CLIPConfig(_vit(32, 768, 12, 512), _text(512, 12, 512)),
    "vit-b-16": CLIPConfig(_vit(16, 768, 12, 512), _text(512, 12, 512)),
    "vit-l-14": CLIPConfig(_vit(14, 1024, 24, 768), _text(768, 12, 768)),
    # Trains on a CPU in minutes: 64 px images (8x8 patches), captions of <= 32 tokens.
    "tiny": CLIPConfig(
        VisionConfig(image_size=64, patch_size=8, width=128, layers=4, heads=4,
                     activation="gelu", embed_dim=128),
        TextConfig(context_length=32, width=128, layers=4, heads=4, activation="gelu",
                   embed_dim=128)),
}
# Stable Diffusion 1.x's text encoder: the text tower of OpenAI's ViT-L/14, no projection.
TEXT_PRESETS: dict[str, TextConfig] = {
    "text-sd15": TextConfig(width=768, layers=12, heads=12, embed_dim=0),
}
register_presets("clip", PRESETS, CLIP)
register_presets("clip", TEXT_PRESETS, CLIPTextModel)


def registered_name(config: CLIPConfig | TextConfig) -> str | None:
    """The ``clip/<name>`` preset equal to ``config``, if any."""
    presets: Sequence[tuple[str, Any]] = [*PRESETS.items(), *TEXT_PRESETS.items()]
    return next((f"clip/{n}" for n, c in presets if c == config), None)
