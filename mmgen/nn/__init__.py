"""Building blocks shared by two or more model families, and the one attention function."""

from mmgen.nn.attention import BACKENDS as ATTENTION_BACKENDS
from mmgen.nn.attention import (
    attention,
    available_attention_backends,
    get_attention_backend,
    set_attention_backend,
)
from mmgen.nn.embeddings import (
    PatchEmbed,
    TimestepEmbedding,
    batch_timesteps,
    sincos_2d,
    timestep_embedding,
)
from mmgen.nn.resnet import Downsample, ResBlock, Upsample
from mmgen.nn.transformer import (
    GEGLU,
    MLP,
    Attention,
    FeedForward,
    FusedSelfAttention,
    LinearActivation,
    QuickGELU,
    TransformerBlock,
    modulate,
)

__all__ = [
    "ATTENTION_BACKENDS",
    "GEGLU",
    "Attention",
    "Downsample",
    "FeedForward",
    "FusedSelfAttention",
    "LinearActivation",
    "MLP",
    "PatchEmbed",
    "QuickGELU",
    "ResBlock",
    "TimestepEmbedding",
    "TransformerBlock",
    "Upsample",
    "attention",
    "batch_timesteps",
    "available_attention_backends",
    "get_attention_backend",
    "modulate",
    "set_attention_backend",
    "sincos_2d",
    "timestep_embedding",
]
