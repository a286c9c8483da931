"""The checks of what users send: numbers from the form (:func:`whole`, :func:`unit`) and
uploaded images, opened safely: the file's size and the image's pixel count (from its
header, before anything is decoded: decompression bombs) are checked against the app's
limits, and errors name the upload, not the server's temporary path."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from mmgen.data.folder import UnreadableImageError, open_image
from mmgen.data.images import to_rgb
from mmgen_app.config import AppLimits


def open_upload(item: str | os.PathLike | Image.Image, limits: AppLimits, what: str,
                mode: str = "RGB") -> Image.Image:
    """The uploaded image ``item`` (a file Gradio wrote, or a PIL image it decoded) in
    ``mode`` ("RGB": transparency composited on white; or "RGBA")."""
    if isinstance(item, Image.Image):
        image = item
        _check_pixels(image.width, image.height, limits, what)
    else:
        path = Path(item)
        size_mb = path.stat().st_size / 1e6 if path.is_file() else 0.0
        if size_mb > limits.max_upload_mb:
            raise ValueError(f"the {what} is {size_mb:.1f} MB; this server takes files up to "
                             f"{limits.max_upload_mb:g} MB")
        try:
            with Image.open(path) as header:  # reads the header only
                _check_pixels(*header.size, limits, what)
        except (Image.DecompressionBombError, OSError, SyntaxError) as e:
            raise ValueError(f"the {what} is not a readable image ({_reason(e, path)})"
                             ) from None
        try:
            image = open_image(path, mode=None)
        except UnreadableImageError as e:
            raise ValueError(f"the {what} is not a readable image ({_reason(e, path)})"
                             ) from None
    return to_rgb(image) if mode == "RGB" else image.convert(mode)


def _check_pixels(width: int, height: int, limits: AppLimits, what: str) -> None:
    if width * height > limits.max_input_pixels:
        raise ValueError(f"the {what} is {width}x{height} px ({width * height:,} pixels); this "
                         f"server takes images up to {limits.max_input_pixels:,} pixels")


def _reason(e: BaseException, path: Path) -> str:
    return str(e).replace(f"{path}: ", "").replace(str(path), "the file") or type(e).__name__


def whole(value: Any, what: str, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` from the form (Gradio sends floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high} on this server, got "
                         f"{int(value)}")
    return int(value)


def unit(value: Any, what: str) -> float:
    """A number in [0, 1] from the form."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be between 0 and 1, got {value!r}")
    return float(value)



def ImageInput(limits: AppLimits, **kwargs: Any) -> gr.Image:  # noqa: N802 (a component)
    """``gr.Image(**kwargs)`` whose oversized (from the header, before Gradio decodes it) or
    corrupt uploads fail with one clear line; by default the handler gets the uploaded file's
    path, undecoded (``type="filepath"``, ``image_mode=None``)."""
    kwargs = {"type": "filepath", "image_mode": None, **kwargs}
    return _guarded(gr.Image(**kwargs), limits)


def EditorInput(limits: AppLimits, **kwargs: Any) -> gr.ImageEditor:  # noqa: N802
    """``gr.ImageEditor(**kwargs)`` with the guard of :func:`ImageInput` on its background
    and layers (the editor decodes every image it receives)."""
    return _guarded(gr.ImageEditor(**kwargs), limits)


def _guarded(component: Any, limits: AppLimits) -> Any:
    # An instance attribute, not a subclass: Gradio writes a .pyi file next to the module
    # of any subclass of its components.
    component.preprocess = functools.partial(_decoded, component.preprocess, component.label,
                                             limits)
    return component


def _files(payload: Any) -> list[str]:
    """The uploaded files in a Gradio image or editor payload."""
    items = [payload, getattr(payload, "background", None), getattr(payload, "composite", None),
             *(getattr(payload, "layers", None) or [])]
    return [item.path for item in items if isinstance(getattr(item, "path", None), str)]


def _decoded(preprocess: Any, label: str | None, limits: AppLimits, payload: Any) -> Any:
    """Gradio's own decoding of an upload, after the pixel check from each file's header;
    its failures as one line (a ``gr.Error``) instead of Gradio's multi-line report."""
    what = f"upload '{label}'" if label else "uploaded image"
    try:
        for path in _files(payload):
            with Image.open(path) as header:  # reads the header only
                _check_pixels(*header.size, limits, what)
        return preprocess(payload)
    except gr.Error:
        raise
    except ValueError as e:  # over the limit (_check_pixels)
        raise gr.Error(str(e), print_exception=False) from None
    except Image.DecompressionBombError as e:
        raise gr.Error(f"the {what} has too many pixels for this server ({e})",
                       print_exception=False) from None
    except Exception as e:  # PIL's many types: OSError, SyntaxError, ...
        raise gr.Error(f"the {what} is not a readable image ({type(e).__name__}: {e})",
                       print_exception=False) from None
