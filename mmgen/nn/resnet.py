"""Convolutional blocks shared by the diffusion U-Net, AutoencoderKL and the GANs.

Parameter names follow diffusers (ResnetBlock2D, Downsample2D, Upsample2D) so that
Stable Diffusion U-Net and VAE weights load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Residual block GroupNorm -> SiLU -> conv3x3 (+ time embedding) -> GroupNorm -> SiLU ->
    dropout -> conv3x3, plus a skip connection (He et al. 2016; DDPM's U-Net variant).

    Args:
        in_channels: input channels.
        out_channels: output channels; defaults to in_channels. When they differ, the skip
            goes through a 1x1 conv named conv_shortcut.
        temb_channels: size of the time embedding added after conv1; None for blocks without
            time conditioning (the VAE).
        groups: GroupNorm groups; must divide in_channels and out_channels.
        eps: GroupNorm epsilon.
        dropout: dropout before conv2.
        output_scale_factor: the sum (skip + residual) is divided by this.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = 512,
        groups: int = 32,
        eps: float = 1e-6,
        dropout: float = 0.0,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        for channels in (in_channels, out_channels):
            if channels % groups:
                raise ValueError(
                    f"ResBlock: groups={groups} must divide the channel count {channels}. "
                    "Pick channel counts that are multiples of groups, or fewer groups."
                )
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = (
            nn.Linear(temb_channels, out_channels) if temb_channels is not None else None
        )
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = None
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, H, W), temb (B, temb_channels) -> (B, C_out, H, W)."""
        if (temb is None) != (self.time_emb_proj is None):
            raise ValueError(
                "ResBlock: pass temb exactly when the block was built with temb_channels "
                f"(temb_channels set: {self.time_emb_proj is not None}, "
                f"temb given: {temb is not None})."
            )
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]  # + (B, C_out, 1, 1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, C_out, H, W)
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)  # (B, C_out, H, W)
        return (skip + h) / self.output_scale_factor


class Downsample(nn.Module):
    """Halve the spatial size with a stride-2 3x3 conv, or with 2x2 average pooling.

    Args:
        channels: input channels.
        out_channels: output channels; defaults to channels (must equal it without conv).
        use_conv: stride-2 conv if True, average pooling if False.
        padding: conv padding. 0 means the asymmetric pad (right and bottom by one pixel)
            used by the Stable Diffusion VAE encoder; 1 is the U-Net's symmetric padding.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        use_conv: bool = True,
        padding: int = 1,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.asymmetric_pad = use_conv and padding == 0
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=padding)
        elif out_channels != channels:
            raise ValueError(
                f"Downsample with use_conv=False cannot change channels ({channels} -> "
                f"{out_channels}); set use_conv=True or out_channels={channels}."
            )
        else:
            self.conv = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric_pad:
            x = F.pad(x, (0, 1, 0, 1))  # (B, C, H+1, W+1): pad right and bottom only
        return self.conv(x)  # (B, C_out, H/2, W/2)


class Upsample(nn.Module):
    """Double the spatial size with nearest-neighbour interpolation, then a 3x3 conv.

    Args:
        channels: input channels.
        out_channels: output channels; defaults to channels (must equal it without conv).
        use_conv: apply the 3x3 conv after interpolating.
    """

    def __init__(self, channels: int, out_channels: int | None = None, use_conv: bool = True):
        super().__init__()
        out_channels = out_channels or channels
        if not use_conv and out_channels != channels:
            raise ValueError(
                f"Upsample with use_conv=False cannot change channels ({channels} -> "
                f"{out_channels}); set use_conv=True or out_channels={channels}."
            )
        self.conv = (
            nn.Conv2d(channels, out_channels, kernel_size=3, padding=1) if use_conv else None
        )

    def forward(self, x: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C_out, 2H, 2W), or (B, C_out, *output_size) when given (the
        U-Net passes the skip connection's size when an odd input size was halved)."""
        if output_size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")  # (B, C, *output_size)
        return x if self.conv is None else self.conv(x)
