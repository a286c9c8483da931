"""Embeddings shared by the diffusion U-Net and DiT: sinusoidal timesteps, the timestep MLP,
and the ViT/DiT patch embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    *,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    scale: float = 1.0,
    max_period: float = 10000,
) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps (Vaswani et al. 2017, DDPM).

    Frequency i of half = dim // 2 is exp(-log(max_period) * i / (half - downscale_freq_shift)).
    Settings used by the checkpoints we load:
        Stable Diffusion U-Net: flip_sin_to_cos=True, downscale_freq_shift=0.
        DiT:                    flip_sin_to_cos=True, downscale_freq_shift=0 (cos first).
        diffusers defaults:     flip_sin_to_cos=False, downscale_freq_shift=1.

    Args:
        t: timesteps, shape (N,).
        dim: embedding size; an odd dim gets one trailing zero.
        flip_sin_to_cos: put the cosines first ([cos, sin]) instead of [sin, cos].
        downscale_freq_shift: shift in the frequency denominator, see above.
        scale: multiplier of the angles t * freq.
        max_period: the slowest frequency's period.

    Returns:
        Float32 tensor of shape (N, dim).
    """
    if t.ndim != 1:
        raise ValueError(
            f"timestep_embedding expects a 1-D tensor of N timesteps, got shape {tuple(t.shape)}. "
            "For a single timestep use t.reshape(1), for a batch t.expand(batch_size)."
        )
    half = dim // 2
    if half - downscale_freq_shift <= 0:
        raise ValueError(
            f"timestep_embedding: dim={dim} is too small for "
            f"downscale_freq_shift={downscale_freq_shift}; use dim >= 4 or shift 0."
        )
    # Same operation order as diffusers and DiT, so angles of t ~ 1000 agree to the last bit.
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))  # (half,)
    angles = scale * (t.float()[:, None] * freqs[None, :])  # (N, half)
    if flip_sin_to_cos:
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (N, 2*half)
    else:
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (N, 2*half)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))  # (N, dim)
    return emb


def batch_timesteps(t: torch.Tensor | float, x: torch.Tensor, model: str) -> torch.Tensor:
    """Timesteps given as a number or a (), (1,) or (B,) tensor -> a (B,) tensor on x's
    device (B = ``x.shape[0]``); ``model`` names the caller in the error."""
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1 or t.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{model}: t must be a number or a tensor of shape (), (1,) or "
                         f"(B,) = ({x.shape[0]},); got shape {tuple(t.shape)}.")
    return t.expand(x.shape[0])


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table of a (height x width) token grid in row-major
    order, (height * width, dim): the first half of the channels encodes the column, the
    second the row (MAE's and DiT's order), each as [sin, cos] of the position times
    1 / 10000^(i / (dim / 4)). Computed in float64, as they do with numpy; float32 out."""
    if dim % 4:
        raise ValueError(f"sincos_2d: dim must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                                torch.arange(width, dtype=torch.float64), indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, D/2) = [sin, cos]
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()  # (H*W, D)


class TimestepEmbedding(nn.Module):
    """MLP applied to the sinusoidal timestep embedding: linear_1 -> SiLU -> linear_2.

    Args:
        in_dim: size of the sinusoidal embedding.
        dim: hidden size.
        out_dim: output size; defaults to dim.
    """

    def __init__(self, in_dim: int, dim: int, out_dim: int | None = None):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, out_dim or dim)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(emb)))  # (N, in_dim) -> (N, out_dim)


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each to a token (ViT, DiT).

    Args:
        in_channels: image channels.
        dim: token channels.
        patch_size: side of a square patch; image height and width must be multiples of it.
        bias: whether the projection has a bias.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(
            in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, dim) with N = (H / p) * (W / p), tokens in row-major order."""
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"PatchEmbed: image size {h}x{w} is not divisible by patch_size={p}. "
                f"Resize or crop the input to a multiple of {p}."
            )
        x = self.proj(x)  # (B, dim, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (B, N, dim)
