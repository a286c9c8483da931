"""mmgen.nn blocks against diffusers on random weights: diffusers' state dict loads into ours
with strict=True and both give the same outputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention import FeedForward as DiffusersFeedForward
from diffusers.models.attention_processor import Attention as DiffusersAttention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding as DiffusersTimestepEmbedding
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D

from mmgen.nn import (
    Attention,
    Downsample,
    FeedForward,
    PatchEmbed,
    ResBlock,
    TimestepEmbedding,
    TransformerBlock,
    Upsample,
    modulate,
    timestep_embedding,
)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (biases and norm affines included), so that a wrongly mapped
    parameter cannot hide behind a zero or one initialisation."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.2)
    return module.eval()


def load_from(ours: torch.nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    # Diffusers' Downsample2D registers its conv twice (as `conv` and `Conv2d_0`); real
    # checkpoints only store `conv`, so the alias is dropped.
    state = {k: v for k, v in theirs.state_dict().items() if not k.startswith("Conv2d_0.")}
    ours.load_state_dict(state, strict=True)
    return ours.eval()


def assert_close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------ transformer parts


@pytest.mark.parametrize("context_dim", [None, 24])
@pytest.mark.parametrize("bias", [False, True])
def test_attention_matches_diffusers(context_dim, bias):
    theirs = randomize(
        DiffusersAttention(32, cross_attention_dim=context_dim, heads=4, dim_head=8, bias=bias)
    )
    ours = load_from(Attention(32, context_dim, heads=4, head_dim=8, qkv_bias=bias), theirs)
    x = torch.randn(2, 37, 32)
    context = None if context_dim is None else torch.randn(2, 11, context_dim)
    with torch.no_grad():
        assert_close(ours(x, context), theirs(x, encoder_hidden_states=context))


def test_attention_key_padding_mask_matches_diffusers():
    theirs = randomize(DiffusersAttention(32, cross_attention_dim=24, heads=4, dim_head=8))
    ours = load_from(Attention(32, 24, heads=4, head_dim=8), theirs)
    x, context = torch.randn(2, 9, 32), torch.randn(2, 11, 24)
    bias = torch.zeros(2, 1, 11)
    bias[1, :, 6:] = float("-inf")  # the second sample has only 6 valid context tokens
    with torch.no_grad():
        expected = theirs(x, encoder_hidden_states=context, attention_mask=bias)
        assert_close(ours(x, context, mask=bias[:, None]), expected)  # (B, 1, 1, M)


def test_attention_rejects_context_without_context_dim():
    with pytest.raises(ValueError, match="context_dim"):
        Attention(32, heads=4, head_dim=8)(torch.randn(1, 3, 32), torch.randn(1, 4, 32))


@pytest.mark.parametrize(
    "ours_name,theirs_name",
    [
        ("geglu", "geglu"),
        ("gelu", "gelu"),
        ("gelu_tanh", "gelu-approximate"),
        ("quick_gelu", "geglu-approximate"),  # diffusers' name for x * sigmoid(1.702 x)
    ],
)
def test_feedforward_matches_diffusers(ours_name, theirs_name):
    theirs = randomize(DiffusersFeedForward(32, dim_out=20, mult=2, activation_fn=theirs_name))
    ours = load_from(FeedForward(32, mult=2, activation=ours_name, dim_out=20), theirs)
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        assert_close(ours(x), theirs(x))


def test_feedforward_unknown_activation():
    with pytest.raises(ValueError, match="geglu"):
        FeedForward(8, activation="relu6")


@pytest.mark.parametrize("context_dim,activation", [(24, "geglu"), (None, "gelu")])
def test_transformer_block_matches_diffusers(context_dim, activation):
    theirs = randomize(
        BasicTransformerBlock(32, 4, 8, cross_attention_dim=context_dim, activation_fn=activation)
    )
    ours = load_from(TransformerBlock(32, 4, 8, context_dim, activation=activation), theirs)
    x = torch.randn(2, 37, 32)
    context = None if context_dim is None else torch.randn(2, 11, context_dim)
    with torch.no_grad():
        assert_close(ours(x, context), theirs(x, encoder_hidden_states=context))


def test_transformer_block_context_mismatch_raises():
    block = TransformerBlock(32, 4, 8, context_dim=None)
    with pytest.raises(ValueError, match="context"):
        block(torch.randn(1, 3, 32), torch.randn(1, 4, 32))


def test_modulate():
    x = torch.randn(2, 5, 8)
    shift, scale = torch.randn(2, 8), torch.randn(2, 8)
    assert_close(modulate(x, torch.zeros(2, 8), torch.zeros(2, 8)), x)  # zero = identity
    out = modulate(x, shift, scale)
    for b in range(2):
        for n in range(5):
            assert_close(out[b, n], x[b, n] * (1 + scale[b]) + shift[b])


# ----------------------------------------------------------------------------- embeddings

TIMESTEPS = torch.tensor([0.0, 1.0, 10.5, 250.0, 999.0])


@pytest.mark.parametrize("dim", [32, 33])
@pytest.mark.parametrize("flip,shift", [(False, 1.0), (True, 0.0), (True, 1.0)])
def test_timestep_embedding_matches_diffusers(dim, flip, shift):
    expected = get_timestep_embedding(
        TIMESTEPS, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift
    )
    got = timestep_embedding(TIMESTEPS, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    assert got.shape == (5, dim)
    assert_close(got, expected)


def test_timestep_embedding_scale_and_period_match_diffusers():
    kwargs = dict(flip_sin_to_cos=True, downscale_freq_shift=0.0, scale=0.5, max_period=100)
    expected = get_timestep_embedding(TIMESTEPS, 16, **kwargs)
    assert_close(timestep_embedding(TIMESTEPS, 16, **kwargs), expected)


def test_timestep_embedding_matches_dit():
    """DiT's TimestepEmbedder.timestep_embedding (Peebles & Xie, models.py), written out."""
    dim, max_period = 64, 10000
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = TIMESTEPS[:, None].float() * freqs[None]
    expected = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    got = timestep_embedding(TIMESTEPS, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert_close(got, expected)


def test_timestep_embedding_rejects_non_1d():
    with pytest.raises(ValueError, match="1-D"):
        timestep_embedding(torch.tensor(5.0), 16)


def test_timestep_mlp_matches_diffusers():
    theirs = randomize(DiffusersTimestepEmbedding(32, 64, out_dim=48))
    ours = load_from(TimestepEmbedding(32, 64, out_dim=48), theirs)
    emb = torch.randn(3, 32)
    with torch.no_grad():
        assert_close(ours(emb), theirs(emb))


def test_patch_embed_equals_unfold_and_linear():
    embed = randomize(PatchEmbed(3, 16, patch_size=4))
    x = torch.randn(2, 3, 8, 12)
    patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (B, N, C*p*p)
    expected = patches @ embed.proj.weight.view(16, -1).T + embed.proj.bias  # (B, N, dim)
    with torch.no_grad():
        out = embed(x)
    assert out.shape == (2, 6, 16)  # N = (8/4) * (12/4), row-major
    assert_close(out, expected)


def test_patch_embed_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible by patch_size=4"):
        PatchEmbed(3, 16, patch_size=4)(torch.randn(1, 3, 8, 10))


# ---------------------------------------------------------------------------- conv blocks


@pytest.mark.parametrize("in_ch,out_ch,temb", [(16, 16, 12), (16, 32, 12), (16, 32, None)])
def test_resblock_matches_diffusers(in_ch, out_ch, temb):
    theirs = randomize(
        ResnetBlock2D(
            in_channels=in_ch,
            out_channels=out_ch,
            temb_channels=temb,
            groups=4,
            output_scale_factor=2.0,
        )
    )
    ours = load_from(
        ResBlock(in_ch, out_ch, temb_channels=temb, groups=4, output_scale_factor=2.0), theirs
    )
    x = torch.randn(2, in_ch, 9, 7)
    t = None if temb is None else torch.randn(2, temb)
    with torch.no_grad():
        out = ours(x, t)
        assert out.shape == (2, out_ch, 9, 7)
        assert_close(out, theirs(x, t))


def test_resblock_temb_mismatch_raises():
    with pytest.raises(ValueError, match="temb"):
        ResBlock(8, temb_channels=4, groups=2)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="groups=3"):
        ResBlock(8, groups=3)


