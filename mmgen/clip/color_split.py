"""A colour-split image tower for pictures of objects on a flat background (``VisionConfig.
color_split``; the bundled ``shapes-clip``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmgen.clip.model import VisionConfig, VisionOutput, VisionTransformer


class ColorSplitVision(nn.Module):
    """An image tower that keeps shape and colour apart, for pictures of objects on a flat
    background (such as Shapes).

    The ViT sees only a colour-blind silhouette: each pixel's distance from the colour of the
    top-left pixel (the background), divided by the image's largest, so an object looks the
    same in every colour. A per-pixel MLP reads the colours; its features are averaged over
    the silhouette (the object's colour) and over the rest (the background's), which says
    nothing of the object's shape. The embedding is the sum of the ViT's and the colours'
    projections. A discriminative tower that sees both at once learns the training set's
    colour -> shape statistics (purple is never a circle there) and misreads a shape in a
    colour it never had; this one cannot (docs/clip.md)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(config)
        c = config.color_width
        self.color = nn.Sequential(nn.Conv2d(3, c, 1), nn.GELU(), nn.Conv2d(c, c, 1), nn.GELU())
        self.color_proj = nn.Linear(2 * c, config.embed_dim or config.width)

    def forward(self, images: torch.Tensor) -> VisionOutput:
        """Model-ready images (N, 3, S, S), as for :class:`VisionTransformer`."""
        images = images.to(self.color[0].weight.dtype)
        dist = (images - images[:, :, :1, :1]).norm(dim=1, keepdim=True)  # (N, 1, S, S)
        mask = dist / dist.amax((2, 3), keepdim=True).clamp(min=1e-6)  # 1 on the object
        out = self.vit((2 * mask - 1).expand(-1, 3, -1, -1))  # the silhouette in [-1, 1]
        step = (slice(None), slice(None), slice(1, None, 4), slice(1, None, 4))
        feats, mask = self.color(images[step]), mask[step]  # (N, C, S/4, S/4), (N, 1, ...)
        inside = (feats * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1e-6)  # (N, C)
        outside = (feats * (1 - mask)).sum((2, 3)) / (1 - mask).sum((2, 3)).clamp(min=1e-6)
        colors = self.color_proj(torch.cat([inside, outside], 1))  # (N, E)
        return VisionOutput(out.last_hidden_state, out.pooled, out.embeds + colors)

    def preprocess(self, images: Any) -> torch.Tensor:
        return self.vit.preprocess(images)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit.normalize_images(images)
