"""The transformer of both CLIP towers, with OpenAI's parameter names: pre-LayerNorm
residual attention blocks (``ln_1``, ``attn.in_proj_weight``, ``attn.out_proj``, ``ln_2``,
``mlp.c_fc``, ``mlp.c_proj``) whose attention runs through :func:`mmgen.nn.attention`.

Shapes: N batch, L tokens, W width, h heads, d = W / h.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.nn import QuickGELU, attention


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

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, activation: str):
        super().__init__()
        self.resblocks = nn.ModuleList([
            ResidualAttentionBlock(width, heads, mlp_ratio, activation) for _ in range(layers)
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
