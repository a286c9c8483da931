"""The KL-regularised autoencoder of latent diffusion (Esser et al. 2021, "Taming
Transformers"; Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"): Stable Diffusion's VAE.

The encoder maps an image (B, 3, H, W) to the mean and log-variance of a diagonal Gaussian
over latents (B, latent_channels, H / f, W / f) with f = 2^(levels - 1); the decoder maps a
latent back to an image. With n levels and L = ``layers_per_block``::

    encoder.conv_in                                      (B, C_0, H, W)
    encoder.down_blocks.i   L x ResBlock, then a stride-2 conv (not on level n-1)
    encoder.mid_block       ResBlock, single-head self-attention, ResBlock
    encoder.conv_norm_out, SiLU, encoder.conv_out        (B, 2 latent_channels, H/f, W/f)
    quant_conv (1x1)                                     mean and log-variance
    post_quant_conv (1x1), decoder.conv_in               (B, C_n-1, H/f, W/f)
    decoder.mid_block, decoder.up_blocks.i (L+1 x ResBlock, then 2x upsample but the last)
    decoder.conv_norm_out, SiLU, decoder.conv_out        (B, out_channels, H, W)

Parameter names are those of diffusers' ``AutoencoderKL``, so Stable Diffusion VAE state
dicts load with ``strict=True``. The diffusion model works on
``(z - shift_factor) * scaling_factor``, which has roughly unit variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.nn import Attention, Downsample, ResBlock, Upsample
from mmgen.registry import PretrainedModel, register_model


@dataclass
class AutoencoderKLConfig:
    """Architecture and latent scaling of the autoencoder; the defaults are Stable
    Diffusion 1.x/2.x's VAE."""

    in_channels: int = 3  # image channels
    out_channels: int = 3  # reconstructed image channels
    latent_channels: int = 4  # channels of the latent z
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # channels per level
    layers_per_block: int = 2  # ResBlocks per encoder level (the decoder has one more)
    norm_num_groups: int = 32  # GroupNorm groups everywhere (epsilon 1e-6)
    scaling_factor: float = 0.18215  # diffusion latents = (z - shift_factor) * scaling_factor
    shift_factor: float = 0.0  # see scaling_factor (SD 1.x/2.x: 0)
    sample_size: int = 512  # image side the model was trained at (informative)

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)  # lists from JSON/CLI
        if self.norm_num_groups < 1:
            raise ValueError(f"AutoencoderKLConfig: norm_num_groups must be >= 1, got "
                             f"{self.norm_num_groups}.")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise ValueError(
                    f"AutoencoderKLConfig: channels {channels} in block_out_channels are not "
                    f"divisible by norm_num_groups={self.norm_num_groups}."
                )


class LatentDistribution:
    """The encoder's diagonal Gaussian q(z | x) = N(mean, exp(logvar)) (Kingma & Welling
    2014), per latent element.

    Args:
        moments: (B, 2 C, h, w) (or (B, 2 C) for a flat latent), the means then the
            log-variances along channels.
    """

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)  # 2 x (B, C, h, w)
        # Clamped as in LDM and diffusers, so that exp() stays finite.
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std * noise. The noise is drawn on the generator's device (the CPU
        without one) and then moved, so a seeded CPU generator gives the same latents on
        every device."""
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(self.mean.shape, generator=generator, device=device,
                            dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)  # (B, C, h, w)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z | x) || N(0, I)) summed over each sample's latent: shape (B,)."""
        return 0.5 * torch.sum(self.mean**2 + self.var - 1.0 - self.logvar,
                               dim=tuple(range(1, self.mean.ndim)))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z | x) summed over each sample's latent: shape (B,) (``z`` like ``mean``)."""
        return normal_log_prob(z, self.mean, self.logvar)


def normal_log_prob(z: torch.Tensor, mean: torch.Tensor | float = 0.0,
                     logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """log N(z; mean, exp(logvar)) summed over all but the first dimension: (B,)."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    density = -0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 * torch.exp(-logvar))
    return density.flatten(1).sum(dim=1)


# ----------------------------------------------------------------------------- blocks


class SpatialSelfAttention(Attention):
    """Single-head self-attention over the pixels of a feature map, with a GroupNorm in front
    and a residual connection (the VAE's mid-block attention; diffusers' Attention with
    group_norm and residual_connection)."""

    def __init__(self, channels: int, groups: int):
        super().__init__(channels, heads=1, head_dim=channels, qkv_bias=True)
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out = super().forward(tokens)  # (B, HW, C)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


def _resblock(in_channels: int, out_channels: int, groups: int) -> ResBlock:
    return ResBlock(in_channels, out_channels, temb_channels=None, groups=groups, eps=1e-6)


class MidBlock(nn.Module):
    """ResBlock, SpatialSelfAttention, ResBlock at the lowest resolution."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList(_resblock(channels, channels, groups) for _ in range(2))
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))  # (B, C, h, w)


