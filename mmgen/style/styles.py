"""Named style images for style transfer, all offline: bundled photos and painted-by-code.

    list_styles()                  # ['brick', 'cubist', 'grass', ...]
    load_style("swirls", 256)      # PIL RGB image, 256 x 256

Procedural styles, drawn with numpy and PIL from a fixed seed: the same picture every time
and, up to resampling, at every size (features scale with the image); 0.03-0.3 s at 512 px
on one CPU core:

* ``mosaic``: irregular Voronoi tiles in saturated reds, oranges, golds, greens, blues and
  purples, darker at the rims, set in dark grout, like the glass mosaic of pytorch/examples.
* ``swirls``: Van Gogh-like sky, thousands of short curved brush strokes in blues, yellows
  and white following a swirling flow field (the curl of a sum of random vortices).
* ``pointillism``: Seurat-like overlapping dots of pure colour over a light canvas, sampled
  from a smooth landscape (blue-violet sky, orange sun, green and yellow ground).
* ``cubist``: overlapping translucent polygons in earthy ochres, browns, greens and slate
  blues, each lit along a random direction and hatched with fine brush lines, dark outlines.
* ``waves``: Hokusai-like woodblock sea: bands of Prussian blues under cusped crests with
  clawed white foam, fine engraved lines and dark outlines, below a beige paper sky.

Bundled photos that serve as styles (:mod:`mmgen.data.photos`): ``immunohistochemistry``
(stained tissue, brown and blue blobs) and ``hubble_deep_field`` (galaxies on black). The
textures ``brick``, ``grass`` and ``gravel`` are grayscale: they carry no colour, only texture,
so a transfer with them leaves a grey image unless colours are preserved
(``preserve_color=True`` in :func:`mmgen.style.gatys.gatys`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from mmgen.data.photos import load_photo

PHOTO_STYLES = ("brick", "grass", "gravel", "hubble_deep_field", "immunohistochemistry")

# Hand-picked palettes, RGB 0-255.
MOSAIC = [(200, 30, 35), (235, 120, 20), (245, 200, 40), (40, 150, 70), (20, 90, 170),
          (60, 170, 200), (120, 40, 130), (230, 225, 200)]
STARRY = [(15, 35, 95), (30, 70, 160), (70, 120, 200), (120, 170, 220), (240, 210, 70),
          (250, 240, 170), (230, 160, 40)]
SEURAT_SKY = [(90, 130, 220), (150, 110, 210), (120, 190, 230), (250, 250, 240)]
SEURAT_SUN = [(250, 150, 40), (250, 210, 60), (240, 90, 60)]
SEURAT_LAND = [(40, 140, 60), (120, 190, 60), (230, 210, 70), (30, 90, 130), (200, 120, 50)]
CUBIST = [(190, 140, 70), (140, 90, 50), (90, 110, 130), (210, 185, 130), (100, 70, 50),
          (160, 60, 40), (70, 90, 70), (225, 210, 170)]
HOKUSAI = [(15, 35, 80), (25, 65, 130), (60, 110, 170), (110, 160, 200), (245, 240, 225)]


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise (size, size), about [-1, 1]: a random cells x cells grid, bicubic-upsampled."""
    grid = Image.fromarray(rng.uniform(-1, 1, (cells, cells)).astype(np.float32))
    return np.asarray(grid.resize((size, size), Image.BICUBIC))


def _pick(rng: np.random.Generator, palette: list, n: int, jitter: float = 15) -> np.ndarray:
    """``n`` colours drawn from ``palette`` with a little random jitter, uint8 (n, 3)."""
    colours = np.asarray(palette, np.float32)[rng.integers(len(palette), size=n)]
    return np.clip(colours + rng.normal(0, jitter, (n, 3)), 0, 255).astype(np.uint8)


