"""Shapes: a procedural captioned image dataset, mmgen's text-to-image benchmark.

Each image is one filled shape of one flat colour on a flat background, fully described by
five attributes (``ShapeAttrs``) and by a canonical caption such as
"a large red circle in the top left on a white background". Rendering is exact (no
anti-aliasing), so an image can be checked pixel by pixel against its attributes.

Geometry, for an image of side ``S`` (a multiple of 4; 64 by default). Pixel ``(x, y)`` is
column ``x``, row ``y``; every rule below is evaluated at pixel centres in integer arithmetic, so
no pixel ever lies exactly on a shape's boundary and no rounding is machine dependent.

* The object's centre pixel is ``(cx, cy) = (S * (col + 1) // 4, S * (row + 1) // 4)``, where
  ``(row, col)`` is the cell of its position in the 3x3 grid (``POSITIONS`` is row-major).
* Its half-extent is ``r = SIZE_HALF_EXTENT[size] * S // 64`` pixels (7 or 13 at 64 px; 3 or 6
  at 32; 14 or 26 at 128): the object fits the box of ``n = 2r + 1`` pixels centred on
  ``(cx, cy)``, the centre pixel plus ``r`` pixels on each side. With ``dx = x - cx`` and
  ``dy = y - cy``, both in ``[-r, r]``, a pixel of the box belongs to the

  - square:   every pixel of the box: fill ratio 1;
  - circle:   if ``4 (dx^2 + dy^2) <= n^2`` (the disc inscribed in the box): ratio ~ pi/4;
  - triangle: if ``4 |dx| <= 2 (dy + r) + 1`` (apex up: one pixel at the top row, the full
    width ``n`` at the bottom row): ratio ~ 1/2;
  - plus:     if ``6 |dx| <= n`` or ``6 |dy| <= n`` (two bars through the centre whose width
    is a third of the box): ratio ~ 5/9.

Splits: item ``i`` of a split is a pure function of ``(seed, split, i)``, drawn from numpy's
``SeedSequence([seed, split_id, i, stream])``, whose hash is specified and platform
independent. The four held-out (colour, shape) pairs in ``HELD_OUT`` never appear in
``train``, ``val`` or ``test``; ``test_compositional`` contains only them. Splits use
independent random streams, but the attribute space is small (1296 combinations), so
``val`` and ``test`` repeat combinations (hence images) that ``train`` also contains: they
measure in-distribution fit, while ``test_compositional`` measures generalisation.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "plus")
SIZES = ("small", "large")
POSITIONS = (
    "top left", "top center", "top right",
    "middle left", "center", "middle right",
    "bottom left", "bottom center", "bottom right",
)  # row-major over the 3x3 grid
BACKGROUNDS = ("white", "black", "gray")

ATTRIBUTES = ("color", "shape", "size", "position", "background")  # label order everywhere
CLASS_NAMES = {
    "color": COLORS, "shape": SHAPES, "size": SIZES, "position": POSITIONS,
    "background": BACKGROUNDS,
}
COLOR_RGB = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
    "yellow": (240, 210, 40), "purple": (150, 60, 190), "orange": (245, 140, 30),
}
BACKGROUND_RGB = {"white": (240, 240, 240), "black": (20, 20, 20), "gray": (128, 128, 128)}
SIZE_HALF_EXTENT = {"small": 7, "large": 13}  # half-extent in pixels for a 64 px image

# (colour, shape) pairs never seen in training: the compositional-generalisation test.
HELD_OUT = frozenset({
    ("green", "triangle"), ("purple", "circle"), ("orange", "square"), ("blue", "plus"),
})
SPLITS = ("train", "val", "test", "test_compositional")
CANONICAL_TEMPLATE = "a {size} {color} {shape} in the {position} on a {background} background"
# Varied captions: one prefix, then the object, then the position and background phrases
# (either order), each of size / position / background omitted with probability omit_prob.
CAPTION_PREFIXES = ("", "an image of ", "a picture of ", "a drawing of ")
CAPTION_MODES = ("canonical", "varied")

_SPLIT_ID = {name: k for k, name in enumerate(SPLITS)}
_ATTRS_STREAM, _CAPTION_STREAM = 0, 1  # independent random streams per item


@dataclass(frozen=True)
class ShapeAttrs:
    """The five attributes that fully determine a Shapes image (validated on creation).

    Args:
        color: object colour, one of ``COLORS``.
        shape: one of ``SHAPES``.
        size: object size, one of ``SIZES`` (the image side is a separate ``size`` argument
            of ``render`` and ``ShapesDataset``).
        position: cell of the 3x3 grid, one of ``POSITIONS``.
        background: one of ``BACKGROUNDS``.
    """

    color: str  # object colour, one of COLORS
    shape: str  # one of SHAPES
    size: str  # object size, one of SIZES
    position: str  # grid cell, one of POSITIONS
    background: str  # background colour, one of BACKGROUNDS

    def __post_init__(self):
        for name in ATTRIBUTES:
            value = getattr(self, name)
            if value not in CLASS_NAMES[name]:
                raise ValueError(
                    f"unknown {name} {value!r}; expected one of {', '.join(CLASS_NAMES[name])}"
                )

    @property
    def labels(self) -> tuple[int, int, int, int, int]:
        """Class indices in ``ATTRIBUTES`` order (colour, shape, size, position, background)."""
        return tuple(CLASS_NAMES[name].index(getattr(self, name)) for name in ATTRIBUTES)

    @property
    def held_out(self) -> bool:
        """Whether the (colour, shape) pair is one of the held-out compositions."""
        return (self.color, self.shape) in HELD_OUT

    @classmethod
    def from_labels(cls, labels: Sequence[int]) -> ShapeAttrs:
        """Build attributes from class indices in ``ATTRIBUTES`` order.

        Args:
            labels: five integers, e.g. ``attrs.labels`` or one row of a label batch.
        """
        if len(labels) != len(ATTRIBUTES):
            raise ValueError(f"expected {len(ATTRIBUTES)} labels {ATTRIBUTES}, got {len(labels)}")
        for name, k in zip(ATTRIBUTES, labels, strict=True):
            if not 0 <= int(k) < len(CLASS_NAMES[name]):
                raise ValueError(f"{name} label {k} out of range [0, {len(CLASS_NAMES[name])})")
        return cls(*(CLASS_NAMES[name][int(k)] for name, k in zip(ATTRIBUTES, labels, strict=True)))


def as_attrs(attrs: ShapeAttrs | Mapping[str, str]) -> ShapeAttrs:
    """Return ``attrs`` as ``ShapeAttrs``, accepting a dict with exactly the five attribute keys.

    Args:
        attrs: a ``ShapeAttrs`` or a mapping such as ``{"color": "red", "shape": ..., ...}``.
    """
    if isinstance(attrs, ShapeAttrs):
        return attrs
    if not isinstance(attrs, Mapping):
        raise TypeError(f"expected ShapeAttrs or a dict of attributes, got {type(attrs).__name__}")
    missing = [k for k in ATTRIBUTES if k not in attrs]
    extra = [k for k in attrs if k not in ATTRIBUTES]
    if missing or extra:
        raise ValueError(
            f"attribute dict must have exactly the keys {ATTRIBUTES}; "
            f"missing {missing}, unexpected {extra}"
        )
    return ShapeAttrs(**attrs)


# ----------------------------------------------------------------------------- rendering

def _check_image_size(size: int) -> None:
    if not isinstance(size, int) or size < 16 or size % 4:
        raise ValueError(
            f"image size must be an integer multiple of 4 and at least 16 (e.g. 32, 64, 128), "
            f"got {size!r}"
        )


def half_extent(size_name: str, image_size: int = 64) -> int:
    """Half-extent ``r`` in pixels of an object: it spans ``2r + 1`` pixels across.

    Args:
        size_name: one of ``SIZES``.
        image_size: image side in pixels.
    """
    return SIZE_HALF_EXTENT[size_name] * image_size // 64


def center(position: str, image_size: int = 64) -> tuple[int, int]:
    """Column and row ``(cx, cy)`` of the centre pixel of an object at ``position``.

    Args:
        position: one of ``POSITIONS``.
        image_size: image side in pixels.
    """
    row, col = divmod(POSITIONS.index(position), 3)
    return image_size * (col + 1) // 4, image_size * (row + 1) // 4


@functools.lru_cache(maxsize=128)
def shape_mask(shape: str, r: int) -> np.ndarray:
    """Boolean ``(2r+1, 2r+1)`` mask of ``shape`` in its box (read-only; see module docstring).

    Args:
        shape: one of ``SHAPES``.
        r: half-extent in pixels.
    """
    n = 2 * r + 1
    d = np.arange(-r, r + 1)
    dy, dx = d[:, None], d[None, :]  # (n, 1), (1, n): offsets of pixel centres from the centre
    if shape == "square":
        mask = np.ones((n, n), dtype=bool)
    elif shape == "circle":
        mask = 4 * (dx * dx + dy * dy) <= n * n
    elif shape == "triangle":
        mask = np.broadcast_to(4 * np.abs(dx) <= 2 * (dy + r) + 1, (n, n)).copy()
    elif shape == "plus":
        mask = (6 * np.abs(dx) <= n) | (6 * np.abs(dy) <= n)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    mask.flags.writeable = False  # shared by the cache
    return mask


def render_array(attrs: ShapeAttrs | Mapping[str, str], size: int = 64) -> np.ndarray:
    """Render an image as a ``(size, size, 3)`` uint8 array (exact colours, no anti-aliasing).

    Args:
        attrs: the image's attributes (``ShapeAttrs`` or a dict).
        size: image side in pixels, a multiple of 4 and at least 16.
    """
    a = as_attrs(attrs)
    _check_image_size(size)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND_RGB[a.background]
    r = half_extent(a.size, size)
    cx, cy = center(a.position, size)
    box = image[cy - r: cy + r + 1, cx - r: cx + r + 1]  # a view: writes go to `image`
    box[shape_mask(a.shape, r)] = COLOR_RGB[a.color]
    return image


def render(attrs: ShapeAttrs | Mapping[str, str], size: int = 64) -> Image.Image:
    """Render an image as an RGB PIL image.

    Args:
        attrs: the image's attributes (``ShapeAttrs`` or a dict).
        size: image side in pixels, a multiple of 4 and at least 16.
    """
    return Image.fromarray(render_array(attrs, size))


# ----------------------------------------------------------------------------- captions

def caption(attrs: ShapeAttrs | Mapping[str, str]) -> str:
    """The canonical caption, e.g. "a large red circle in the top left on a white background".

    Args:
        attrs: the image's attributes (``ShapeAttrs`` or a dict).
    """
    return CANONICAL_TEMPLATE.format(**asdict(as_attrs(attrs)))


_CANONICAL_ORDER = ("size", "color", "shape", "position", "background")  # as in the template
_CANONICAL_RE = re.compile(r"a (\S+) (\S+) (\S+) in the (.+?) on a (\S+) background")
_VOCABULARY = frozenset(
    " ".join((CANONICAL_TEMPLATE, *COLORS, *SHAPES, *SIZES, *POSITIONS, *BACKGROUNDS)).split()
)


def parse(text: str) -> ShapeAttrs:
    """Invert ``caption``: the attributes of a canonical caption.

    Case and runs of whitespace are ignored; anything else must follow
    ``CANONICAL_TEMPLATE`` exactly.

    Args:
        text: a canonical caption.

    Raises:
        ValueError: naming the unknown word, or the template, if ``text`` is not canonical.
    """
    norm = " ".join(text.lower().split())
    match = _CANONICAL_RE.fullmatch(norm)
    if match is None:
        unknown = [w for w in norm.split() if w not in _VOCABULARY]
        what = f"unknown word {unknown[0]!r}" if unknown else "words out of order"
        raise ValueError(
            f"cannot parse caption {text!r}: {what}; expected {CANONICAL_TEMPLATE!r}"
        )
    values = dict(zip(_CANONICAL_ORDER, match.groups(), strict=True))
    for name, value in values.items():
        if value not in CLASS_NAMES[name]:
            raise ValueError(
                f"cannot parse caption {text!r}: unknown {name} {value!r}; "
                f"expected one of {', '.join(CLASS_NAMES[name])}"
            )
    return ShapeAttrs(**values)


def _varied_caption(a: ShapeAttrs, words: Sequence[int], omit_prob: float) -> str:
    """A caption with a random prefix, phrase order and omitted phrases (from 5 random words)."""
    def keep(w: int) -> bool:  # uniform in [0, 1) from the top 53 bits of a 64-bit word
        return (w >> 11) * 2.0**-53 >= omit_prob

    noun = f"{a.size} {a.color} {a.shape}" if keep(words[0]) else f"{a.color} {a.shape}"
    article = "an" if noun[0] in "aeiou" else "a"
    phrases = [f"in the {a.position}"] if keep(words[1]) else []
    if keep(words[2]):
        phrases.append(f"on a {a.background} background")
    if words[3] % 2:
        phrases.reverse()
    prefix = CAPTION_PREFIXES[words[4] % len(CAPTION_PREFIXES)]
    return " ".join([f"{prefix}{article} {noun}", *phrases])


# ----------------------------------------------------------------------------- sampling

def _check_split(split: str) -> None:
    if split not in _SPLIT_ID:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


@functools.cache
def _combinations(split: str | None) -> tuple[ShapeAttrs, ...]:
    combos = (ShapeAttrs(*values) for values in itertools.product(
        COLORS, SHAPES, SIZES, POSITIONS, BACKGROUNDS))
    if split is None:
        return tuple(combos)
    _check_split(split)
    want_held_out = split == "test_compositional"
    return tuple(a for a in combos if a.held_out == want_held_out)


def all_combinations(split: str | None = None) -> list[ShapeAttrs]:
    """Every attribute combination, in a fixed order (``itertools.product`` over the names).

    Args:
        split: if given, only the combinations that split can contain: 1080 for
            ``train``/``val``/``test``, the 216 held-out ones for ``test_compositional``;
            all 1296 if None.
    """
    return list(_combinations(split))


def _item_words(seed: int, split: str, i: int, stream: int, n: int) -> list[int]:
    """``n`` random 64-bit words that depend only on ``(seed, split, i, stream)``."""
    _check_split(split)
    for name, value in (("seed", seed), ("i", i)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    entropy = [int(seed), _SPLIT_ID[split], int(i), stream]
    return [int(w) for w in np.random.SeedSequence(entropy).generate_state(n, np.uint64)]


def sample_attrs(split: str, seed: int, i: int) -> ShapeAttrs:
    """The attributes of item ``i`` of ``split``: uniform over the split's combinations.

    Args:
        split: one of ``SPLITS``.
        seed: non-negative dataset seed.
        i: non-negative item index (the stream is unbounded).
    """
    combos = _combinations(split)
    return combos[_item_words(seed, split, i, _ATTRS_STREAM, 1)[0] % len(combos)]


def sample_caption(split: str, seed: int, i: int, mode: str = "canonical",
                   omit_prob: float = 0.25) -> str:
    """The caption of item ``i`` of ``split``.

    Args:
        split: one of ``SPLITS``.
        seed: non-negative dataset seed.
        i: non-negative item index.
        mode: ``"canonical"`` (always ``caption(attrs)``) or ``"varied"`` (a random prefix
            from ``CAPTION_PREFIXES``, position/background phrases in random order, and each of
            the size, position and background phrases omitted with probability ``omit_prob``).
        omit_prob: probability of omitting each optional phrase in ``"varied"`` mode.
    """
    _check_caption_options(mode, omit_prob)
    return _item_caption(sample_attrs(split, seed, i), split, seed, i, mode, omit_prob)


def _check_caption_options(mode: str, omit_prob: float) -> None:
    if mode not in CAPTION_MODES:
        raise ValueError(f"unknown caption mode {mode!r}; expected one of {CAPTION_MODES}")
    if not 0.0 <= omit_prob <= 1.0:
        raise ValueError(f"omit_prob must be in [0, 1], got {omit_prob}")


def _item_caption(attrs: ShapeAttrs, split: str, seed: int, i: int, mode: str,
                  omit_prob: float) -> str:
    """The caption of item ``i`` given its (already sampled) attributes."""
    if mode == "canonical":
        return caption(attrs)
    return _varied_caption(attrs, _item_words(seed, split, i, _CAPTION_STREAM, 5), omit_prob)


# ----------------------------------------------------------------------------- dataset

def to_tensor(image: np.ndarray) -> torch.Tensor:
    """Uint8 ``(..., H, W, 3)`` images as a float32 ``(..., 3, H, W)`` tensor in ``[-1, 1]``."""
    channels_first = torch.from_numpy(image).movedim(-1, -3).contiguous()
    return channels_first.float().div_(127.5).sub_(1.0)


class ShapesDataset(Dataset):
    """A split of Shapes as a map-style torch dataset; nothing is precomputed.

    Item ``i`` is a dict with ``"image"``, a ``(3, size, size)`` float32 tensor in ``[-1, 1]``
    (``uint8 / 127.5 - 1``) unless ``transform`` is given; ``"caption"``, a str; and one int
    class label per attribute, keyed ``"color"``, ``"shape"``, ``"size"``, ``"position"`` and
    ``"background"`` (indices into ``COLORS``, ``SHAPES``, ... ). Items depend only on
    ``(seed, split, i)``, so a longer dataset extends a shorter one.

    Args:
        split: one of ``SPLITS``.
        size: image side in pixels, a multiple of 4 and at least 16 (32, 64, 128 are tested).
        length: number of items.
        seed: non-negative seed; different seeds give different item sequences.
        caption_mode: ``"canonical"`` or ``"varied"`` (see ``sample_caption``).
        omit_prob: probability of omitting each optional phrase in ``"varied"`` mode.
        transform: if given, called on the PIL image to make ``"image"`` (replacing the
            default conversion to ``[-1, 1]``).
    """

    def __init__(self, split: str = "train", size: int = 64, length: int = 10_000,
                 seed: int = 0, caption_mode: str = "canonical", omit_prob: float = 0.25,
                 transform: Callable[[Image.Image], Any] | None = None):
        _check_split(split)
        _check_image_size(size)
        _check_caption_options(caption_mode, omit_prob)
        if length < 0 or seed < 0:
            raise ValueError(f"length and seed must be non-negative, got {length}, {seed}")
        self.split, self.size, self.length, self.seed = split, size, length, seed
        self.caption_mode, self.omit_prob, self.transform = caption_mode, omit_prob, transform

    def __len__(self) -> int:
        return self.length

    def _check_index(self, i: int) -> int:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for a dataset of length {self.length}")
        return int(i)

    def attrs(self, i: int) -> ShapeAttrs:
        """The attributes of item ``i``."""
        return sample_attrs(self.split, self.seed, self._check_index(i))

    def __getitem__(self, i: int) -> dict[str, Any]:
        a = self.attrs(i)
        if self.transform is None:
            image = to_tensor(render_array(a, self.size))
        else:
            image = self.transform(render(a, self.size))
        return {"image": image, "caption": self._caption(a, int(i)),
                **dict(zip(ATTRIBUTES, a.labels, strict=True))}

    def _caption(self, a: ShapeAttrs, i: int) -> str:
        return _item_caption(a, self.split, self.seed, i, self.caption_mode, self.omit_prob)

    def as_tensors(self, n: int | None = None) -> dict[str, Any]:
        """The first ``n`` items (all if None) as one batch, as a DataLoader would collate them.

        Returns ``"image"`` ``(n, 3, size, size)`` float32 in ``[-1, 1]`` (``transform`` is not
        used), ``"caption"`` a list of str, and a ``(n,)`` int64 tensor per attribute.

        Args:
            n: number of items, at most ``len(self)``.
        """
        n = self.length if n is None else n
        if not 0 <= n <= self.length:
            raise ValueError(f"n must be in [0, {self.length}], got {n}")
        attrs = [self.attrs(i) for i in range(n)]
        images = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        for k, a in enumerate(attrs):
            images[k] = render_array(a, self.size)
        labels = torch.tensor([a.labels for a in attrs], dtype=torch.long).reshape(n, 5)
        labels = labels.T.contiguous()  # (5, n): one contiguous row per attribute
        return {
            "image": to_tensor(images),
            "caption": [self._caption(a, i) for i, a in enumerate(attrs)],
            **{name: labels[k] for k, name in enumerate(ATTRIBUTES)},
        }
