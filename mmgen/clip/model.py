"""CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): a ViT image tower and a causal Transformer text tower trained so that matching
(image, caption) pairs have the largest cosine similarity.

Parameter names are OpenAI's / open_clip's, so their state dicts load unchanged
(``visual.conv1.weight``, ``visual.transformer.resblocks.0.attn.in_proj_weight``,
``token_embedding.weight``, ``ln_final.weight``, ``text_projection``, ``logit_scale``, ...).
To keep the text tower's parameters at the top level, as OpenAI does, it is a base class
(:class:`TextTower`) of both :class:`CLIP` and the text-only :class:`CLIPTextModel` (Stable
Diffusion's text encoder); the image tower is the submodule ``visual`` of :class:`CLIP` and
of :class:`CLIPVisionModel`. Both towers use the same :class:`ResidualAttentionBlock`, whose
attention runs through :func:`mmgen.nn.attention` (so attention backends apply).

Shapes: N batch, L text tokens, P image patches, W tower width, E joint embedding size.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.nn import attention
from mmgen.registry import PretrainedModel, register_model

# OpenAI's image normalisation (the statistics of CLIP's training images).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
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
    color_split: bool = False  # True: a ColorSplitVision tower (pictures of objects on a flat
    #   background): the ViT sees a colour-blind silhouette, a per-pixel MLP the colours
    color_width: int = 64  # with color_split: channels of the per-pixel colour MLP


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
    kept_tokens: int = 0  # > 0: a restricted vocabulary (see CLIP.text_model): token_embedding
    #   has this many rows, looked up through the token_map buffer (ids -> rows; row 0 = unknown)


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


# ----------------------------------------------------------------------------- blocks


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI trained CLIP with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters (q, k, v packed
    in ``in_proj_weight``, then ``out_proj``), computed by :func:`mmgen.nn.attention`."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (N, L, 3W)
        qkv = qkv.view(n, length, 3, self.heads, width // self.heads)  # (N, L, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (N, h, L, d)
        out = attention(q, k, v, mask=mask)  # (N, h, L, d)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))  # (N, L, W)


class ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: x += attn(ln_1(x)); x += mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str):
        super().__init__()
        hidden = round(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        act = QuickGELU() if activation == "quick_gelu" else nn.GELU()
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", act), ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)  # (N, L, W)
        return x + self.mlp(self.ln_2(x))  # (N, L, W)


class Transformer(nn.Module):
    """``layers`` residual attention blocks (``resblocks.<i>``), shared by both towers."""

    def __init__(self, config: VisionConfig | TextConfig):
        super().__init__()
        _check_tower(config)
        self.resblocks = nn.ModuleList([
            ResidualAttentionBlock(config.width, config.heads, config.mlp_ratio, config.activation)
            for _ in range(config.layers)
        ])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)  # (N, L, W)
        return x

    @torch.no_grad()
    def init_weights(self) -> None:
        """open_clip's text-tower init, used for both towers: normal weights whose scale
        shrinks with width (and depth for the residual outputs), zero biases."""
        width, layers = self.resblocks[0].ln_1.normalized_shape[0], len(self.resblocks)
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            for bias in (block.attn.in_proj_bias, block.attn.out_proj.bias,
                         block.mlp.c_fc.bias, block.mlp.c_proj.bias):
                nn.init.zeros_(bias)


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
        self.transformer = Transformer(config)
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


def vision_tower(config: VisionConfig) -> nn.Module:
    """The image tower of ``config``: a :class:`VisionTransformer`, or a
    :class:`ColorSplitVision` around one (``config.color_split``)."""
    if config.color_split:
        from mmgen.clip.color_split import ColorSplitVision  # (it builds on this module)

        return ColorSplitVision(config)
    return VisionTransformer(config)


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


class TextTower(nn.Module):
    """The causal text transformer, as a base class so that its parameters sit at the top
    level of the model (OpenAI's ``token_embedding``, ``positional_embedding``,
    ``transformer``, ``ln_final``, ``text_projection``). Models call
    :meth:`_build_text_tower` in their ``__init__``."""

    text_config: TextConfig

    def _build_text_tower(self, config: TextConfig) -> None:
        self.text_config = config
        w, length = config.width, config.context_length
        self.token_embedding = nn.Embedding(config.kept_tokens or config.vocab_size, w)
        if config.kept_tokens:  # ids -> rows of the restricted vocabulary; 0 = unknown
            self.register_buffer("token_map", torch.zeros(config.vocab_size, dtype=torch.long))
        self.positional_embedding = nn.Parameter(torch.empty(length, w))
        self.transformer = Transformer(config)
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
        rows = self.token_map[tokens] if self.text_config.kept_tokens else tokens  # (N, L)
        if self.text_config.kept_tokens and bool((rows == 0).any()):
            warnings.warn(f"{int((rows == 0).sum())} token(s) are outside this model's "
                          f"{self.text_config.kept_tokens - 1}-token vocabulary (it knows only "
                          "the words it was trained on); they are read as one unknown token",
                          stacklevel=2)
        inputs = self.token_embedding(rows) + self.positional_embedding[:length]  # (N, L, W)
        x = self.transformer(inputs, self.attn_mask[:length, :length])  # (N, L, W)
        x = self.ln_final(x)  # (N, L, W)
        pooled = x[torch.arange(n, device=x.device), self._pool_index(tokens)]  # (N, W)
        embeds = pooled if self.text_projection is None else pooled @ self.text_projection
        return TextOutput(x, pooled, embeds, inputs)  # embeds: (N, E)

    def unknown_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) bool: ids outside a restricted vocabulary (all False for a full one)."""
        if not self.text_config.kept_tokens:
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