class EncoderBlock(nn.Module):
    """ResBlocks, then a stride-2 conv with SD's asymmetric padding if downsample."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int,
                 downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            _resblock(in_channels if j == 0 else out_channels, out_channels, groups)
            for j in range(layers)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample(out_channels, out_channels, use_conv=True, padding=0)])
            if downsample else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)  # (B, C_out, H, W)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)  # (B, C_out, H/2, W/2)
        return x


class DecoderBlock(nn.Module):
    """ResBlocks, then 2x nearest upsampling and a conv if upsample."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int,
                 upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            _resblock(in_channels if j == 0 else out_channels, out_channels, groups)
            for j in range(layers)
        )
        self.upsamplers = (
            nn.ModuleList([Upsample(out_channels, out_channels, use_conv=True)])
            if upsample else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)  # (B, C_out, h, w)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)  # (B, C_out, 2h, 2w)
        return x


class Encoder(nn.Module):
    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        c, g = config.block_out_channels, config.norm_num_groups
        self.conv_in = nn.Conv2d(config.in_channels, c[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            EncoderBlock(c[max(i - 1, 0)], c[i], config.layers_per_block, g,
                         downsample=i < len(c) - 1)
            for i in range(len(c))
        )
        self.mid_block = MidBlock(c[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, c[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(c[-1], 2 * config.latent_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, 2 latent_channels, H/f, W/f)."""
        x = self.conv_in(x)  # (B, C_0, H, W)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)  # (B, C_n-1, H/f, W/f)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        c, g = config.block_out_channels, config.norm_num_groups
        self.conv_in = nn.Conv2d(config.latent_channels, c[-1], kernel_size=3, padding=1)
        self.mid_block = MidBlock(c[-1], g)
        up = []
        for i in range(len(c)):
            level = len(c) - 1 - i
            up.append(DecoderBlock(c[min(level + 1, len(c) - 1)], c[level],
                                   config.layers_per_block + 1, g, upsample=level > 0))
        self.up_blocks = nn.ModuleList(up)
        self.conv_norm_out = nn.GroupNorm(g, c[0], eps=1e-6)
        self.conv_out = nn.Conv2d(c[0], config.out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_channels, h, w) -> (B, C_out, h f, w f)."""
        x = self.mid_block(self.conv_in(z))  # (B, C_n-1, h, w)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (B, C_out, h f, w f)


# ----------------------------------------------------------------------------- the model


class AutoencoderKL(PretrainedModel):
    """Image <-> latent autoencoder: ``encode(x) -> LatentDistribution``, ``decode(z) -> x``.

    Images are in [-1, 1]. ``decode_tiled`` decodes large latents in overlapping tiles.
    """

    config_class = AutoencoderKLConfig

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__(config)
        k = 2 * config.latent_channels
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(k, k, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)

    @property
    def latent_factor(self) -> int:
        """How many image pixels one latent pixel spans along each side (SD: 8)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode(self, x: torch.Tensor) -> LatentDistribution:
        """Images (B, C_in, H, W) -> q(z | x) over latents (B, latent_channels, H/f, W/f)."""
        return LatentDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_channels, h, w) (unscaled: divide diffusion latents by
        scaling_factor and add shift_factor first) -> images (B, C_out, h f, w f)."""
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruct x through the posterior's mean, or through a sample of it."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(z)  # (B, C_out, H, W)

    def decode_tiled(self, z: torch.Tensor, tile: int = 64, overlap: int = 16) -> torch.Tensor:
        """:meth:`decode` in overlapping tiles, for images too large to decode at once.

        The latent is cut into ``tile`` x ``tile`` windows ``tile - overlap`` apart (the last
        window of a row or column is moved back to end at the border). Each window is decoded
        on its own and the images are cross-faded linearly over the overlap (weights ramp
        from 0 to 1 across ``overlap * f`` pixels), so seams do not show. Memory is that of
        one tile; the result is not bit-identical to :meth:`decode`, because each tile's
        GroupNorm statistics and mid-block attention see only that tile (as in diffusers'
        tiled VAE decoding). A latent no larger than one tile is decoded exactly as decode.

        Args:
            z: latents (B, latent_channels, h, w).
            tile: window side in latent pixels (64 = 512 image pixels for SD).
            overlap: overlap of neighbouring windows in latent pixels; 0 < overlap < tile.
        """
        return _tiled(self.decode, z, tile, overlap, 1, self.latent_factor)

    def encode_tiled(self, x: torch.Tensor, tile: int = 64, overlap: int = 16
                     ) -> LatentDistribution:
        """:meth:`encode` in overlapping tiles, blended like :meth:`decode_tiled` (``tile``
        and ``overlap`` in latent pixels). H and W must be multiples of latent_factor."""
        f = self.latent_factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"encode_tiled: image size {tuple(x.shape[-2:])} must be a "
                             f"multiple of latent_factor={f}; crop or pad the image.")
        moments = _tiled(lambda t: self.quant_conv(self.encoder(t)), x, tile, overlap, f, 1)
        return LatentDistribution(moments)


def _tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
           overlap: int, in_scale: int, out_scale: int) -> torch.Tensor:
    """Apply ``fn`` to overlapping windows of ``x`` and blend the outputs linearly.

    Windows are laid out on the latent grid (``tile``, ``overlap`` in latent pixels); one
    latent pixel is ``in_scale`` pixels of x and ``out_scale`` pixels of the output.
    """
    if not 0 < overlap < tile:
        raise ValueError(f"tiling needs 0 < overlap < tile, got tile={tile}, overlap={overlap}.")
    grid = (x.shape[-2] // in_scale, x.shape[-1] // in_scale)  # latent (h, w)
    starts = [_tile_starts(n, tile, overlap) for n in grid]
    if len(starts[0]) == len(starts[1]) == 1:
        return fn(x)  # one window: exactly fn(x)
    out = weight = None
    for top in starts[0]:
        for left in starts[1]:
            window = x[..., top * in_scale:(top + tile) * in_scale,
                       left * in_scale:(left + tile) * in_scale]
            y = fn(window)  # (B, C_out, th * out_scale, tw * out_scale)
            if out is None:
                out = y.new_zeros(*y.shape[:2], grid[0] * out_scale, grid[1] * out_scale)
                weight = y.new_zeros(grid[0] * out_scale, grid[1] * out_scale)
            w = (_ramp(y.shape[-2], overlap * out_scale, top > 0, top + tile < grid[0], y)[:, None]
                 * _ramp(y.shape[-1], overlap * out_scale, left > 0, left + tile < grid[1], y))
            rows = slice(top * out_scale, top * out_scale + y.shape[-2])
            cols = slice(left * out_scale, left * out_scale + y.shape[-1])
            out[..., rows, cols] += y * w  # (B, C_out, th, tw) weighted
            weight[rows, cols] += w
    return out / weight  # weights are > 0 everywhere: every pixel is in some window


def _tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Window starts along one side of n latent pixels; the last window ends at n."""
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, tile - overlap))
    return starts + [n - tile]


def _ramp(n: int, width: int, rise: bool, fall: bool, like: torch.Tensor) -> torch.Tensor:
    """1-D blending weights of length n: a linear ramp over `width` samples on each side that
    borders another window (rise: the start, fall: the end), 1 elsewhere; never 0."""
    i = torch.arange(n, device=like.device, dtype=like.dtype)
    w = torch.ones(n, device=like.device, dtype=like.dtype)
    if rise:
        w = torch.minimum(w, (i + 0.5) / width)
    if fall:
        w = torch.minimum(w, (n - i - 0.5) / width)
    return w


# ----------------------------------------------------------------------------- presets


PRESETS: dict[str, AutoencoderKLConfig] = {
    # Stable Diffusion 1.x / 2.x (~84 M parameters): 8x downsampling, 4 latent channels.
    "sd": AutoencoderKLConfig(),
    # For tests: 2x downsampling.
    "tiny": AutoencoderKLConfig(block_out_channels=(32, 64), layers_per_block=1,
                                norm_num_groups=8, sample_size=32),
    # Small 4x VAE for CPU training on 64x64 images (16x16x4 latents). Set scaling_factor to
    # 1 / std of the trained model's latents (Rombach et al. 2022, sec. 4.3.2).
    "f4": AutoencoderKLConfig(block_out_channels=(32, 64, 64), layers_per_block=1,
                              norm_num_groups=8, scaling_factor=1.0, sample_size=64),
}


def _register(name: str, config: AutoencoderKLConfig) -> None:
    def create(**overrides: Any) -> AutoencoderKL:
        known = {f.name for f in fields(AutoencoderKLConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"AutoencoderKLConfig has no field(s) {unknown}; fields: "
                            f"{sorted(known)}")
        return AutoencoderKL(replace(config, **overrides))

    create.__name__ = create.__qualname__ = f"vae_{name}"
    register_model(f"vae/{name}")(create)


for _name, _config in PRESETS.items():
    _register(_name, _config)
