"""The latent-diffusion U-Net (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models"), the denoiser of Stable Diffusion 1.x and 2.x.

With n levels (one per entry of ``block_out_channels``) and L = ``layers_per_block``::

    conv_in                                                   (B, C_0, H, W)
    down_blocks.i   L x [ResBlock (+ Transformer2D)], then a stride-2 conv (not on level n-1)
    mid_block       ResBlock, Transformer2D, ResBlock         (B, C_n-1, H / 2^(n-1), W / 2^(n-1))
    up_blocks.i     L+1 x [concat a skip, ResBlock (+ Transformer2D)], then upsample (not last)
    conv_norm_out, SiLU, conv_out                             (B, C_out, H, W)

Every ResBlock adds the timestep embedding; every Transformer2D cross-attends to the context
(e.g. CLIP text states). The network is pure: ``unet(x, t, context)`` returns the raw
prediction; what it predicts (noise, v, x0) is the objective's and the sampler's business.

Parameter names are those of diffusers' ``UNet2DConditionModel``, so a diffusers Stable
Diffusion 1.x/2.x U-Net state dict loads with ``strict=True``;
:func:`mmgen.interop.from_diffusers` also translates the config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmgen.nn import Downsample, ResBlock, TimestepEmbedding, TransformerBlock, Upsample
from mmgen.nn.embeddings import batch_timesteps, timestep_embedding
from mmgen.registry import PretrainedModel, register_model


@dataclass
class UNetConfig:
    """Architecture of the U-Net; the defaults are Stable Diffusion 1.x's."""

    in_channels: int = 4  # channels of the noisy latent x
    out_channels: int = 4  # channels of the prediction
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)  # channels per level
    layers_per_block: int = 2  # ResBlocks per level going down (one more going up)
    # Per level, going down: cross-attention transformers after each ResBlock? Mirrored going
    # up; the middle block always has one.
    attention_blocks: tuple[bool, ...] = (True, True, True, False)
    cross_attention_dim: int = 768  # channels of the context (SD 1.x: CLIP ViT-L text states)
    # Attention heads per level (head dim = channels / heads); the middle block uses the last.
    # SD 1.x: 8 everywhere; SD 2.x: 64 channels per head, i.e. (5, 10, 20, 20).
    heads: tuple[int, ...] = (8, 8, 8, 8)
    use_linear_projection: bool = False  # Transformer2D proj_in/out: Linear (SD 2) or 1x1 conv
    transformer_layers: int = 1  # TransformerBlocks per Transformer2D
    norm_num_groups: int = 32  # GroupNorm groups of the ResBlocks, transformers and output
    norm_eps: float = 1e-5  # GroupNorm epsilon of the ResBlocks and the output norm
    flip_sin_to_cos: bool = True  # timestep embedding order [cos, sin] (SD) or [sin, cos]
    freq_shift: float = 0.0  # timestep embedding frequency shift (SD: 0)
    dropout: float = 0.0  # dropout in ResBlocks and transformers (training only)
    sample_size: int = 64  # latent side the model was trained at (SD 1.x: 512 px / 8)

    def __post_init__(self) -> None:
        for name in ("block_out_channels", "attention_blocks", "heads"):  # lists from JSON/CLI
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        levels = len(self.block_out_channels)
        for name in ("attention_blocks", "heads"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != levels:
                raise ValueError(
                    f"UNetConfig.{name} needs one entry per level ({levels} levels from "
                    f"block_out_channels={self.block_out_channels}), got {value!r}; e.g. "
                    f"heads={(8,) * levels}."
                )
        if self.norm_num_groups < 1 or min(self.heads) < 1 or min(self.block_out_channels) < 1:
            raise ValueError(f"UNetConfig: block_out_channels, heads and norm_num_groups must "
                             f"be >= 1, got {self.block_out_channels}, {self.heads} and "
                             f"{self.norm_num_groups}.")
        for i, (channels, heads) in enumerate(zip(self.block_out_channels, self.heads,
                                                  strict=True)):
            if channels % heads or channels % self.norm_num_groups:
                raise ValueError(
                    f"UNetConfig: block_out_channels[{i}] = {channels} must be divisible by "
                    f"heads[{i}] = {heads} and by norm_num_groups = {self.norm_num_groups}."
                )


# ----------------------------------------------------------------------------- blocks


class Transformer2D(nn.Module):
    """Transformer over the pixels of a feature map (diffusers' Transformer2DModel for
    continuous inputs): GroupNorm -> proj_in -> TransformerBlocks (self-attention,
    cross-attention to the context, GEGLU MLP) -> proj_out, plus the input.

    Args:
        channels: feature-map channels, also the token width.
        heads: attention heads; the head dim is channels / heads.
        context_dim: channels of the cross-attention context.
        layers: number of TransformerBlocks.
        groups: GroupNorm groups.
        linear_projection: proj_in/proj_out as Linear layers on tokens (SD 2) instead of
            1x1 convs on the feature map (SD 1); the same function, stored differently.
        dropout: dropout inside the TransformerBlocks.
    """

    def __init__(self, channels: int, heads: int, context_dim: int, layers: int = 1,
                 groups: int = 32, linear_projection: bool = False, dropout: float = 0.0):
        super().__init__()
        self.linear_projection = linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        project = nn.Linear if linear_projection else nn.Conv2d
        extra = {} if linear_projection else {"kernel_size": 1}
        self.proj_in = project(channels, channels, **extra)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(channels, heads, channels // heads, context_dim, dropout=dropout)
            for _ in range(layers)
        )
        self.proj_out = project(channels, channels, **extra)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), context (B, L, context_dim) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        memory_format = _memory_format(x)
        residual = x
        x = self.norm(x)
        if not self.linear_projection:
            x = self.proj_in(x)  # (B, C, H, W)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, HW, C): one token per pixel
        if self.linear_projection:
            x = self.proj_in(x)  # (B, HW, C)
        for block in self.transformer_blocks:
            x = block(x, context)  # (B, HW, C)
        if self.linear_projection:
            x = self.proj_out(x)  # (B, HW, C)
        x = x.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
        x = x.contiguous(memory_format=memory_format)
        if not self.linear_projection:
            x = self.proj_out(x)  # (B, C, H, W)
        return x + residual


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels_last (and not also contiguous) 4-D tensor, else contiguous."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last and not x.is_contiguous() else (
        torch.contiguous_format)


