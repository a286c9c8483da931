"""Augmentations of Shapes renders: imperfections like those of generated images, objects in
colours outside the palette, and moves and zooms that keep every label true."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mmgen.data import shapes


def generation_artifacts() -> v2.Transform:
    """Imperfections of generated images (blur, noise, small colour shifts) for images in
    [-1, 1], never geometry: position and size are labels. Draws from torch's global RNG."""
    return v2.Compose([
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2))], p=0.5),
        v2.RandomApply([v2.Lambda(lambda x: x + 0.08 * torch.rand(()) * torch.randn_like(x))],
                       p=0.5),
        v2.RandomApply([v2.Lambda(lambda x: x + 0.1 * (torch.rand(3, 1, 1) - 0.5))], p=0.5),
    ])


def jpeg(image: torch.Tensor, quality: float) -> torch.Tensor:
    """One image (3, H, W) in [0, 1] through JPEG at ``quality`` (as 8-bit RGB)."""
    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=int(quality))
    back = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(back).permute(2, 0, 1)


def real_image_imperfections(image: torch.Tensor) -> torch.Tensor:
    """A render (3, H, W) in [-1, 1] with what real inputs to a Shapes reader have, each
    drawn at random (torch's global RNG, which the Trainer checkpoints): Gaussian blur (sigma
    0.2-1.5 px), pixel noise (sigma up to 12/255), a slight colour shift and brightness change
    that keep the colour's name, and JPEG compression (quality 40-95). Still in [-1, 1].
    Unlike :func:`generation_artifacts` it compresses, and its colour shifts are smaller."""
    x = (image + 1) / 2
    r = torch.rand(6)  # one draw per imperfection (the sixth unused: the reported runs drew it)
    if r[0] < 0.6:
        x = TF.gaussian_blur(x[None], kernel_size=7, sigma=float(0.2 + 1.3 * torch.rand(())))[0]
    if r[1] < 0.6:
        x = x + (12 / 255) * torch.rand(()) * torch.randn_like(x)
    if r[2] < 0.3:
        x = x + 0.06 * (torch.rand(3, 1, 1) - 0.5)  # colour shift
    if r[3] < 0.3:
        x = x * (1 + 0.1 * (torch.rand(()) - 0.5))  # brightness
    x = x.clamp(0, 1)
    if r[4] < 0.5:
        x = jpeg(x, 40 + 55 * float(torch.rand(())))
    return x * 2 - 1


def smooth_field(channels: int, height: int, width: int, cells: int = 4) -> torch.Tensor:
    """(channels, height, width) smooth random field scaled to a largest magnitude of 1:
    normal values on a ``cells`` x ``cells`` grid, bicubically upsampled (torch's global
    RNG)."""
    coarse = torch.randn(1, channels, cells, cells)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    return field / field.abs().amax().clamp_min(1e-6)


def irregular_object(image: torch.Tensor, max_warp: float = 3.0, max_shading: float = 0.25,
                     max_drift: float = 0.45) -> torch.Tensor:
    """A render (3, H, W) in [-1, 1] with what a generated image's object has and a render's
    does not, each drawn at random (torch's global RNG): a colour drifted up to ``max_drift``
    of the way towards another palette colour (never so far that another colour is nearer
    than its own: the name stays true), an outline bent by a smooth random warp (up to
    ``max_warp`` pixels) and uneven fill (the object's colour times 1 + a smooth field of up
    to ``max_shading``)."""
    _, h, w = image.shape
    x = image
    r = torch.rand(6)
    obj = object_mask(x)  # (1, H, W)
    if r[0] < 0.5 and max_drift and bool(obj.any()):
        x = torch.where(obj, drift_color(x[:, obj[0]].mean(1), max_drift * float(r[1]))
                        [:, None, None], x)
    if r[2] < 0.5 and max_warp:  # sample at pixel + smooth displacement; edges soften a little
        d = smooth_field(2, h, w) * max_warp * float(r[3])  # (2, H, W) pixels
        ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype),
                                indexing="ij")
        grid = torch.stack([(xs + d[0]) / (w - 1), (ys + d[1]) / (h - 1)], -1) * 2 - 1
        x = F.grid_sample(x[None], grid[None], mode="bilinear", padding_mode="border",
                          align_corners=True)[0]
        obj = object_mask(x)
    if r[4] < 0.5 and max_shading:  # uneven fill, on the object only
        field = 1 + max_shading * float(r[5]) * smooth_field(1, h, w)  # (1, H, W)
        x = torch.where(obj, ((x + 1) / 2 * field).clamp(0, 1) * 2 - 1, x)
    return x


def object_mask(image: torch.Tensor) -> torch.Tensor:
    """(1, H, W) bool: the pixels of a Shapes image (3, H, W) in [-1, 1] that are not the
    background (the top-left pixel's colour, within 0.1)."""
    return (image - image[:, :1, :1]).abs().amax(0, keepdim=True) > 0.1


