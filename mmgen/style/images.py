"""Images in and out of style transfer: the one tensor check, PIL <-> tensor, and the
conversion of any image file or PIL image to RGB.

Every network and optimisation of :mod:`mmgen.style` reads float RGB batches (N, 3, H, W);
:func:`check_images` is their shared check. :func:`to_rgb` turns what users hand in into
8-bit RGB, one documented conversion per kind of image:

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

import numpy as np
import torch
from PIL import Image, ImageOps

from mmgen.limits import MAX_INPUT_PIXELS

MIN_SIDE = 32  # smallest input image side: below it, too little to stylise or copy a style from
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")  # composited on white
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit gray, scaled to 8 bits
DIRECT_MODES = ("RGB", "L", "1", "CMYK", "YCbCr", "P", "RGBX")  # PIL's convert("RGB") is right


def check_images(images: torch.Tensor, name: str, owner: str, min_size: int = 1,
                 value_range: str = "[0, 1]") -> torch.Tensor:
    """``images`` if it is a float RGB batch (N, 3, H, W) with H, W >= ``min_size``; a
    ``ValueError`` saying what was wrong and how to fix it otherwise.

    Args:
        images: the tensor to check.
        name: what it is, for the message ("content", "style", "images").
        owner: who expects it, for the message ("gatys", "TransformerNet", "AdaIN").
        min_size: smallest H and W the owner can process.
        value_range: the range the owner expects, for the message.
    """
    is_tensor = isinstance(images, torch.Tensor)
    if not is_tensor or images.ndim != 4 or images.shape[1] != 3 \
            or min(images.shape[-2:]) < min_size:
        shape = tuple(images.shape) if is_tensor else type(images).__name__
        sides = f" with H, W >= {min_size}" if min_size > 1 else ""
        hint = "; add a batch dimension with x[None]" if is_tensor and images.ndim == 3 else ""
        raise ValueError(f"{owner} expects {name} of shape (N, 3, H, W){sides}, got {shape}: "
                         f"RGB images in {value_range}{hint}")
    if not images.is_floating_point():
        raise ValueError(f"{owner} expects {name} as a float tensor in {value_range}, got "
                         f"{images.dtype}; convert uint8 images with x.float() (/ 255 for "
                         "[0, 1])")
    return images


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


def check_size(image: Image.Image, what: str, min_side: int = MIN_SIDE) -> None:
    """A ``ValueError`` with the sizes if ``image`` is smaller than ``min_side`` a side or
    larger than ``MMGEN_MAX_INPUT_PIXELS`` (:mod:`mmgen.limits`)."""
    w, h = image.size
    if min(w, h) < min_side:
        raise ValueError(f"{what} is {w}x{h} px; style transfer needs images of at least "
                         f"{min_side} px a side")
    MAX_INPUT_PIXELS.check(w * h, f"{what}: image size {w}x{h} ({w * h:,} pixels)")


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
