"""Putting generated images side by side: a labelled grid (CLI, demo, docs)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def image_grid(images: Sequence[Image.Image], cols: int | None = None,
               labels: Sequence[str] | None = None, scale: int = 1,
               label_width: int = 22) -> Image.Image:
    """Tile ``images`` (all of one size) in a grid, optionally upscaled by ``scale`` (nearest
    neighbour, for tiny images) and with a caption under each.

    Args:
        images: the images, row-major.
        cols: columns (default: near-square).
        labels: one caption per image, wrapped to ``label_width`` characters.
        scale: integer upscaling factor of each tile.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    w, h = images[0].size
    if any(im.size != (w, h) for im in images):
        raise ValueError("image_grid: all images must have the same size")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    tw, th = w * scale, h * scale
    font = ImageFont.load_default()
    wrapped = [textwrap.wrap(t, label_width) for t in labels] if labels else []
    label_h = 11 * max((len(x) for x in wrapped), default=0) + (4 if labels else 0)
    pad = 2
    grid = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + label_h + pad) + pad),
                     "white")
    draw = ImageDraw.Draw(grid)
    for i, im in enumerate(images):
        x = pad + (i % cols) * (tw + pad)
        y = pad + (i // cols) * (th + label_h + pad)
        grid.paste(im.convert("RGB").resize((tw, th), Image.NEAREST), (x, y))
        for k, line in enumerate(wrapped[i] if labels else []):
            draw.text((x + 1, y + th + 2 + 11 * k), line, fill="black", font=font)
    return grid
