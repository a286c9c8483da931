"""Transformer building blocks shared by the U-Net, DiT and CLIP families.

Parameter names follow diffusers (`to_q`, `to_out.0`, `net.0.proj`, `norm1`, `attn1`, ...)
so diffusers state dicts load into these modules with `strict=True`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.nn.attention import attention

ACTIVATIONS = ("geglu", "gelu", "gelu_tanh", "quick_gelu")


class Attention(nn.Module):
    """Multi-head self- or cross-attention (Vaswani et al. 2017), diffusers' `Attention` layout.

    Args:
        dim: channels of the input x (the queries).
        context_dim: channels of the context for cross-attention; None for self-attention.
        heads: number of attention heads.
        head_dim: channels per head; the inner width is heads * head_dim.
        qkv_bias: whether to_q, to_k, to_v have a bias.
        out_bias: whether the output projection has a bias.
        dropout: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        head_dim: int = 64,
        qkv_bias: bool = False,
        out_bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.context_dim = context_dim
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=out_bias), nn.Dropout(dropout))
        self.backend: str | None = None  # attention backend of this layer; None: the default
        # fuse_projections' stacked copy of to_q/to_k/to_v (not saved; None: not fused)
        self.register_buffer("qkv_weight", None, persistent=False)  # (3 inner, dim)
        self.register_buffer("qkv_bias", None, persistent=False)  # (3 inner,)

    def fuse_projections(self) -> None:
        """Compute self-attention's q, k and v with one matmul (inference): a copy of
        ``to_q``, ``to_k``, ``to_v``'s weights stacked, which ``forward`` then uses. Not in
        the state dict; call again after changing the weights. No-op for cross-attention."""
        if self.context_dim is not None:
            return
        parts = (self.to_q, self.to_k, self.to_v)
        self.qkv_weight = torch.cat([p.weight for p in parts]).detach()  # (3 inner, dim)
        if parts[0].bias is not None:
            self.qkv_bias = torch.cat([p.bias for p in parts]).detach()  # (3 inner,)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from x (B, N, dim) to context (B, M, context_dim), or to x itself.

        `mask` is passed to `mmgen.nn.attention` and must broadcast to (B, heads, N, M).
        """
        if context is not None and self.context_dim is None:
            raise ValueError(
                "This Attention was built for self-attention (context_dim=None) but got a "
                "context. Build it with context_dim=<context channels> for cross-attention."
            )
        context = x if context is None else context
        b, n, _ = x.shape
        m = context.shape[1]
        h, d = self.heads, self.head_dim
        if self.qkv_weight is not None and context is x:
            qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # (B, N, 3 h d)
            q, k, v = qkv.view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)  # each (B, h, N, d)
        else:
            q = self.to_q(x).view(b, n, h, d).transpose(1, 2)  # (B, h, N, d)
            k = self.to_k(context).view(b, m, h, d).transpose(1, 2)  # (B, h, M, d)
            v = self.to_v(context).view(b, m, h, d).transpose(1, 2)  # (B, h, M, d)
        out = attention(q, k, v, mask=mask, backend=self.backend)  # (B, h, N, d)
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)  # (B, N, h*d)
        return self.to_out(out)  # (B, N, dim)


class FusedSelfAttention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output ``proj``:
    timm's layout, used by the original DiT and ViT checkpoints.

    Args:
        dim: channels of the tokens; split into ``heads`` heads.
        heads: number of attention heads.
        qkv_bias: whether ``qkv`` has a bias.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"FusedSelfAttention: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.backend: str | None = None  # attention backend of this layer; None: the default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)  # (B, N, 3, h, d/h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, N, d/h)
        out = attention(q, k, v, backend=self.backend)  # (B, h, N, d/h)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class MLP(nn.Module):
    """Two-layer perceptron ``fc2(act(fc1(x)))``: timm's ``Mlp`` layout (DiT, ViT).

    Args:
        dim: input and output channels.
        hidden: hidden channels.
        act: the activation module.
    """

    def __init__(self, dim: int, hidden: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (..., dim) -> (..., dim)


class GEGLU(nn.Module):
    """Gated GELU projection (Shazeer 2020, "GLU Variants Improve Transformer"):
    value * gelu(gate), with value and gate the two halves of one linear layer."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)  # 2 x (..., dim_out)
        return value * F.gelu(gate)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the sigmoid approximation of GELU (Hendrycks & Gimpel 2016,
    sec. 2) that OpenAI trained CLIP with; its weights need it, not ``nn.GELU``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LinearActivation(nn.Module):
    """A linear layer followed by "gelu", "gelu_tanh" or "quick_gelu" (:class:`QuickGELU`)."""

    def __init__(self, dim_in: int, dim_out: int, activation: str):
        super().__init__()
        acts = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"),
                "quick_gelu": QuickGELU()}
        if activation not in acts:
            raise ValueError(f"unknown LinearActivation activation {activation!r}; choose one "
                             f"of {sorted(acts)}")
        self.proj = nn.Linear(dim_in, dim_out)
        self.activation = activation
        self.act = acts[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.proj(x))  # (..., dim_out)


