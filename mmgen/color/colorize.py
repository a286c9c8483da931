"""Colorization for users: one request (:class:`ColorizeRequest`), one function
(:func:`colorize`).

    from mmgen.color.colorize import ColorizeRequest, colorize, save_png

    image = colorize("grandma.jpg")                                    # photo-colorizer
    image = colorize("grandma.jpg", ColorizeRequest(colorfulness=1.5))  # more colour
    image = colorize("grandma.jpg", ColorizeRequest(method="reference"), reference="beach.jpg")
    image = colorize("grandma.jpg", ColorizeRequest(method="zhang",
                                                    weights="siggraph17-df00044c.pth"))
    save_png(image, "out.png")  # with its parameters in the PNG's text chunks

Three methods:

* ``learned``: mmgen's own colorizer (:mod:`mmgen.color.net`): the bundled
  ``photo-colorizer`` (its recipe has the same name), or a model folder or name in ``weights``.
* ``reference``: colour copied from a ``reference`` photo the user picks
  (:mod:`mmgen.color.reference`, after Welsh et al. 2002; no network).
* ``zhang``: Zhang et al.'s published ECCV16 or SIGGRAPH17 network from the file in
  ``weights`` (:mod:`mmgen.color.zhang`; they cannot be bundled).

The input is a PIL image, an image file or a bundled photo name, of any PIL mode
(:mod:`mmgen.data.images`' conversions: 16-bit gray scaled to 8 bits, transparency composited
on white, CMYK and palettes converted). Only its lightness (CIE L) is read: a colour image is
treated as the black-and-white photo of it, its colour discarded. The output has the input's
size and the input's L everywhere (within 8-bit rounding): the network sees the image at long
side ``size`` and only its colour is upsampled (:mod:`mmgen.color.predict`).

``colorfulness`` (> 0, default 1): for a class-predicting network (``photo-colorizer``,
ECCV16) the annealed-mean temperature is 0.38 / colorfulness (1: Zhang et al.'s 0.38; 2:
T = 0.19, more saturated; 0.38: T = 1, the plain mean); for the others (regression networks,
SIGGRAPH17, the reference method) the chroma is multiplied by it. The sepia guard
(``sepia_guard``, class networks): an output whose coloured pixels nearly all lie in the
brown-yellow hues at low chroma (:func:`is_sepia`) is decoded again at half the temperature,
up to twice; the params record whether it fired.

The result is a PIL image whose ``info`` holds its :class:`ColorizeParams` (PNG text chunks
``parameters``, readable, and ``mmgen-colorize``, JSON; :func:`save_png` writes both,
:func:`read_colorize_params` reads them back).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmgen.checkpoint import write_file
from mmgen.color.lab import DEFAULT_TEMPERATURE, lab_to_rgb, rgb_to_lab
from mmgen.color.predict import DEFAULT_SIZE, network_input, with_colour
from mmgen.data.images import open_source, png_writer, read_png_text, to_pil, to_tensor
from mmgen.data.photos import list_photos, load_photo
from mmgen.limits import MAX_INPUT_PIXELS, check_image_size, check_seed
from mmgen.pipeline import weights_hash
from mmgen.registry import JSONParams

METHODS = ("learned", "reference", "zhang")
DEFAULT_MODEL = "photo-colorizer"  # bundled (recipe photo-colorizer)
JSON_KEY = "mmgen-colorize"
MIN_SIDE = 16  # smallest input side
MAX_COLORFULNESS = 4.0
SEPIA_HUES = (30.0, 100.0)  # degrees of atan2(b, a): orange, brown, yellow
SEPIA_SHARE, SEPIA_CHROMA = 0.85, 20.0  # is_sepia: share of coloured pixels in those hues,
#   at a mean chroma below this
SEPIA_RETRIES = 2  # the guard halves the temperature at most this often

ImageSource = Image.Image | str | os.PathLike


@dataclass
class ColorizeRequest:
    """How to colorize; every field is checked when the request is made."""

    method: str = "learned"  # "learned", "reference" or "zhang" (module docstring)
    colorfulness: float = 1.0  # > 0: the temperature 0.38 / colorfulness, or a chroma factor
    size: int = DEFAULT_SIZE  # long side at which the network (reference: the matching) sees
    #   the image (px); the output keeps the input's size
    weights: str | None = None  # learned: a model folder or name (default photo-colorizer);
    #   zhang: the published .pth / .safetensors file (required)
    sepia_guard: bool = True  # class networks: re-decode a sepia result more colourfully
    seed: int = 0  # reference: the seed of its sampling of the reference

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        c = self.colorfulness
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (
                math.isfinite(c) and 0 < c <= MAX_COLORFULNESS):
            raise ValueError(f"colorfulness must be a number in (0, {MAX_COLORFULNESS:g}] "
                             f"(1: the default), got {c!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < MIN_SIDE:
            raise ValueError(f"size must be a whole number >= {MIN_SIDE}, got {self.size!r}")
        check_image_size(self.size, self.size, "the network's image (size)")
        check_seed(self.seed)
        if self.weights is not None:
            self.weights = os.fspath(self.weights)
        if self.method == "zhang" and not self.weights:
            raise ValueError("method zhang needs weights: the file of Zhang et al.'s ECCV16 "
                             "(colorization_release_v2-9b330a0b.pth) or SIGGRAPH17 "
                             "(siggraph17-df00044c.pth) network, which mmgen cannot bundle")
        if self.method == "reference" and self.weights:
            raise ValueError("method reference uses no network: give no weights")


@dataclass
class ColorizeParams(JSONParams):
    """What made a colorized image; carried in its PNG (:func:`save_png`)."""

    method: str
    colorfulness: float
    temperature: float  # class networks: the annealed-mean T used (after the guard); else 0
    size: int  # long side the network saw
    width: int  # output width
    height: int
    image: str  # file, photo name or "PIL image WxH"
    input_mode: str  # "gray", or "color (L only)" for a colour input
    reference: str  # method reference: the reference's file or name; else ""
    weights: str  # model name, folder or file; "" for the reference method
    weights_hash: str  # first 10 hex digits of the SHA-256 of the network's weights
    sepia_guard: str  # "off", "not needed", "applied" or "not available"

    def text(self) -> str:
        """The readable ``parameters`` chunk."""
        lines = [f"Colorize: {self.method}, colorfulness {self.colorfulness:g}",
                 f"Image: {self.image} ({self.input_mode})",
                 f"Size: {self.width}x{self.height}, network at {self.size} px"]
        if self.reference:
            lines.append(f"Reference: {self.reference}")
        if self.weights:
            lines.append(f"Weights: {self.weights}, Weights hash: {self.weights_hash}")
        if self.temperature:
            lines.append(f"Temperature: {self.temperature:g}, Sepia guard: {self.sepia_guard}")
        return "\n".join(lines)


def colorize(image: ImageSource, request: ColorizeRequest | None = None,
             reference: ImageSource | None = None,
             model: torch.nn.Module | None = None) -> Image.Image:
    """Colorize a black-and-white photo (module docstring).

    Everything that needs no network is checked first (the request, the files, the image
    sizes); then the network is loaded and run.

    Args:
        image: a PIL image, an image file or a bundled photo name; only its L is read.
        request: method and options; ``None`` for :class:`ColorizeRequest` defaults.
        reference: method ``reference``: the photo whose colours are used (any size).
        model: the network :func:`load_colorizer` gives for this request, already loaded (a
            server shares one copy between requests); ``None`` loads it.

    Returns:
        an RGB image of the input's size, its :class:`ColorizeParams` in ``info``.
    """
    request = request or ColorizeRequest()
    if (reference is None) == (request.method == "reference"):
        raise ValueError("method reference needs a reference image, and only it takes one"
                         if reference is None else
                         f"a reference image is only read by method reference, not "
                         f"{request.method}")
    source = network_source(request)  # checked to exist, not loaded
    pil, label = open_image(image, "image")
    ref_pil, ref_label = open_image(reference, "reference") if reference is not None \
        else (None, "")
    rgb = to_tensor(pil)  # (1, 3, H, W)
    mode = "gray" if is_gray(rgb) else "color (L only)"
    if request.method == "reference":
        from mmgen.color.reference import ReferenceConfig, colorize_reference

        out = colorize_reference(rgb, to_tensor(ref_pil), ReferenceConfig(size=request.size),
                                 seed=request.seed)
        out = scale_chroma(out, request.colorfulness)
        temperature, guard, digest = 0.0, "not available", ""
    else:
        model = model if model is not None else load_colorizer(request.method, source)
        out, temperature, guard = run_network(model, rgb, request)
        digest = weights_hash(model)
    params = ColorizeParams(request.method, float(request.colorfulness), temperature,
                            request.size, rgb.shape[-1], rgb.shape[-2], label, mode, ref_label,
                            source, digest, guard)
    return attach(to_pil(out), params)


# ----------------------------------------------------------------------------- inputs


def open_image(item: Any, role: str) -> tuple[Image.Image, str]:
    """(RGB image, its label) of a PIL image, an image file or a bundled photo name; a clear
    error for a missing file or name and for images under MIN_SIDE px a side or over
    ``MMGEN_MAX_INPUT_PIXELS``."""
    image, label = open_source(item, role, [("bundled photo", list_photos(), load_photo)])
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise ValueError(f"{role} {label} is {w}x{h} px; colorization needs at least "
                         f"{MIN_SIDE} px a side")
    MAX_INPUT_PIXELS.check(w * h, f"{role} {label}: image size {w}x{h} ({w * h:,} pixels)")
    return image, label


def is_gray(rgb: torch.Tensor, tolerance: float = 2 / 255) -> bool:
    """Whether every pixel of (1, 3, H, W) has R, G and B within ``tolerance``."""
    return bool((rgb.amax(dim=1) - rgb.amin(dim=1)).max() <= tolerance)


def network_source(request: ColorizeRequest) -> str:
    """What the method's network is loaded from, checked to exist ("" for reference)."""
    if request.method == "reference":
        return ""
    if request.method == "zhang":
        if not Path(request.weights).is_file():
            raise FileNotFoundError(f"zhang weights {request.weights}: no such file")
        return request.weights
    from mmgen.hub import model_dir

    name = request.weights or DEFAULT_MODEL
    try:
        model_dir(name)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise FileNotFoundError(f"learned colorizer {name!r} not found: {e}") from None
    return name


