"""Images that users hand in, as the networks read them: the conversion of any image file or
PIL image to 8-bit RGB, resizing by the long side, and PIL <-> tensor.

:func:`to_rgb` turns what users hand in into 8-bit RGB, one documented conversion per kind
of image:

=====================  ===================================================================
PIL mode               conversion
=====================  ===================================================================
RGB                    none
L, 1 (grayscale)       the gray value in all three channels
I;16, I (16/32-bit    scaled from 0..65535 to 0..255, then as L
  integer gray)
RGBA, LA, PA, P        composited on white (transparent areas become white); a palette
                       image is expanded to RGBA first (its transparency applied)
CMYK, YCbCr            PIL's conversion to RGB (CMYK without a colour profile: naive)
others (F, LAB, HSV)   a ``ValueError`` naming the mode
=====================  ===================================================================

An EXIF orientation tag (photos from phones and cameras) is applied first, so the image is
upright as every viewer shows it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from mmgen.limits import MAX_INPUT_PIXELS

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")  # composited on white
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit gray, scaled to 8 bits
DIRECT_MODES = ("RGB", "L", "1", "CMYK", "YCbCr", "P", "RGBX")  # PIL's convert("RGB") is right


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` upright (EXIF orientation) and as 8-bit RGB, by the table above."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.float64) / 257.0  # 65535 -> 255
        image = Image.fromarray(gray.round().clip(0, 255).astype(np.uint8), mode="L")
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in DIRECT_MODES:
        return image.convert("RGB")
    raise ValueError(f"cannot use an image of PIL mode {mode!r} (e.g. floating-point or "
                     "LAB/HSV pixels); save it as 8- or 16-bit RGB, RGBA or grayscale")


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image file ``path`` as RGB (:func:`to_rgb`); a file over
    ``MMGEN_MAX_INPUT_PIXELS`` is refused from its header, an unreadable one is an
    ``OSError`` naming the file and the reason."""
    from mmgen.data.folder import open_image  # late: keeps the networks' imports light

    return to_rgb(open_image(path, mode=None))


def open_source(item: Image.Image | str | os.PathLike, role: str,
                named: Sequence[tuple[str, Sequence[str], Callable[[str], Image.Image]]] = ()
                ) -> tuple[Image.Image, str]:
    """(RGB image, the label it is recorded by) of a PIL image, an image file, or a name that
    one of ``named`` knows: ``(kind, names, load)`` triples tried in turn, ``load(name)``
    giving the image. A ``FileNotFoundError`` names every kind and name for an unknown one;
    ``role`` ("content", "image", ...) starts the messages."""
    if isinstance(item, Image.Image):
        return to_rgb(item), f"PIL image {item.width}x{item.height}"
    if not isinstance(item, (str, os.PathLike)):
        raise TypeError(f"{role} must be a PIL image, a file path or a name, got "
                        f"{type(item).__name__}")
    label = os.fspath(item)
    if Path(label).exists():
        return read_image(label), label
    for _, names, load in named:
        if label in names:
            return load(label), label
    kinds = " or ".join(kind for kind, _, _ in named)
    names = sorted({name for _, known, _ in named for name in known})
    raise FileNotFoundError(f"{role} {label}: no such file, nor a {kinds} name "
                            f"({', '.join(names)})")


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer one is ``long_side``, aspect kept."""
    factor = long_side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def resize_long_side(image: Image.Image, long_side: int) -> Image.Image:
    """``image`` resized (bicubic, antialiased when shrinking) to long side ``long_side``."""
    size = fit_long_side(*image.size, long_side)
    return image if size == image.size else image.resize(size, Image.BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> float (1, 3, H, W) in [0, 1]."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8))  # (H, W, 3)
    return pixels.permute(2, 0, 1)[None].float().contiguous() / 255.0  # NCHW-contiguous


def to_pil(images: torch.Tensor) -> Image.Image:
    """The first image of (N, 3, H, W) in [0, 1] (clamped, rounded) -> an RGB PIL image."""
    pixels = (images[0].detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGB")  # (H, W, 3)


def png_writer(image: Image.Image, keys: Sequence[str]) -> Callable[[Path], None]:
    """A function writing ``image`` as a PNG to a path, with ``image.info[key]`` of each of
    ``keys`` that it has as an international text chunk (the parameters mmgen records)."""

    def write(path: Path) -> None:
        info = PngImagePlugin.PngInfo()
        for key in keys:
            if key in image.info:
                info.add_itxt(key, image.info[key])
        image.save(path, format="PNG", pnginfo=info)

    return write


def read_png_text(path: str | os.PathLike, key: str) -> str | None:
    """The text chunk ``key`` of the PNG (or other image) at ``path``, or None; chunks after
    the image data are found by decoding it (its size checked against
    ``MMGEN_MAX_INPUT_PIXELS`` first). An unreadable file is a ``ValueError``."""
    try:
        with Image.open(path) as image:
            text = image.info.get(key)
            if not text:
                MAX_INPUT_PIXELS.check(image.width * image.height,
                                       f"{path}: image size {image.width}x{image.height} "
                                       f"({image.width * image.height:,} pixels)")
                text = getattr(image, "text", {}).get(key)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read {path} as an image: {e}") from None
    return text or None