def _restrict_vocabulary(state: dict[str, torch.Tensor], config: TextConfig,
                         keep_tokens: Sequence[int]) -> tuple[dict[str, torch.Tensor], TextConfig]:
    """``state`` and ``config`` with the token embedding cut to ``keep_tokens`` (row 0: the
    mean of the dropped rows, for every unknown id) and a ``token_map`` from ids to rows."""
    kept = torch.tensor(sorted(set(int(t) for t in keep_tokens)))  # (K,)
    if kept.numel() == 0 or kept.min() < 0 or kept.max() >= config.vocab_size:
        raise ValueError(f"keep_tokens must be ids in [0, {config.vocab_size})")
    table = state["token_embedding.weight"]  # (V, W)
    dropped = torch.ones(len(table), dtype=torch.bool)
    dropped[kept] = False
    unknown = table[dropped].mean(0, keepdim=True) if dropped.any() else table[:1] * 0
    token_map = torch.zeros(config.vocab_size, dtype=torch.long)
    token_map[kept] = torch.arange(1, len(kept) + 1)
    state = {**state, "token_embedding.weight": torch.cat([unknown, table[kept]]),  # (K+1, W)
             "token_map": token_map}
    return state, replace(config, kept_tokens=len(kept) + 1)


# ----------------------------------------------------------------------------- models


class CLIP(PretrainedModel, TextTower):
    """CLIP: ``visual`` (a ViT), the text tower, and the learnable ``logit_scale``."""

    config_class = CLIPConfig

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        if config.vision.embed_dim != config.text.embed_dim or config.text.embed_dim <= 0:
            raise ValueError(
                f"CLIP needs both towers to project to the same embedding size > 0; got "
                f"vision.embed_dim={config.vision.embed_dim}, text.embed_dim="
                f"{config.text.embed_dim}")
        self.visual = vision_tower(config.vision)
        self._build_text_tower(config.text)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings (N, E) of model-ready images (N, 3, S, S); L2-normalised if
        ``normalize``."""
        embeds = self.visual(images).embeds  # (N, E)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def forward(self, images: torch.Tensor, tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image (N, E) and text (M, E) features and the temperature
        ``logit_scale.exp()``, like open_clip; logits are ``scale * img @ txt.T``."""
        image = self.encode_image(images, normalize=True)  # (N, E)
        text = self.encode_text(tokens, normalize=True)  # (M, E)
        return image, text, self.logit_scale.exp()

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL images or [0, 1] tensors -> model-ready (N, 3, S, S); see :func:`preprocess`."""
        return self.visual.preprocess(images)

    def text_model(self, keep_tokens: Sequence[int] | None = None) -> CLIPTextModel:
        """The text tower as a stand-alone :class:`CLIPTextModel` (a copy of its weights),
        e.g. the text encoder of a text-to-image pipeline.

        Args:
            keep_tokens: restrict the vocabulary to these token ids (see
                :meth:`with_vocabulary`). On a model whose vocabulary is already restricted,
                they must be among its tokens, and the tower keeps that vocabulary.
        """
        state = {k: v for k, v in self.state_dict().items()
                 if not k.startswith("visual.") and k != "logit_scale"}
        config = self.config.text
        if keep_tokens is not None and not config.kept_tokens:
            state, config = _restrict_vocabulary(state, config, keep_tokens)
        elif keep_tokens is not None and self.unknown_tokens(torch.tensor(list(keep_tokens))
                                                             ).any():
            raise ValueError("keep_tokens has ids outside this model's restricted vocabulary")
        text = CLIPTextModel(config)
        text.load_state_dict(state, strict=True)
        text.info = {"text_tower_of": self.model_name}
        return text

    def with_vocabulary(self, keep_tokens: Sequence[int]) -> CLIP:
        """A copy whose vocabulary is restricted to ``keep_tokens`` (all other ids map to one
        "unknown" row, the mean of the dropped rows; encoding one warns). A model trained on
        a small caption vocabulary learned nothing about the other 49k rows, so this shrinks
        the token embedding (12.6 MB of fp16 at width 128) to a few kB without changing any
        output for known tokens."""
        if self.config.text.kept_tokens:
            raise ValueError("the vocabulary is already restricted")
        state, text = _restrict_vocabulary(self.state_dict(), self.config.text, keep_tokens)
        model = CLIP(replace(self.config, text=text))
        model.load_state_dict(state, strict=True)
        model.info = dict(getattr(self, "info", None) or {})
        model.model_name = self.model_name
        return model

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images already at the model's size -> normalised model input."""
        return self.visual.normalize_images(images)


