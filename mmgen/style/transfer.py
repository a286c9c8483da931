"""Style transfer for users: one request (:class:`StyleRequest`), one function (:func:`stylize`).

    from mmgen.style.transfer import StyleRequest, save_png, stylize

    image = stylize("photo.jpg", ["swirls"])                            # gatys, offline
    image = stylize("photo.jpg", ["swirls"], StyleRequest(method="fast"))  # style-fast
    image = stylize("photo.jpg", ["starry.jpg", "waves"],
                    StyleRequest(method="adain", style_weights=(0.7, 0.3)))
    save_png(image, "out.png")  # with its parameters in the PNG's text chunks

Three methods:

* ``gatys`` (Gatys et al. 2016, :mod:`mmgen.style.gatys`): optimises the pixels, coarse to
  fine, against a feature network: the offline random one, or torchvision's VGG-19/16 from a
  file (``vgg_weights``). Any style images; about a minute at 512 px on one CPU thread.
* ``fast`` (Johnson et al. 2016, :mod:`mmgen.style.transformer_net`): a trained network that
  knows its styles, so styles are *names* of the network's ``config.styles``: the bundled
  ``style-fast`` (made by ``mmgen train --recipe style-fast``; one installed under that name
  comes first) knows swirls, pointillism and waves; several names are blended by
  ``style_weights`` (conditional instance norm: their (gamma, beta) mixed, Dumoulin et al.
  2017). ``weights`` gives another network; a one-style network (pytorch/examples'
  ``candy.pth``, ...) is its style: give no style.
* ``adain`` (Huang & Belongie 2017, :mod:`mmgen.style.adain`): one trained decoder for every
  style, in one forward pass; the bundled ``style-adain`` (made by ``mmgen train --recipe
  style-adain``: AdaIN at relu3_1 behind a random encoder; one installed under that name comes
  first) unless ``weights`` names another.

Content and styles are PIL images, image files, or names: a style of
:func:`~mmgen.style.styles.list_styles` (styles only: drawn or cropped to ``size`` x ``size``)
or a bundled photo of :func:`~mmgen.data.photos.list_photos`. Images of any PIL mode are
converted to RGB as :mod:`mmgen.data.images` documents (transparency composited on white).
The content is resized so that its long side is ``size`` (up or down, aspect kept), which is
the output's size; styles are resized to the same long side.

The result is a PIL image whose ``info`` holds its :class:`StyleParams` (PNG text chunks
``parameters``, readable text, and ``mmgen-style``, JSON; :func:`save_png` writes both,
:func:`read_style_params` reads them back).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmgen.checkpoint import load_state_dict, safetensors_shapes, write_file
from mmgen.data.images import (
    fit_long_side,
    open_source,
    png_writer,
    read_png_text,
    resize_long_side,
    to_pil,
    to_tensor,
)
from mmgen.data.photos import list_photos, load_photo
from mmgen.hub import list_pretrained, load, model_dir
from mmgen.limits import MAX_STEPS, check_image_size, check_seed
from mmgen.pipeline import weights_hash
from mmgen.registry import JSONParams, read_saved_config
from mmgen.style.adain import AdaINModel, load_adain
from mmgen.style.color import luminance_only, match_color
from mmgen.style.features import feature_network
from mmgen.style.gatys import GatysConfig, gatys
from mmgen.style.images import MIN_SIDE, check_size
from mmgen.style.styles import list_styles, load_style
from mmgen.style.transformer_net import TransformerNet, load_fast_style, style_mix

METHODS = ("gatys", "fast", "adain")
DEFAULT_FAST = "style-fast"  # the fast model (installed, else bundled): one network, 3 styles
DEFAULT_ADAIN = "style-adain"
GATYS_STEPS = 380  # loss evaluations by default, as GatysConfig's (200, 120, 60)
# Gatys' content layers per feature network: the paper's relu4_2 for ImageNet VGG. For the
# random network, whose single layers each keep only part of the content, relu1_1 + relu2_1
# (contours) with relu4_2 (layout): over 4 photos x 3 styles at 256 px (docs/style.md,
# scripts/experiments/gatys_content_layers.py), structure 0.58 and content-loss ratio 0.63,
# where relu2_1 alone gave 0.54 and 0.83, and relu4_2 alone 0.31 and 0.63.
CONTENT_LAYERS = {"random": ("relu1_1", "relu2_1", "relu4_2"), "vgg": ("relu4_2",)}
MIN_STAGE = 96  # gatys: coarse stages with a smaller long side are skipped
# Smallest output side per method: gatys' deepest default layer (relu5_1) lies behind 4 pools
# in every feature network (lite, vgg16, vgg19); the networks' own minimums otherwise.
MIN_OUTPUT = {"gatys": 16, "fast": 5, "adain": 9}
JSON_KEY = "mmgen-style"  # not generate's "mmgen": a style image is no text-to-image request

ImageSource = Image.Image | str | os.PathLike


@dataclass
class StyleRequest:
    """How to stylize; every field is checked when the request is made."""

    method: str = "gatys"  # "gatys", "fast" or "adain" (see the module docstring)
    # How much style, in [0, 1]. gatys: the style weight is beta * strength^3 (0 returns the
    # content); fast: the output blended with the content in pixel space (0: the content);
    # adain: alpha, features blended before decoding (0: the decoder's reconstruction).
    strength: float = 1.0
    # Keep the content's colours. gatys, fast: luminance-only transfer (the output's
    # luminance, the content's YIQ chroma; Gatys et al. 2016b). adain: each style is
    # recoloured to the content's colour mean and covariance first (match_color), as Huang &
    # Belongie do for colour control (Sec. 7).
    preserve_color: bool = False
    size: int = 512  # long side of the output in px; the content is resized, aspect kept
    vgg_weights: str | None = None  # gatys: a torchvision VGG-19/16 file; None: random features
    # fast: a TransformerNet .pth/.safetensors file (one style), mmgen folder or installed
    # name; adain: an AdaINModel folder or name, or "ENCODER,DECODER"
    # (vgg_normalised.pth,decoder.pth); None: the installed or bundled model (style-fast,
    # style-adain).
    weights: str | None = None
    style_weights: tuple[float, ...] = ()  # one weight per style (normalised); fast: per name
    steps: int = GATYS_STEPS  # gatys: loss evaluations in all, over the coarse-to-fine stages
    seed: int = 0  # gatys: seed of the random feature network (fast, adain: deterministic)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) \
                or not (math.isfinite(self.strength) and 0 <= self.strength <= 1):
            raise ValueError(f"strength must be a number in [0, 1] (0: no style, 1: full), "
                             f"got {self.strength!r}")
        for name, low in (("size", MIN_SIDE), ("steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        MAX_STEPS.check(self.steps, f"{self.steps:,} gatys steps")
        check_seed(self.seed)
        for name in ("vgg_weights", "weights"):  # paths may come as Path objects
            if getattr(self, name) is not None:
                setattr(self, name, os.fspath(getattr(self, name)))
        if self.vgg_weights is not None and self.method != "gatys":
            raise ValueError(f"vgg_weights (--vgg-weights) is gatys' feature network; method "
                             f"{self.method} takes its network from weights (--weights)")
        if self.weights is not None and self.method == "gatys":
            raise ValueError("gatys optimises against a feature network: give a torchvision "
                             "VGG file as vgg_weights (--vgg-weights), not weights (--weights)")
        self.style_weights = tuple(self.style_weights)
        if self.style_weights and (
                any(not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0)
                    for w in self.style_weights) or sum(self.style_weights) <= 0):
            raise ValueError(f"style_weights must be finite numbers >= 0 with a positive sum, "
                             f"got {list(self.style_weights)}")


@dataclass
class StyleParams(JSONParams):
    """What made a stylized image; carried in its PNG (:func:`save_png`)."""

    method: str  # "gatys", "fast" or "adain"
    strength: float  # in [0, 1]
    preserve_color: bool  # the content's colours kept
    size: int  # requested long side in px
    width: int  # output width in px
    height: int  # output height in px
    content: str  # file, photo name, or "PIL image WxH"
    styles: tuple[str, ...]  # files or names; fast: the network's style names, () for a
    #   one-style network
    style_weights: tuple[float, ...]  # normalised blend weights, one per style
    weights: str  # network: "random" or a VGG file (gatys), a model name, folder or file(s)
    weights_hash: str  # first 10 hex digits of the SHA-256 of the network's weights
    steps: int  # gatys: loss evaluations (fast, adain: 0)
    seed: int  # gatys: seed of the random feature network

    def text(self) -> str:
        """The readable ``parameters`` chunk."""
        blend = "" if len(self.styles) < 2 else \
            f" (weights {', '.join(f'{w:.3g}' for w in self.style_weights)})"
        lines = [f"Style transfer: {self.method}, strength {self.strength:g}, preserve color: "
                 f"{'yes' if self.preserve_color else 'no'}",
                 f"Content: {self.content}",
                 f"Styles: {', '.join(self.styles) or '(in the network)'}{blend}",
                 f"Size: {self.width}x{self.height}, Weights: {self.weights}, "
                 f"Weights hash: {self.weights_hash}"]
        if self.method == "gatys":
            lines[-1] += f", Steps: {self.steps}, Seed: {self.seed}"
        return "\n".join(lines)


def stylize(content: ImageSource, styles: ImageSource | Sequence[ImageSource],
            request: StyleRequest | None = None, progress: bool = True,
            callback: Callable[[int, int], Any] | None = None,
            model: torch.nn.Module | None = None) -> Image.Image:
    """Paint ``content`` in the style of ``styles``.

    Everything that needs no network is checked first (the request against the styles, that
    the network exists, the images and their sizes); then the network is loaded and run.

    Args:
        content: a PIL image, an image file or a bundled photo name.
        styles: style images (PIL, files, style or photo names), blended by
            ``request.style_weights``; for ``fast``, names of the network's styles
            (``config.styles``), blended the same way, and none for a one-style network.
        request: method and options; ``None`` for :class:`StyleRequest` defaults (gatys).
        progress: gatys: show a tqdm bar on stderr.
        callback: gatys: ``callback(done, total)`` after each loss evaluation; returning
            False stops it with a ``GenerationCancelled`` (a web app's progress and Cancel).
        model: fast, adain: the network :func:`load_style_network` gives for this request,
            already loaded (a server shares one copy between requests); ``None`` loads it.

    Returns:
        an RGB image with long side ``request.size``, its :class:`StyleParams` in ``info``.
    """
    request = request or StyleRequest()
    styles = [styles] if isinstance(styles, (str, os.PathLike, Image.Image)) else list(styles)
    _check_styles(request, styles)
    network = _network_source(request)  # checked to exist, not loaded
    if request.method == "fast":
        _check_fast_styles(request, styles, network)  # against its config, nothing loaded
    image, content_label = _open(content, "content", request.size)
    width, height = _output_size(image, content_label, request)
    content_t = to_tensor(resize_long_side(image, request.size))  # (1, 3, height, width)
    style_ts, labels = [], [str(s) for s in styles]
    if request.method != "fast":
        # gatys meets the styles first at its coarsest stage: they must fit the network there
        first = gatys_config(width, height, request.steps).scales[0] \
            if request.method == "gatys" else request.size
        opened = [_open(s, "style", request.size) for s in styles]
        for im, label in opened:
            _check_fit(im, f"style {label}", first, request.method)
        labels = [label for _, label in opened]
        style_ts = [to_tensor(resize_long_side(im, request.size)) for im, _ in opened]
    blend = _normalised(request.style_weights or (1.0,) * len(labels))
    if request.method == "gatys":
        out, digest = _gatys(content_t, style_ts, blend, request, network, progress,
                             callback)
    else:
        net = model if model is not None else load_style_network(request.method, network)
        nhwc = [t.contiguous(memory_format=torch.channels_last) for t in [content_t, *style_ts]]
        if request.method == "fast":  # picks its styles by name
            out = _fast(nhwc[0], labels, blend, request, net)
        else:
            out = _adain(nhwc[0], nhwc[1:], blend, request, net)
        digest = weights_hash(net)
    params = StyleParams(request.method, float(request.strength), request.preserve_color,
                         request.size, width, height, content_label, tuple(labels), blend,
                         network, digest, request.steps if request.method == "gatys"
                         else 0, request.seed)
    return attach(to_pil(out), params)


# ----------------------------------------------------------------------------- checks


def _check_styles(request: StyleRequest, styles: list[Any]) -> None:
    """The styles the method takes: names for fast (:func:`_check_fast_styles` then checks
    them against the network), >= 1 of any kind otherwise, and one weight per style."""
    if request.method == "fast":
        images = [s for s in styles if not (isinstance(s, str) and Path(s).name == s)]
        if images:
            raise ValueError(f"fast picks its styles by name from its network (e.g. 'swirls' "
                             f"of {DEFAULT_FAST}); got {', '.join(map(_label, images))}. To "
                             "copy the style of an image, use method gatys or adain")
        return
    if not styles:
        raise ValueError(f"{request.method} needs at least one style (an image file, a PIL "
                         "image, or a name of mmgen style --list)")
    _check_weight_count(request, len(styles))


def _check_weight_count(request: StyleRequest, n: int) -> None:
    if request.style_weights and len(request.style_weights) != n:
        raise ValueError(f"style_weights (--style-weights) has {len(request.style_weights)} "
                         f"weight(s) for {n} style(s); give one per style")


def _check_fast_styles(request: StyleRequest, names: list[str], network: str) -> None:
    """fast's style names (and weights) against the ``config.styles`` of ``network``, read
    from its config (a bare weight file is a one-style network)."""
    known = () if Path(network).is_file() else \
        read_saved_config(model_dir(network), TransformerNet)[2].styles
    if not known:
        if request.style_weights:
            raise ValueError(f"fast network {network} has its one style built in: give no "
                             "style_weights (--style-weights)")
        if names:
            raise ValueError(f"fast network {network} has its one style built in: give no "
                             f"style (got {', '.join(map(_label, names))})")
        return
    if not names:
        raise ValueError(f"fast network {network} knows the styles {', '.join(known)}: name "
                         "one or more (several are blended by --style-weights)")
    _check_weight_count(request, len(names))
    try:
        style_mix(known, names, request.style_weights or None)
    except ValueError as e:
        raise ValueError(f"fast network {network}: {e}") from None


def _label(item: Any) -> str:
    return f"PIL image {item.width}x{item.height}" if isinstance(item, Image.Image) \
        else repr(os.fspath(item)) if isinstance(item, (str, os.PathLike)) else repr(item)


def _network_source(request: StyleRequest) -> str:
    """The network that will run, as it is recorded: "random" or a VGG file (gatys), a
    model name, folder or file, or "ENCODER,DECODER"; checked to exist, not loaded."""
    if request.method == "gatys":
        path = request.vgg_weights
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"no VGG weights file at {path}; give torchvision's "
                                    "vgg19-dcbb9e9d.pth (or vgg16-397923af.pth), or leave "
                                    "--vgg-weights out for the offline random features")
        return "random" if path is None else path
    source = request.weights
    if source is None:
        name = DEFAULT_FAST if request.method == "fast" else DEFAULT_ADAIN
        if name not in list_pretrained():
            what = "a TransformerNet .pth/.safetensors file or model folder" \
                if request.method == "fast" else "an AdaIN model folder or ENCODER,DECODER files"
            raise FileNotFoundError(f"no installed model {name} for method {request.method}; "
                                    f"make it with `mmgen train --recipe {name} --install`, or "
                                    f"give {what} with --weights")
        return name
    if request.method == "adain" and not Path(source).exists() and "," in source:
        for part in source.split(","):
            if not Path(part).is_file():
                raise FileNotFoundError(f"no weight file at {part} (weights {source!r}: "
                                        "ENCODER,DECODER, e.g. vgg_normalised.pth,decoder.pth)")
        if source.count(",") != 1:
            raise ValueError(f"weights {source!r}: give two files, ENCODER,DECODER")
        return source
    if request.method == "adain" and Path(source).is_file():
        raise ValueError(f"weights {source}: AdaIN is two files, give ENCODER,DECODER (e.g. "
                         "vgg_normalised.pth,decoder.pth), or an mmgen AdaIN model folder")
    if not Path(source).exists() and source not in list_pretrained():
        raise FileNotFoundError(f"weights {source!r}: no such file or folder, nor an installed "
                                "model name (mmgen models --pretrained lists them)")
    return source


def _open(item: Any, role: str, size: int) -> tuple[Image.Image, str]:
    """(RGB image, the label it is recorded by) of a PIL image, a file or a name: a style
    (drawn at ``size``; styles only) or a bundled photo."""
    styles = [("style", list_styles(), lambda name: load_style(name, size))] \
        if role == "style" else []
    image, label = open_source(item, role, [*styles, ("bundled photo", list_photos(),
                                                      load_photo)])
    check_size(image, f"{role} {label}")
    return image, label


def _output_size(image: Image.Image, label: str, request: StyleRequest) -> tuple[int, int]:
    """(width, height) of the output: the content's at long side ``size``, checked against
    ``MMGEN_MAX_PIXELS`` and the method's smallest side."""
    width, height = fit_long_side(*image.size, request.size)
    check_image_size(height, width, f"output (content {label} at size {request.size})")
    _check_fit(image, f"content {label}", request.size, request.method)
    return width, height


def _check_fit(image: Image.Image, what: str, long_side: int, method: str) -> None:
    """A ``ValueError`` if ``image`` at ``long_side`` is thinner than ``method`` can take."""
    width, height = fit_long_side(*image.size, long_side)
    need = MIN_OUTPUT[method]
    if min(width, height) < need:
        raise ValueError(f"{what} is {image.width}x{image.height} px, so {method} would use "
                         f"it at {width}x{height}, under its minimum of {need} px a side: "
                         "raise the size or crop the image to a less elongated shape")


def _normalised(weights: Sequence[float]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(float(w) / total for w in weights)


# ----------------------------------------------------------------------------- methods


def _gatys(content: torch.Tensor, styles: list[torch.Tensor], blend: tuple[float, ...],
           request: StyleRequest, source: str, progress: bool,
           callback: Callable[[int, int], Any] | None = None) -> tuple[torch.Tensor, str]:
    """Optimise the pixels (:func:`~mmgen.style.gatys.gatys`) on the chosen features."""
    height, width = content.shape[-2:]
    config = gatys_config(width, height, request.steps,
                          "random" if source == "random" else "vgg")
    if source == "random":
        net = feature_network("random", seed=request.seed)
    else:
        net = feature_network("vgg", weights=source, arch=_vgg_arch(source))
    out = gatys(content, styles, net, config, request.strength, request.preserve_color,
                progress, blend=blend, callback=callback)
    return out, weights_hash(net)


def gatys_config(width: int, height: int, steps: int = GATYS_STEPS,
                 network: str = "random") -> GatysConfig:
    """The coarse-to-fine :class:`~mmgen.style.gatys.GatysConfig` for an output of
    ``width`` x ``height``: stages at 1/4, 1/2 and 1 of the long side (512 -> 128, 256, 512,
    the defaults), skipping coarse stages under ``MIN_STAGE`` px or too thin for the feature
    network; ``steps`` loss evaluations shared 4:2:1 from coarse to fine (each stage costs
    about 4x the one before; 380 -> 217, 109, 54, near the default 200, 120, 60); the
    content layers of ``network`` ("random" or "vgg": :data:`CONTENT_LAYERS`)."""
    size = max(width, height)
    scales = [s for s in (size // 4, size // 2) if s >= MIN_STAGE
              and min(fit_long_side(width, height, s)) >= MIN_OUTPUT["gatys"]] + [size]
    shares = [2 ** (len(scales) - 1 - i) for i in range(len(scales))]  # 4:2:1, 2:1 or 1
    per_stage = [steps * share // sum(shares) for share in shares]
    per_stage[0] += steps - sum(per_stage)  # the rounding remainder to the cheapest stage
    return GatysConfig(scales=tuple(scales), steps=tuple(per_stage),
                       content_layers=CONTENT_LAYERS[network])


def _vgg_arch(path: str) -> str:
    """"vgg19" or "vgg16" from a torchvision VGG file's keys (VGG-19's last conv is
    features.34, VGG-16's features.28); the loader then checks every tensor."""
    keys = safetensors_shapes(path) if path.endswith(".safetensors") else load_state_dict(path)
    return "vgg16" if "features.34.weight" not in keys and "features.28.weight" in keys \
        else "vgg19"


def load_style_network(method: str, source: str) -> torch.nn.Module:
    """The trained network of ``method`` ("fast" or "adain") from ``source``: a model name or
    folder; for fast also a TransformerNet .pth/.safetensors file, for adain also
    "ENCODER,DECODER" files. In channels_last (NHWC) memory format, as :func:`stylize` runs
    it (benchmarks/style.py: faster on the CPU, measured in docs/style.md)."""
    if method == "fast":
        net = load_fast_style(source) if Path(source).is_file() else \
            load(source, kind=TransformerNet)
    elif method == "adain":
        net = load_adain(*source.split(",")) if "," in source and not Path(source).exists() \
            else load(source, kind=AdaINModel)
    else:
        raise ValueError(f"{method} has no trained network to load (fast and adain have)")
    return net.to(memory_format=torch.channels_last)


def _fast(content: torch.Tensor, names: list[str], blend: tuple[float, ...],
          request: StyleRequest, net: TransformerNet) -> torch.Tensor:
    """One pass of the TransformerNet with its styles ``names`` mixed by ``blend`` (none for a
    one-style network), blended with the content by ``strength``."""
    style = net.style_mix(names, blend) if names else None  # (S,) weights of its styles
    s = request.strength
    out = s * net.stylize(content, style) + (1 - s) * content  # (1, 3, H, W); s = 0: content
    if request.preserve_color:
        out = luminance_only(out, content)
    return out


@torch.no_grad()
def _adain(content: torch.Tensor, styles: list[torch.Tensor], blend: tuple[float, ...],
           request: StyleRequest, model: AdaINModel) -> torch.Tensor:
    """AdaIN with alpha = ``strength``; several styles mixed by ``blend``."""
    if request.preserve_color:
        styles = [match_color(s, content) for s in styles]
    features = model.encode(content)  # (1, 512, h, w)
    # Styles may differ in size, so each is mixed on its own: with weights summing to 1,
    # sum_k w_k (alpha AdaIN(c, s_k) + (1 - alpha) c) is AdaINModel.mix's interpolation.
    t = sum(w * model.mix(features, model.encode(s), request.strength)
            for w, s in zip(blend, styles, strict=True))  # (1, 512, h, w)
    h, w = content.shape[-2:]
    return model.decoder(t)[..., :h, :w].clamp(0, 1)


# ----------------------------------------------------------------------------- files


def attach(image: Image.Image, params: StyleParams) -> Image.Image:
    """Record ``params`` in ``image.info`` (written as PNG text chunks by :func:`save_png`)."""
    image.info["parameters"] = params.text()
    image.info[JSON_KEY] = params.to_json()
    return image


def save_png(image: Image.Image, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``image`` as a PNG with its style parameters, atomically; with
    ``overwrite=False`` an existing ``path`` is a ``FileExistsError`` (checked atomically)."""
    return write_file(path, png_writer(image, ("parameters", JSON_KEY)), overwrite)


def read_style_params(path: str | os.PathLike) -> StyleParams:
    """The :class:`StyleParams` stored in a PNG written by :func:`save_png`."""
    text = read_png_text(path, JSON_KEY)
    if not text:
        raise ValueError(f"{path} carries no style parameters (no '{JSON_KEY}' PNG text chunk)")
    return StyleParams.from_json(text)