@pytest.mark.parametrize("out_ch,padding", [(None, 1), (24, 1), (None, 0)])
def test_downsample_matches_diffusers(out_ch, padding):
    theirs = randomize(Downsample2D(16, use_conv=True, out_channels=out_ch, padding=padding))
    ours = load_from(Downsample(16, out_ch, padding=padding), theirs)
    x = torch.randn(2, 16, 9, 8)
    with torch.no_grad():
        assert_close(ours(x), theirs(x))


def test_downsample_avg_pool_matches_diffusers():
    theirs = Downsample2D(16, use_conv=False)
    ours = load_from(Downsample(16, use_conv=False), theirs)
    x = torch.randn(2, 16, 8, 8)
    assert_close(ours(x), theirs(x))
    with pytest.raises(ValueError, match="use_conv=False"):
        Downsample(16, 32, use_conv=False)


@pytest.mark.parametrize("out_ch,use_conv", [(None, True), (24, True), (None, False)])
@pytest.mark.parametrize("output_size", [None, (9, 7)])
def test_upsample_matches_diffusers(out_ch, use_conv, output_size):
    theirs = randomize(Upsample2D(16, use_conv=use_conv, out_channels=out_ch))
    ours = load_from(Upsample(16, out_ch, use_conv=use_conv), theirs)
    x = torch.randn(2, 16, 5, 4)
    with torch.no_grad():
        out = ours(x, output_size)
        assert out.shape[-2:] == (output_size or (10, 8))
        assert_close(out, theirs(x, output_size))
