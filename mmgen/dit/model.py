"""DiT: the Diffusion Transformer (Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers"), class-conditional as in the paper, or text-conditioned.

A latent (B, C, H, W) is cut into p x p patches, each a token; N = H W / p^2 tokens pass
through ``depth`` transformer blocks conditioned with adaLN-Zero, and a final layer maps each
token back to a p x p patch of the prediction::

    x (B, C, H, W) --x_embedder--> (B, N, D) + pos_embed (fixed 2-D sin-cos)
    t (B,) --t_embedder-->          (B, D) --+
    y (B,) --y_embedder-->          (B, D) --+--> c (B, D)        [class-conditional]
    text (B, L, E) --mean, pooled_embedder--> (B, D) --+          [text: pooled_text]
    blocks x depth:  x += gate_msa * attn(modulate(norm1(x), shift_msa, scale_msa))
                     x += cross_attn(norm_cross(x), text)          [text: cross_attention]
                     x += gate_mlp * mlp(modulate(norm2(x), shift_mlp, scale_mlp))
    final_layer: linear(modulate(norm_final(x), shift, scale)) --unpatchify--> (B, C', H, W)

(shift, scale, gate) of every block come from ``adaLN_modulation(c)``, zero-initialised, so
each block starts as the identity (adaLN-Zero, Sec. 3.2); the final layer is zero-initialised
too. With ``learn_sigma`` the output has 2C channels: the noise prediction, then the variance
interpolation of Nichol & Dhariwal 2021 (the official checkpoints); samplers use the first C.

Parameter names are the official code's (``x_embedder.proj``, ``t_embedder.mlp.0``,
``blocks.0.attn.qkv``, ``blocks.0.adaLN_modulation.1``, ``final_layer.linear``, ...), so the
released ``DiT-XL-2-256x256.pt`` state dicts load with ``strict=True``. Text conditioning is
ours: cross-attention to the text tokens in every block, as PixArt-alpha (Chen et al. 2023),
and/or the mean-pooled tokens added to c.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmgen.nn import MLP, Attention, FusedSelfAttention, PatchEmbed, modulate
from mmgen.nn.embeddings import batch_timesteps, sincos_2d, timestep_embedding
from mmgen.registry import PretrainedModel, check_fields, register_presets


@dataclass
class DiTConfig:
    input_size: int = 32  # latent side the position table is built for (256 px / 8)
    patch_size: int = 2  # side p of the square patch that becomes one token
    in_channels: int = 4  # latent channels
    hidden_size: int = 1152  # token width D
    depth: int = 28  # transformer blocks
    num_heads: int = 16  # attention heads (D must be divisible by them)
    mlp_ratio: float = 4.0  # MLP hidden width / D
    num_classes: int = 1000  # class-conditional: labels 0..num_classes-1 (0: no classes)
    class_dropout_prob: float = 0.1  # training label dropout for guidance; > 0 adds the
    #   "no class" label num_classes to the table (the official models: 0.1)
    learn_sigma: bool = True  # predict the variance too: 2 * in_channels output channels
    cross_attention_dim: int = 0  # text-conditioned: width E of the text token states
    #   (0: not text-conditioned); the name matches the U-Net's, for the pipelines
    cross_attention: bool = True  # text: every block cross-attends to the tokens
    pooled_text: bool = False  # text: add the mean-pooled tokens to the adaLN condition c

    def __post_init__(self) -> None:
        check_fields(self, 1, ("input_size", "patch_size", "in_channels", "hidden_size",
                               "depth", "num_heads"))
        check_fields(self, 0, ("num_classes", "cross_attention_dim"))
        if not 0 <= self.class_dropout_prob < 1 or not self.mlp_ratio > 0:
            raise ValueError(f"DiTConfig.class_dropout_prob must be in [0, 1) and "
                             f"DiTConfig.mlp_ratio > 0, got {self.class_dropout_prob} and "
                             f"{self.mlp_ratio}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"DiTConfig: hidden_size {self.hidden_size} must be divisible by "
                             f"num_heads {self.num_heads}")
        if self.input_size % self.patch_size:
            raise ValueError(f"DiTConfig: input_size {self.input_size} must be a multiple of "
                             f"patch_size {self.patch_size}")
        text = self.cross_attention_dim > 0
        if text and self.num_classes:
            raise ValueError("DiTConfig: a DiT is conditioned on classes (num_classes > 0) or "
                             "on text (cross_attention_dim > 0), not both; set num_classes=0")
        if text and not (self.cross_attention or self.pooled_text):
            raise ValueError("DiTConfig: a text-conditioned DiT needs cross_attention=True or "
                             "pooled_text=True, or it never sees the text")

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels


# ----------------------------------------------------------------------------- embedders


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, D): 256 sinusoidal frequencies [cos, sin], then Linear-SiLU-Linear."""

    def __init__(self, dim: int, frequencies: int = 256):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_embedding(t, self.frequencies, flip_sin_to_cos=True,
                                  downscale_freq_shift=0)  # (B, 256) fp32
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, D)