class FeedForward(nn.Module):
    """Transformer MLP: project up with an activation, dropout, project down.

    Layout matches diffusers' FeedForward: net.0 (proj + activation), net.1 (dropout),
    net.2 (output linear).

    Args:
        dim: input channels.
        mult: hidden width = int(dim * mult).
        activation: "geglu", "gelu", "gelu_tanh" or "quick_gelu".
        dropout: dropout between the two projections.
        dim_out: output channels; defaults to dim.
    """

    def __init__(
        self,
        dim: int,
        mult: float = 4,
        activation: str = "geglu",
        dropout: float = 0.0,
        dim_out: int | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown FeedForward activation {activation!r}; choose one of {ACTIVATIONS}."
            )
        inner = int(dim * mult)
        if activation == "geglu":
            project_in = GEGLU(dim, inner)
        else:
            project_in = LinearActivation(dim, inner, activation)
        self.net = nn.Sequential(project_in, nn.Dropout(dropout), nn.Linear(inner, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (..., dim) -> (..., dim_out)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block as in Stable Diffusion (diffusers BasicTransformerBlock):
    x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)).

    Args:
        dim: channels of the token sequence.
        heads: attention heads.
        head_dim: channels per head.
        context_dim: channels of the cross-attention context; None means no cross-attention
            (no norm2/attn2 layers).
        activation: feed-forward activation, see FeedForward.
        dropout: dropout in the attention outputs and the feed-forward.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        context_dim: int | None = None,
        activation: str = "geglu",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=heads, head_dim=head_dim, dropout=dropout)
        if context_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(
                dim, context_dim, heads=heads, head_dim=head_dim, dropout=dropout
            )
        else:
            self.norm2 = self.attn2 = None
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation=activation, dropout=dropout)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, N, dim), context (B, M, context_dim); masks broadcast to (B, heads, N, N)
        for self-attention and (B, heads, N, M) for cross-attention."""
        if (context is None) != (self.attn2 is None):
            raise ValueError(
                "TransformerBlock: pass a context exactly when the block was built with "
                f"context_dim (context_dim set: {self.attn2 is not None}, "
                f"context given: {context is not None})."
            )
        x = x + self.attn1(self.norm1(x), mask=mask)  # (B, N, dim)
        if self.attn2 is not None:
            x = x + self.attn2(self.norm2(x), context, mask=context_mask)  # (B, N, dim)
        return x + self.ff(self.norm3(x))  # (B, N, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive LayerNorm modulation from DiT (Peebles & Xie 2023): x * (1 + scale) + shift.

    Args:
        x: normalized tokens, shape (B, N, D).
        shift: per-sample shift, shape (B, D).
        scale: per-sample scale, shape (B, D); zero means identity.
    """
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # (B, N, D)