def load_colorizer(method: str, source: str) -> torch.nn.Module:
    """The network of ``method`` from ``source`` (a checked name, folder or file), float32."""
    if method == "zhang":
        from mmgen.color.zhang import load_zhang

        return load_zhang(source).float().eval()
    from mmgen.color.net import ColorNet
    from mmgen.hub import load

    model = load(source)
    if not isinstance(model, ColorNet):
        raise ValueError(f"{source} is a {type(model).__name__}, not a colorizer (ColorNet)")
    return model.float().eval()


# ----------------------------------------------------------------------------- running


def is_sepia(ab: torch.Tensor) -> bool:
    """Whether ab (1, 2, H, W) looks sepia: of the pixels with chroma >= 3, at least
    SEPIA_SHARE lie in the hues SEPIA_HUES, and their mean chroma is below SEPIA_CHROMA."""
    a, b = ab[0, 0], ab[0, 1]
    chroma = torch.hypot(a, b)
    coloured = chroma >= 3
    if not coloured.any():
        return False  # gray: no colour at all is not sepia (the temperature cannot help)
    hue = torch.rad2deg(torch.atan2(b, a))[coloured]
    share = ((hue >= SEPIA_HUES[0]) & (hue <= SEPIA_HUES[1])).float().mean()
    return bool(share >= SEPIA_SHARE and chroma[coloured].mean() < SEPIA_CHROMA)