class LabelEmbedder(nn.Module):
    """Class labels (B,) -> (B, D). In training, labels are replaced by the "no class" label
    with probability ``dropout`` (one network for both predictions of guidance)."""

    def __init__(self, num_classes: int, dim: int, dropout: float):
        super().__init__()
        self.num_classes, self.dropout = num_classes, dropout
        self.embedding_table = nn.Embedding(num_classes + (dropout > 0), dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)  # (B, D)


# ----------------------------------------------------------------------------- blocks


class DiTBlock(nn.Module):
    """A transformer block conditioned by adaLN-Zero on c (B, D); with ``context_dim`` it
    also cross-attends to text tokens (B, L, context_dim)."""

    def __init__(self, config: DiTConfig, context_dim: int = 0):
        super().__init__()
        d = config.hidden_size
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = FusedSelfAttention(d, config.num_heads)
        if context_dim:
            self.norm_cross = nn.LayerNorm(d, eps=1e-6)
            self.cross_attn = Attention(d, context_dim, heads=config.num_heads,
                                        head_dim=d // config.num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(d, int(d * config.mlp_ratio), nn.GELU(approximate="tanh"))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None = None
                ) -> torch.Tensor:
        """x (B, N, D), c (B, D), context (B, L, E) -> (B, N, D)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (B, D)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        if context is not None:
            x = x + self.cross_attn(self.norm_cross(x), context)  # (B, N, D)
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """Tokens (B, N, D) -> patches (B, N, p * p * C_out), adaLN-modulated by c."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 x (B, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, N, p*p*C_out)


# ----------------------------------------------------------------------------- the model