class CLIPTextModel(PretrainedModel, TextTower):
    """The text tower alone (e.g. Stable Diffusion's text encoder), with CLIP's parameter
    names: a CLIP state dict's text part loads into it unchanged."""

    config_class = TextConfig

    def __init__(self, config: TextConfig):
        super().__init__(config)
        self._build_text_tower(config)

    def forward(self, tokens: torch.Tensor) -> TextOutput:
        return self.encode_text_states(tokens)


class CLIPVisionModel(PretrainedModel):
    """The image tower alone (as transformers' ``CLIPVisionModelWithProjection``); parameter
    names are CLIP's (``visual.*``)."""

    config_class = VisionConfig

    def __init__(self, config: VisionConfig):
        super().__init__(config)
        self.visual = vision_tower(config)

    def forward(self, images: torch.Tensor) -> VisionOutput:
        return self.visual(images)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings (N, E); L2-normalised if ``normalize``."""
        embeds = self.visual(images).embeds  # (N, E)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL images or [0, 1] tensors -> model-ready (N, 3, S, S); see :func:`preprocess`."""
        return self.visual.preprocess(images)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images already at the model's size -> normalised model input."""
        return self.visual.normalize_images(images)


# ----------------------------------------------------------------------------- preprocessing


def preprocess(images: Any, config: VisionConfig) -> torch.Tensor:
    """Images -> model input, as open_clip's evaluation transform: resize the shorter side to
    ``image_size`` (bicubic), centre-crop to a square, normalise with the config's mean/std.

    Args:
        images: a PIL image, a sequence of PIL images, or a float tensor in [0, 1] of shape
            (3, H, W) or (N, 3, H, W).
        config: the vision tower's config (image_size, image_mean, image_std).

    Returns:
        Float tensor (N, 3, image_size, image_size) on the input's device (CPU for PIL).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    size = config.image_size
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)  # (1, 3, H, W)
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"expected float images (N, 3, H, W) or (3, H, W) in [0, 1], got "
                             f"{images.dtype} of shape {tuple(images.shape)}")
        if images.shape[-2:] != (size, size):
            images = TF.resize(images, size, InterpolationMode.BICUBIC, antialias=True)
            images = TF.center_crop(images, [size, size]).clamp(0, 1)  # bicubic overshoots
        return normalize_images(images, config)
    pil = [images] if hasattr(images, "convert") else list(images)
    if not pil or not all(hasattr(im, "convert") for im in pil):
        raise TypeError("preprocess takes a PIL image, a list of PIL images or a tensor, got "
                        f"{type(images).__name__}")
    batch = [TF.to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), size,
                                                   InterpolationMode.BICUBIC), [size, size]))
             for im in pil]  # N x (3, S, S) in [0, 1]
    return normalize_images(torch.stack(batch), config)


def normalize_images(images: torch.Tensor, config: VisionConfig) -> torch.Tensor:
    """(images - mean) / std per channel for images (N, 3, H, W) in [0, 1]."""
    mean = torch.tensor(config.image_mean, device=images.device, dtype=images.dtype)
    std = torch.tensor(config.image_std, device=images.device, dtype=images.dtype)
    return (images - mean[:, None, None]) / std[:, None, None]


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


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a config dataclass with fields replaced; a dict for a nested config field
    updates that config (``create_model("clip/tiny", text={"layers": 2})``)."""
    names = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}; fields: "
                        f"{sorted(names)}")
    resolved = {k: with_overrides(getattr(config, k), v)
                if isinstance(v, dict) and is_dataclass(getattr(config, k)) else v
                for k, v in overrides.items()}
    return replace(config, **resolved)


def _register(name: str, cls: type, config: Any) -> None:
    def create(**overrides: Any) -> PretrainedModel:
        return cls(with_overrides(config, overrides))

    create.__name__ = create.__qualname__ = name.replace("-", "_")
    register_model(f"clip/{name}")(create)


for _name, _config in PRESETS.items():
    _register(_name, CLIP, _config)
for _name, _config in TEXT_PRESETS.items():
    _register(_name, CLIPTextModel, _config)


def registered_name(config: CLIPConfig | TextConfig) -> str | None:
    """The ``clip/<name>`` preset equal to ``config``, if any."""
    presets: Sequence[tuple[str, Any]] = [*PRESETS.items(), *TEXT_PRESETS.items()]
    return next((f"clip/{n}" for n, c in presets if c == config), None)