def _resblock(config: UNetConfig, in_channels: int, out_channels: int) -> ResBlock:
    return ResBlock(in_channels, out_channels, 4 * config.block_out_channels[0],
                    groups=config.norm_num_groups, eps=config.norm_eps, dropout=config.dropout)


def _transformer(config: UNetConfig, channels: int, heads: int) -> Transformer2D:
    return Transformer2D(channels, heads, config.cross_attention_dim, config.transformer_layers,
                         config.norm_num_groups, config.use_linear_projection, config.dropout)


class DownBlock(nn.Module):
    """One level going down: ResBlocks (each followed by a Transformer2D if attention), then a
    stride-2 conv if downsample. Returns every intermediate output as a skip connection."""

    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int, heads: int,
                 attention: bool, downsample: bool):
        super().__init__()
        n = config.layers_per_block
        self.resnets = nn.ModuleList(
            _resblock(config, in_channels if j == 0 else out_channels, out_channels)
            for j in range(n)
        )
        self.attentions = (
            nn.ModuleList(_transformer(config, out_channels, heads) for _ in range(n))
            if attention else None
        )
        self.downsamplers = (
            nn.ModuleList([Downsample(out_channels, out_channels, use_conv=True, padding=1)])
            if downsample else None
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C_in, H, W) -> (B, C_out, H', W') with H' = ceil(H / 2) if downsampling,
        and the skips [(B, C_out, H, W)] * L (+ [(B, C_out, H', W')])."""
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, temb)  # (B, C_out, H, W)
            if self.attentions is not None:
                x = self.attentions[j](x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)  # (B, C_out, H', W')
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """The bottleneck: ResBlock, Transformer2D, ResBlock at the lowest resolution."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        channels = config.block_out_channels[-1]
        self.resnets = nn.ModuleList(_resblock(config, channels, channels) for _ in range(2))
        self.attentions = nn.ModuleList([_transformer(config, channels, config.heads[-1])])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
                ) -> torch.Tensor:
        x = self.resnets[0](x, temb)  # (B, C, h, w)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)  # (B, C, h, w)


class UpBlock(nn.Module):
    """One level going up: L+1 x [concatenate the next skip, ResBlock (+ Transformer2D)], then
    2x nearest upsampling and a conv if upsample.

    Args:
        skip_channels: channels of the level below's skips, which the last ResBlock receives
            (diffusers calls this in_channels).
        prev_channels: channels of the input x (the block below's output).
    """

    def __init__(self, config: UNetConfig, skip_channels: int, prev_channels: int,
                 out_channels: int, heads: int, attention: bool, upsample: bool):
        super().__init__()
        n = config.layers_per_block + 1
        self.resnets = nn.ModuleList(
            _resblock(config,
                      (prev_channels if j == 0 else out_channels)
                      + (skip_channels if j == n - 1 else out_channels),
                      out_channels)
            for j in range(n)
        )
        self.attentions = (
            nn.ModuleList(_transformer(config, out_channels, heads) for _ in range(n))
            if attention else None
        )
        self.upsamplers = (
            nn.ModuleList([Upsample(out_channels, out_channels, use_conv=True)])
            if upsample else None
        )

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor,
                context: torch.Tensor, output_size: tuple[int, int] | None = None
                ) -> torch.Tensor:
        """x (B, C_prev, h, w) and this level's L+1 skips (consumed last first) ->
        (B, C_out, *output_size) when upsampling, else (B, C_out, h, w)."""
        for j, resnet in enumerate(self.resnets):
            x = torch.cat([x, skips[-1 - j]], dim=1)  # (B, C_x + C_skip, h, w)
            x = resnet(x, temb)  # (B, C_out, h, w)
            if self.attentions is not None:
                x = self.attentions[j](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, output_size)  # (B, C_out, *output_size)
        return x