class DiT(PretrainedModel):
    """``dit(x, t, cond) -> prediction``: cond is class labels (B,) for a class-conditional
    DiT, text token states (B or 1, L, cross_attention_dim) for a text-conditioned one."""

    config_class = DiTConfig

    def __init__(self, config: DiTConfig):
        super().__init__(config)
        d, p = config.hidden_size, config.patch_size
        self.x_embedder = PatchEmbed(config.in_channels, d, p)
        self.t_embedder = TimestepEmbedder(d)
        if config.num_classes:
            self.y_embedder = LabelEmbedder(config.num_classes, d, config.class_dropout_prob)
        if config.cross_attention_dim and config.pooled_text:
            self.pooled_embedder = nn.Linear(config.cross_attention_dim, d)
        grid = config.input_size // p
        self.register_buffer("pos_embed", sincos_2d(d, grid, grid)[None])  # (1, N, D)
        context_dim = config.cross_attention_dim if config.cross_attention else 0
        self.blocks = nn.ModuleList(DiTBlock(config, context_dim) for _ in range(config.depth))
        self.final_layer = FinalLayer(d, p, config.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The paper's initialisation: Xavier-uniform linears with zero biases, the patch
        projection like a linear, N(0, 0.02) label and timestep embeddings, and zeros for
        every adaLN modulation and the final linear (adaLN-Zero), so each block starts as
        the identity and the model predicts 0. Text cross-attention outputs start at zero
        too (PixArt-alpha)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.config.num_classes:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        zeros = [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        for block in self.blocks:
            zeros.append(block.adaLN_modulation[-1])
            if hasattr(block, "cross_attn"):
                zeros.append(block.cross_attn.to_out[0])
        for layer in zeros:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor
                ) -> torch.Tensor:
        """Predict from the noisy latent.

        Args:
            x: noisy latents (B, in_channels, H, W), H and W multiples of patch_size.
            t: timesteps, a number or a (), (1,) or (B,) tensor.
            cond: class labels (B,) (int64), or text token states (B or 1, L, E).

        Returns:
            (B, out_channels, H, W): the noise prediction (then, with learn_sigma, the
            variance interpolation).
        """
        b, _, h, w = x.shape
        p = self.config.patch_size
        tokens = self.x_embedder(x) + self._positions(h // p, w // p)  # (B, N, D)
        c = self.t_embedder(batch_timesteps(t, x, "DiT"))  # (B, D)
        context = None
        if self.config.num_classes:
            c = c + self.y_embedder(cond)  # (B, D)
        else:
            context = self._check_text(cond, b).expand(b, -1, -1)  # (B, L, E)
            if self.config.pooled_text:
                c = c + self.pooled_embedder(context.mean(dim=1))  # (B, D)
            context = context if self.config.cross_attention else None
        for block in self.blocks:
            tokens = block(tokens, c, context)  # (B, N, D)
        patches = self.final_layer(tokens, c)  # (B, N, p*p*C_out)
        return self.unpatchify(patches, h // p, w // p)  # (B, C_out, H, W)

    def unpatchify(self, patches: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        """(B, gh*gw, p*p*C) tokens in row-major order -> (B, C, gh*p, gw*p)."""
        p, c = self.config.patch_size, self.config.out_channels
        x = patches.reshape(patches.shape[0], gh, gw, p, p, c)  # (B, gh, gw, p, p, C)
        x = torch.einsum("nhwpqc->nchpwq", x)  # (B, C, gh, p, gw, p)
        return x.reshape(x.shape[0], c, gh * p, gw * p)

    def _positions(self, gh: int, gw: int) -> torch.Tensor:
        """The position table of a gh x gw token grid (1, N, D): the stored one for the
        configured size, recomputed (it is a fixed function) for other sizes."""
        if gh * gw == self.pos_embed.shape[1] and gh == gw:
            return self.pos_embed
        table = sincos_2d(self.config.hidden_size, gh, gw)
        return table[None].to(self.pos_embed.device, self.pos_embed.dtype)

    def _check_text(self, cond: Any, b: int) -> torch.Tensor:
        e = self.config.cross_attention_dim
        if not isinstance(cond, torch.Tensor) or cond.ndim != 3 or cond.shape[-1] != e \
                or cond.shape[0] not in (1, b):
            shape = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"this text-conditioned DiT takes text states of shape (B or 1, L, "
                             f"{e}) with B = {b}, got {shape}")
        return cond


# ----------------------------------------------------------------------------- presets

# The paper's Table 1 (depth, hidden size, heads) x patch sizes 2, 4, 8, for 256x256 images
# (32x32x4 latents of the SD VAE) and 1000 ImageNet classes, as released.
_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}
PRESETS: dict[str, DiTConfig] = {
    f"{size}-{p}": DiTConfig(depth=depth, hidden_size=d, num_heads=heads, patch_size=p)
    for size, (depth, d, heads) in _SIZES.items() for p in (2, 4, 8)
}
# For tests: a class-conditional DiT on 8x8 latents, and a text-conditioned one.
PRESETS["tiny"] = DiTConfig(input_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2,
                            num_classes=10)
PRESETS["tiny-text"] = DiTConfig(input_size=8, patch_size=2, hidden_size=32, depth=2,
                                 num_heads=2, num_classes=0, learn_sigma=False,
                                 cross_attention_dim=32)
register_presets("dit", PRESETS, DiT)