def mosaic(size: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi tiles of a jittered grid; pixels near a tile border become grout."""
    cells = 24  # tiles per side
    n = cells + 4  # two extra rings of tiles so the warped edge is still tiled
    points = (np.stack(np.meshgrid(np.arange(-2, n - 2), np.arange(-2, n - 2), indexing="ij"), -1)
              + rng.uniform(0.1, 0.9, (n, n, 2)))  # (n, n, 2) in grid units
    region = (_noise(rng, n, 4) * 2.5).round().astype(int) % len(MOSAIC)  # colour areas
    index = np.where(rng.uniform(size=region.shape) < 0.3,
                     rng.integers(len(MOSAIC), size=region.shape), region)  # mostly the area's
    base = np.asarray(MOSAIC, np.float32)[index]
    colours = np.clip(base + rng.normal(0, 18, base.shape), 0, 255)  # (n, n, 3)
    warp = 0.35 * np.stack([_noise(rng, size, 6), _noise(rng, size, 6)], -1)
    y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    p = (np.stack([y, x], -1) + 0.5) * cells / size + warp  # (size, size, 2) grid units
    cell = np.floor(p).astype(int) + 2  # index into points
    best = np.full((2, size, size), np.inf)  # nearest and second-nearest distance
    owner = np.zeros((size, size, 2), int)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            c = cell + (dy, dx)  # in range: |warp| < 1
            d = np.linalg.norm(p - points[c[..., 0], c[..., 1]], axis=-1)
            closer = d < best[0]
            best[1] = np.where(closer, best[0], np.minimum(best[1], d))
            owner = np.where(closer[..., None], c, owner)
            best[0] = np.where(closer, d, best[0])
    shade = 1.0 - 0.45 * best[0] + 0.08 * _noise(rng, size, size // 8)  # darker at the rims
    image = colours[owner[..., 0], owner[..., 1]] * shade[..., None]
    grout = np.clip((best[1] - best[0]) / 0.12, 0, 1)[..., None]  # 0 on a border
    return (image * grout + (1 - grout) * np.array([35, 30, 28])).clip(0, 255).astype(np.uint8)


def swirls(size: int, rng: np.random.Generator) -> np.ndarray:
    """Short strokes that follow the curl of a stream function made of random vortices."""
    n_vortex, n_strokes, n_steps = 14, 5000, 12
    centres = rng.uniform(0, 1, (n_vortex, 2))
    radii, spin = rng.uniform(0.05, 0.16, n_vortex), rng.choice([-1, 1], n_vortex)

    def velocity(p: np.ndarray) -> np.ndarray:  # (n, 2) -> unit (n, 2), p = (x, y) in [0, 1]
        d = p[:, None] - centres  # (n, n_vortex, 2)
        w = spin * np.exp(-(d ** 2).sum(-1) / (2 * radii ** 2)) / radii ** 2  # (n, n_vortex)
        v = np.stack([(w * d[..., 1]).sum(1), -(w * d[..., 0]).sum(1)], -1)  # curl
        v[:, 0] += 6.0 + 4.0 * np.sin(6 * p[:, 1])  # a rolling wind from the left
        return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-6)

    canvas = Image.fromarray(np.full((size, size, 3), STARRY[0], np.uint8))
    draw = ImageDraw.Draw(canvas)
    p = rng.uniform(-0.02, 1.02, (n_strokes, 2))
    path = [p]
    for _ in range(n_steps):
        p = p + 0.006 * velocity(p)
        path.append(p)
    path = np.stack(path, 1) * size  # (n_strokes, n_steps + 1, 2) in pixels
    light = _noise(rng, 64, 5)[(p[:, 1].clip(0, 0.99) * 64).astype(int),
                               (p[:, 0].clip(0, 0.99) * 64).astype(int)]  # bright clusters
    index = np.clip((light + 1) * 3.5 + rng.normal(0, 0.8, n_strokes), 0, 6).astype(int)
    colours = np.clip(np.asarray(STARRY, np.float32)[index]
                      + rng.normal(0, 12, (n_strokes, 3)), 0, 255).astype(np.uint8)
    width = max(1, round(size / 110))
    for stroke, colour in zip(path, colours, strict=True):
        draw.line([tuple(q) for q in stroke], fill=tuple(int(c) for c in colour), width=width,
                  joint="curve")
    return np.asarray(canvas)


def pointillism(size: int, rng: np.random.Generator) -> np.ndarray:
    """Dots of palette colours whose palette follows a smooth landscape (sky, sun, ground)."""
    n_dots = 9000
    x, y = rng.uniform(0, 1, n_dots), rng.uniform(0, 1, n_dots)
    horizon = 0.55 + 0.08 * np.sin(2 * np.pi * (x * 1.3 + rng.uniform()))
    sun = np.hypot(x - 0.7, y - 0.25) < 0.12 + 0.03 * rng.normal(size=n_dots)
    colours = np.where(y[:, None] < horizon[:, None], _pick(rng, SEURAT_SKY, n_dots, 20),
                       _pick(rng, SEURAT_LAND, n_dots, 20))
    colours = np.where(sun[:, None], _pick(rng, SEURAT_SUN, n_dots, 15), colours)
    radii = rng.uniform(0.004, 0.009, n_dots) * size
    canvas = Image.fromarray(np.full((size, size, 3), (238, 232, 215), np.uint8))
    draw = ImageDraw.Draw(canvas)
    for cx, cy, r, colour in zip(x * size, y * size, radii, colours, strict=True):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(c) for c in colour))
    return np.asarray(canvas)


def cubist(size: int, rng: np.random.Generator) -> np.ndarray:
    """Overlapping random polygons, flat colours shaded along a direction, dark outlines."""
    n_polygons = 45
    image = np.full((size, size, 3), CUBIST[3], np.float32)
    y, x = np.mgrid[0:size, 0:size] / size
    ink = np.array([40, 30, 25], np.float32)
    for colour in _pick(rng, CUBIST, n_polygons, 12).astype(np.float32):
        centre, radius = rng.uniform(-0.05, 1.05, 2), rng.uniform(0.1, 0.3)
        k = rng.integers(3, 6)  # triangles to pentagons, corners roughly evenly spread
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * (np.arange(k) + rng.uniform(
            -0.25, 0.25, k)) / k
        corners = centre + radius * rng.uniform(0.6, 1.3, (k, 1)) * np.stack(
            [np.cos(angles), np.sin(angles)], -1)
        polygon = [tuple(q) for q in corners * size]
        mask = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(mask)
        draw.polygon(polygon, fill=1)
        draw.line(polygon + polygon[:1], fill=2, width=max(1, round(size / 170)))
        mask = np.asarray(mask)
        inside = mask == 1
        px, py = x[inside], y[inside]  # (m,) coordinates of the facet's pixels
        theta, phi = rng.uniform(0, 2 * np.pi, 2)  # light and brush-hatching directions
        ramp = (px - centre[0]) * np.cos(theta) + (py - centre[1]) * np.sin(theta)
        hatch = np.sin(2 * np.pi * 80 * (px * np.cos(phi) + py * np.sin(phi)))
        shaded = colour * (1.0 + 0.6 * ramp / radius + 0.07 * hatch)[:, None]  # a lit facet
        image[inside] = 0.8 * shaded + 0.2 * image[inside]  # slightly translucent
        image[mask == 2] = ink
    grain = 10 * _noise(rng, size, size // 3)[..., None]  # canvas grain
    return (image + grain).clip(0, 255).astype(np.uint8)


def waves(size: int, rng: np.random.Generator) -> np.ndarray:
    """Bands under cusped wavy edges, shaded blue with engraved lines and clawed white foam."""
    n_bands = 8
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.empty((size, size, 3), np.float32)
    image[:] = (232, 220, 190)  # beige paper sky
    image += 12 * _noise(rng, size, 12)[..., None]
    for k in range(n_bands):
        f, phase = rng.uniform(1.5, 4) / (1 + 0.1 * k), rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.04, 0.07) * (1 + 0.15 * k)  # nearer waves are bigger
        s = np.abs(np.sin(np.pi * f * x[0] + phase))  # cusps where s = 0: sharp crests
        swell = 0.015 * np.sin(2 * np.pi * rng.uniform(5, 9) * x[0] + rng.uniform(0, 6))
        boundary = 0.22 + k * 0.1 - amp * (1 - s) ** 2 + swell  # (size,) y of the edge
        below = y - boundary  # (size, size) distance under this band's edge
        blue = np.asarray(HOKUSAI[k % 4], np.float32)
        lines = 0.5 + 0.5 * np.cos(2 * np.pi * below / 0.011)  # engraved lines
        band = blue * (0.8 + 0.3 * lines[..., None])
        crest = (1 - s) ** 4  # near a crest
        depth = 0.012 + 0.04 * crest  # foam reaches deeper under crests
        claws = np.sin(2 * np.pi * (90 * x + 40 * below) + k) > -0.2  # foam fingers
        foam = (below < depth) & (claws | (below < 0.01))
        band[foam] = HOKUSAI[4]
        band[np.abs(below) < 0.0035] = (10, 20, 45)  # dark outline
        image = np.where((below >= -0.0035)[..., None], band, image)
    return image.clip(0, 255).astype(np.uint8)


# name -> (painter(size, rng) -> uint8 (size, size, 3), its seed)
PAINTERS: dict[str, tuple[Callable[[int, np.random.Generator], np.ndarray], int]] = {
    "cubist": (cubist, 3),
    "mosaic": (mosaic, 1),
    "pointillism": (pointillism, 4),
    "swirls": (swirls, 2),
    "waves": (waves, 5),
}


def list_styles(kind: str | None = None) -> list[str]:
    """Names accepted by :func:`load_style`, sorted.

    Args:
        kind: ``"procedural"`` or ``"photo"`` to list only that kind; ``None`` lists all.
    """
    if kind not in (None, "procedural", "photo"):
        raise ValueError(f"kind must be None, 'procedural' or 'photo', got {kind!r}")
    names = (list(PAINTERS) if kind != "photo" else []) + (
        list(PHOTO_STYLES) if kind != "procedural" else [])
    return sorted(names)


def load_style(name: str, size: int = 512) -> Image.Image:
    """One style image as a ``size x size`` RGB PIL image.

    Args:
        name: one of :func:`list_styles`.
        size: side of the square image in pixels (>= 16). Procedural styles are drawn at this
            size; photos are resized and center-cropped as in :func:`~mmgen.data.photos.load_photo`.
    """
    if name not in PAINTERS and name not in PHOTO_STYLES:
        raise ValueError(f"unknown style {name!r}; available styles: {', '.join(list_styles())}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels per side), got {size!r}")
    if name in PHOTO_STYLES:
        return load_photo(name, size)
    painter, seed = PAINTERS[name]
    return Image.fromarray(painter(size, np.random.default_rng(seed)))