# ----------------------------------------------------------------------------- the model


class UNet(PretrainedModel):
    """Text-conditioned latent-diffusion U-Net: ``unet(x, t, context) -> prediction``.

    Set ``model.gradient_checkpointing = True`` to recompute each block's activations in
    the backward pass instead of storing them (less memory, one more forward pass of compute).
    """

    config_class = UNetConfig

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        c = config.block_out_channels
        levels = len(c)
        self.gradient_checkpointing = False
        self.conv_in = nn.Conv2d(config.in_channels, c[0], kernel_size=3, padding=1)
        self.time_embedding = TimestepEmbedding(c[0], 4 * c[0])
        self.down_blocks = nn.ModuleList(
            DownBlock(config, c[max(i - 1, 0)], c[i], config.heads[i],
                      config.attention_blocks[i], downsample=i < levels - 1)
            for i in range(levels)
        )
        self.mid_block = MidBlock(config)
        up = []
        for i in range(levels):
            level = levels - 1 - i  # the level this up block works at
            up.append(UpBlock(config, skip_channels=c[max(level - 1, 0)],
                              prev_channels=c[min(level + 1, levels - 1)], out_channels=c[level],
                              heads=config.heads[level],
                              attention=config.attention_blocks[level], upsample=level > 0))
        self.up_blocks = nn.ModuleList(up)
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, c[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(c[0], config.out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, context: torch.Tensor
                ) -> torch.Tensor:
        """Predict from the noisy latent.

        Args:
            x: noisy latents (B, in_channels, H, W); any H, W (odd sizes are upsampled back
                to the matching skip connection's size).
            t: timesteps, shape (B,), (1,) or () tensor, or a Python number (one for all).
            context: cross-attention states (B, L, cross_attention_dim), or (1, L, ...) for
                the same context for every sample.

        Returns:
            (B, out_channels, H, W).
        """
        self._check_inputs(x, context)
        context = context.expand(x.shape[0], -1, -1)  # (B, L, D); one context may serve all
        t = batch_timesteps(t, x, "UNet")  # (B,)
        emb = timestep_embedding(t, self.config.block_out_channels[0],
                                 flip_sin_to_cos=self.config.flip_sin_to_cos,
                                 downscale_freq_shift=self.config.freq_shift)  # (B, C_0) fp32
        temb = self.time_embedding(emb.to(x.dtype))  # (B, 4 C_0)

        x = self.conv_in(x)  # (B, C_0, H, W)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = self._run(block, x, temb, context)  # (B, C_i, ...), halved but last
            skips.extend(block_skips)
        x = self._run(self.mid_block, x, temb, context)  # (B, C_n-1, h, w)
        for block in self.up_blocks:
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            # Upsample to the next skip's size: 2x, or 2x - 1 where an odd size was halved.
            size = tuple(skips[-1].shape[-2:]) if skips else None
            x = self._run(block, x, block_skips, temb, context, size)
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (B, C_out, H, W)

    def _run(self, block: nn.Module, *args: Any) -> Any:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _check_inputs(self, x: torch.Tensor, context: torch.Tensor) -> None:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"UNet expects x of shape (B, {cfg.in_channels}, H, W), got "
                             f"{tuple(x.shape)}.")
        if context.ndim != 3 or context.shape[-1] != cfg.cross_attention_dim or (
                context.shape[0] not in (1, x.shape[0])):
            raise ValueError(
                f"UNet expects context of shape (B or 1, L, {cfg.cross_attention_dim}) "
                f"(cross_attention_dim) with B = {x.shape[0]}, got {tuple(context.shape)}. "
                "Check the text encoder matches the U-Net (SD 1.x: 768, SD 2.x: 1024).")


# ----------------------------------------------------------------------------- presets


PRESETS: dict[str, UNetConfig] = {
    # Stable Diffusion 1.x (~860 M parameters): CLIP ViT-L/14 text states, 8 heads per level.
    "sd15": UNetConfig(),
    # Stable Diffusion 2.x: OpenCLIP ViT-H/14 text states, 64 channels per head, linear
    # projections; 768 px (96 latent px) for the v-prediction models.
    "sd2": UNetConfig(cross_attention_dim=1024, heads=(5, 10, 20, 20),
                      use_linear_projection=True, sample_size=96),
    # For tests and CPU training on 16x16 latents (~1 M parameters).
    "tiny": UNetConfig(block_out_channels=(32, 64), layers_per_block=1,
                       attention_blocks=(True, True), cross_attention_dim=32, heads=(2, 4),
                       norm_num_groups=8, sample_size=16),
}


def _register(name: str, config: UNetConfig) -> None:
    def create(**overrides: Any) -> UNet:
        known = {f.name for f in fields(UNetConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"UNetConfig has no field(s) {unknown}; fields: {sorted(known)}")
        return UNet(replace(config, **overrides))

    create.__name__ = create.__qualname__ = f"unet_{name}"
    register_model(f"unet/{name}")(create)


for _name, _config in PRESETS.items():
    _register(_name, _config)
