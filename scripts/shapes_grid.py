"""Draw a grid of Shapes samples with their captions (the picture in docs/datasets.md).

Usage::

    python scripts/shapes_grid.py                 # writes docs/images/shapes_grid.png
    python scripts/shapes_grid.py --split test_compositional --out /tmp/held_out.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mmgen.data.shapes import SPLITS, caption, render, sample_attrs

ROOT = Path(__file__).resolve().parents[1]
SCALE = 2  # nearest-neighbour upscaling keeps the pixels crisp and visible
PAD = 8  # pixels between cells
LINE = 13  # caption line height
FONT_SIZE = 11


def caption_lines(text: str) -> list[str]:
    """Split a canonical caption into object, position and background lines."""
    head, rest = text.split(" in the ", 1)
    position, background = rest.split(" on a ", 1)
    return [head, f"in the {position}", f"on a {background}"]


def draw_grid(split: str = "train", seed: int = 0, rows: int = 8, cols: int = 8,
              size: int = 64) -> Image.Image:
    """A ``rows x cols`` grid of the first items of ``split``, each above its caption.

    Args:
        split: dataset split to draw from.
        seed: dataset seed.
        rows: grid rows.
        cols: grid columns.
        size: image side in pixels before upscaling.
    """
    tile = size * SCALE
    cell_w, cell_h = tile + PAD, tile + 3 * LINE + PAD
    grid = Image.new("RGB", (cols * cell_w + PAD, rows * cell_h + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=FONT_SIZE)
    for k in range(rows * cols):
        attrs = sample_attrs(split, seed, k)
        x, y = PAD + (k % cols) * cell_w, PAD + (k // cols) * cell_h
        grid.paste(render(attrs, size).resize((tile, tile), Image.NEAREST), (x, y))
        draw.rectangle((x - 1, y - 1, x + tile, y + tile), outline=(190, 190, 190))
        for j, line in enumerate(caption_lines(caption(attrs))):
            draw.text((x, y + tile + 1 + j * LINE), line, fill=(0, 0, 0), font=font)
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "shapes_grid.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_grid(args.split, args.seed).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