def scale_chroma(rgb: torch.Tensor, factor: float) -> torch.Tensor:
    """RGB (1, 3, H, W) with its ab multiplied by ``factor``, L kept."""
    if factor == 1:
        return rgb
    lab = rgb_to_lab(rgb)
    lab[:, 1:] *= factor
    return lab_to_rgb(lab)


@torch.no_grad()
def run_network(model: torch.nn.Module, rgb: torch.Tensor, request: ColorizeRequest
                ) -> tuple[torch.Tensor, float, str]:
    """(colorized RGB (1, 3, H, W), temperature used (0: none), sepia guard outcome)."""
    lab, lightness = network_input(rgb, request.size)
    if not getattr(model, "predicts_classes", False):
        ab = model.predict_ab(lightness).float() * request.colorfulness
        return with_colour(lab, ab), 0.0, "not available"
    temperature = DEFAULT_TEMPERATURE / request.colorfulness
    ab = model.predict_ab(lightness, temperature).float()
    guard = "off" if not request.sepia_guard else "not needed"
    for _ in range(SEPIA_RETRIES if request.sepia_guard else 0):
        if not is_sepia(ab):
            break
        temperature, guard = temperature / 2, "applied"
        ab = model.predict_ab(lightness, temperature).float()
    return with_colour(lab, ab), round(temperature, 6), guard


# ----------------------------------------------------------------------------- files


def attach(image: Image.Image, params: ColorizeParams) -> Image.Image:
    """Record ``params`` in ``image.info`` (written as PNG text chunks by :func:`save_png`)."""
    image.info["parameters"] = params.text()
    image.info[JSON_KEY] = params.to_json()
    return image


def save_png(image: Image.Image, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``image`` as a PNG with its parameters, atomically; with ``overwrite=False`` an
    existing ``path`` is a ``FileExistsError`` (checked atomically)."""
    return write_file(path, png_writer(image, ("parameters", JSON_KEY)), overwrite)


def read_colorize_params(path: str | os.PathLike) -> ColorizeParams:
    """The :class:`ColorizeParams` stored in a PNG written by :func:`save_png`."""
    text = read_png_text(path, JSON_KEY)
    if not text:
        raise ValueError(f"{path} carries no colorize parameters (no '{JSON_KEY}' PNG text "
                         "chunk)")
    return ColorizeParams.from_json(text)