PALETTE = torch.tensor(list(shapes.COLOR_RGB.values()), dtype=torch.float32) / 127.5 - 1


def drift_color(color: torch.Tensor, reach: float) -> torch.Tensor:
    """``color`` (3,) in [-1, 1], a palette colour, moved ``reach`` (< 0.5) of the way towards
    a random other palette colour, or less if another one would become nearer than its own."""
    own = int(torch.cdist(color[None], PALETTE).argmin())
    others = [i for i in range(len(PALETTE)) if i != own]
    target = PALETTE[others[int(torch.randint(len(others), ()))]]
    for t in torch.linspace(min(reach, 0.49), 0, 8).tolist():
        moved = color + t * (target - color)
        if int(torch.cdist(moved[None], PALETTE).argmin()) == own:
            return moved
    return color


def off_palette_colors(n: int, rng: np.random.Generator, shape: str | None = None,
                       margin: float = 100.0, held_out_margin: float = 200.0) -> np.ndarray:
    """``n`` random RGB colours (uint8) at least ``margin`` (Euclidean, 0-255 units) from every
    Shapes colour and background colour, and at least ``held_out_margin`` from the colour
    that ``shape`` is never shown in (``shapes.HELD_OUT``). With the defaults no colour is
    nearer to a named colour than red is to orange (103), and a triangle is never painted
    anything like green: no held-out colour-shape pair is shown, even approximately."""
    named = np.array([*shapes.COLOR_RGB.values(), *shapes.BACKGROUND_RGB.values()], float)
    held = np.array([shapes.COLOR_RGB[c] for c, s in shapes.HELD_OUT if s == shape], float)
    out: list[np.ndarray] = []
    while len(out) < n:
        c = rng.integers(0, 256, size=3)
        if np.linalg.norm(named - c, axis=1).min() >= margin and (
                not len(held) or np.linalg.norm(held - c, axis=1).min() >= held_out_margin):
            out.append(c)
    return np.stack(out).astype(np.uint8)


def recolor(image: torch.Tensor, attrs: shapes.ShapeAttrs, rgb: np.ndarray) -> torch.Tensor:
    """A Shapes image (3, H, W) in [-1, 1] with its object painted in ``rgb`` (uint8)."""
    old = torch.tensor(shapes.COLOR_RGB[attrs.color], dtype=image.dtype) / 127.5 - 1
    mask = (image - old[:, None, None]).abs().amax(0) < 1e-3  # (H, W): the object's pixels
    new = torch.tensor(rgb, dtype=image.dtype) / 127.5 - 1
    return torch.where(mask, new[:, None, None], image)


def translate(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``image`` (C, H, W) moved ``dx`` pixels right and ``dy`` down; the uncovered border
    repeats the edge pixels (the uniform background of a Shapes image)."""
    s = max(abs(dx), abs(dy))
    if s == 0:
        return image
    h, w = image.shape[-2:]
    padded = torch.nn.functional.pad(image[None], (s, s, s, s), mode="replicate")[0]
    return padded[:, s - dy:s - dy + h, s - dx:s - dx + w]


def zoom(image: torch.Tensor, factor: float, center: tuple[int, int]) -> torch.Tensor:
    """``image`` (C, H, W) magnified ``factor`` times about pixel ``center`` = (x, y), by
    nearest-pixel sampling (colours stay exact; the border repeats the edge pixels)."""
    h, w = image.shape[-2:]
    cx, cy = center
    x = (cx + (torch.arange(w) - cx) / factor).round().long().clamp(0, w - 1)  # (W,)
    y = (cy + (torch.arange(h) - cy) / factor).round().long().clamp(0, h - 1)  # (H,)
    return image[:, y[:, None], x[None, :]]


def move_and_zoom(image: torch.Tensor, attrs: shapes.ShapeAttrs, rng: np.random.Generator,
                  shift: int, scale: float) -> torch.Tensor:
    """A Shapes image (C, S, S) zoomed about its object by a factor uniform in
    [1 - scale, 1 + scale], then moved by up to ``shift`` pixels per axis, only as far as
    keeps the object whole and off the border (so its shape and position stay true)."""
    size = image.shape[-1]
    cx, cy = shapes.center(attrs.position, size)
    r0 = shapes.half_extent(attrs.size, size)
    room = min(cx, cy, size - 1 - cx, size - 1 - cy) - 1  # pixels from the centre to 1 px in
    factor = min(1 + scale * (2 * rng.random() - 1), room / r0)
    r = math.ceil(r0 * factor)  # the half extent after zooming
    if scale:
        image = zoom(image, factor, (cx, cy))

    def offset(c: int) -> int:  # uniform over the shifts that keep [c-r, c+r] in [1, S-2]
        lo, hi = max(-shift, r + 1 - c), min(shift, size - 2 - r - c)
        return int(rng.integers(lo, hi + 1)) if lo <= hi else 0

    return translate(image, offset(cx), offset(cy))
