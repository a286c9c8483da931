"""Shapes dataset: determinism, captions, splits, and pixels checked against the spec."""

import inspect
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmgen.data import shapes
from mmgen.data.shapes import (
    ShapeAttrs,
    ShapesDataset,
    all_combinations,
    caption,
    parse,
    render,
    render_array,
    sample_attrs,
    sample_caption,
)

# The specification, written out independently of the module's constants.
SPEC_COLORS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
    "yellow": (240, 210, 40), "purple": (150, 60, 190), "orange": (245, 140, 30),
}
SPEC_BACKGROUNDS = {"white": (240, 240, 240), "black": (20, 20, 20), "gray": (128, 128, 128)}
SPEC_HALF_EXTENT_AT_64 = {"small": 7, "large": 13}
SPEC_FILL = {"square": 1.0, "circle": math.pi / 4, "triangle": 0.5, "plus": 5 / 9}
SPEC_HELD_OUT = {("green", "triangle"), ("purple", "circle"), ("orange", "square"),
                 ("blue", "plus")}
ROOT = Path(__file__).resolve().parents[1]


def test_constants_match_spec():
    assert shapes.COLOR_RGB == SPEC_COLORS and shapes.BACKGROUND_RGB == SPEC_BACKGROUNDS
    assert set(shapes.HELD_OUT) == SPEC_HELD_OUT
    assert shapes.SHAPES == ("circle", "square", "triangle", "plus")
    assert len(shapes.POSITIONS) == 9 and shapes.POSITIONS[4] == "center"
    assert len(all_combinations()) == 6 * 4 * 2 * 9 * 3 == 1296
    assert len(set(all_combinations())) == 1296


# ----------------------------------------------------------------------------- determinism

def _digest() -> str:
    """sha256 of images and captions of every split and caption mode (run in subprocesses too)."""
    import hashlib

    from mmgen.data.shapes import ShapesDataset

    h = hashlib.sha256()
    for split in ("train", "val", "test", "test_compositional"):
        for mode in ("canonical", "varied"):
            ds = ShapesDataset(split, size=32, length=40, seed=3, caption_mode=mode)
            for i in range(len(ds)):
                item = ds[i]
                h.update(item["image"].numpy().tobytes())
                h.update(item["caption"].encode())
                h.update(bytes([item[k] for k in shapes.ATTRIBUTES]))
    return h.hexdigest()


def test_same_bytes_in_fresh_processes():
    code = "from mmgen.data import shapes\n" + inspect.getsource(_digest) + "print(_digest())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONHASHSEED": str(hash_seed)})
        for hash_seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs[0] == outputs[1] == _digest()


def test_item_is_a_pure_function_of_seed_split_index():
    a, b = ShapesDataset("train", length=50, seed=7), ShapesDataset("train", length=50, seed=7)
    for i in (0, 13, 49):
        assert torch.equal(a[i]["image"], b[i]["image"]) and a[i]["caption"] == b[i]["caption"]
    # Items do not depend on the dataset's length or on the order of access.
    longer = ShapesDataset("train", length=500, seed=7)
    assert [longer[i]["caption"] for i in reversed(range(50))] == [
        a[i]["caption"] for i in reversed(range(50))]
    assert sample_attrs("train", 7, 13) == a.attrs(13)


def test_seeds_and_splits_give_different_streams():
    def stream(split, seed):
        return [sample_attrs(split, seed, i) for i in range(50)]

    assert stream("train", 0) != stream("train", 1)
    assert stream("train", 0) != stream("val", 0) != stream("test", 0)
    assert stream("val", 0) != stream("test", 0)


# sha256 of `_digest()`: evaluations depend on these exact items, so changing any of them
# (images, captions, labels) is a breaking change that needs a new dataset version.
PINNED_DIGEST = "778ea48079a6dd00f252cb69eb0d1549ef050f7ef0ef751fc52450197aca77b4"


def test_pinned_values():
    assert sample_attrs("train", 0, 0) == ShapeAttrs("blue", "triangle", "small", "top right",
                                                     "gray")
    assert _digest() == PINNED_DIGEST


# ----------------------------------------------------------------------------- captions

def test_parse_inverts_caption_for_every_combination():
    for attrs in all_combinations():
        text = caption(attrs)
        assert text.startswith(f"a {attrs.size} {attrs.color} {attrs.shape} in the ")
        assert parse(text) == attrs
    assert caption({"color": "red", "shape": "circle", "size": "large", "position": "top left",
                    "background": "white"}) == (
        "a large red circle in the top left on a white background")
    assert parse("  A Large RED circle in the top   left on a white background ").color == "red"


@pytest.mark.parametrize("text, word", [
    ("a large pink circle in the top left on a white background", "pink"),
    ("a huge red circle in the top left on a white background", "huge"),
    ("a large red hexagon in the top left on a white background", "hexagon"),
    ("a large red circle in the top middle on a white background", "top middle"),
    ("a large red circle in the top left on a beige background", "beige"),
    ("a large red circle at the top left on a white background", "at"),
    ("a large red circle in the top left", "expected 'a {size}"),
])
def test_parse_error_names_the_unknown_word(text, word):
    with pytest.raises(ValueError, match=f"'{word}'" if "{" not in word else "expected"):
        parse(text)


def test_canonical_mode_is_always_canonical():
    ds = ShapesDataset("train", length=300, seed=2)
    for i in range(len(ds)):
        item = ds[i]
        assert item["caption"] == caption(ds.attrs(i))
        assert parse(item["caption"]).labels == tuple(item[k] for k in shapes.ATTRIBUTES)


def test_varied_captions_omit_phrases_but_never_lie():
    n = 800
    varied = ShapesDataset("train", length=n, seed=4, caption_mode="varied")
    canonical = ShapesDataset("train", length=n, seed=4)
    omitted = Counter()
    for i in range(n):
        a, text = varied.attrs(i), varied[i]["caption"]
        assert a == canonical.attrs(i)  # captions use their own random stream
        assert f"{a.color} {a.shape}" in text
        omitted["size"] += f"{a.size} {a.color} {a.shape}" not in text
        omitted["position"] += f"in the {a.position}" not in text
        omitted["background"] += f"on a {a.background} background" not in text
        omitted["canonical"] += text == caption(a)
        # A phrase is either absent or correct: no other size/position/background is named.
        assert not any(s in text.split() for s in shapes.SIZES if s != a.size)
        assert text.count("in the") <= 1 and text.count("background") <= 1
    for phrase in ("size", "position", "background"):
        assert 0.15 * n < omitted[phrase] < 0.35 * n, omitted  # omit_prob = 0.25
    assert omitted["canonical"] > 0
    # omit_prob=0 keeps every phrase; omit_prob=1 keeps only the colour and shape.
    full = ShapesDataset("val", length=50, caption_mode="varied", omit_prob=0.0)
    bare = ShapesDataset("val", length=50, caption_mode="varied", omit_prob=1.0)
    for i in range(50):
        a = full.attrs(i)
        assert f"{a.size} {a.color} {a.shape}" in full[i]["caption"]
        assert "background" in full[i]["caption"] and "in the" in full[i]["caption"]
        assert bare[i]["caption"].endswith(f"{a.color} {a.shape}")
    i = next(i for i in range(100) if sample_attrs("test_compositional", 0, i).color == "orange")
    assert "an orange square" in sample_caption("test_compositional", 0, i, "varied", 1.0)


# ----------------------------------------------------------------------------- splits

def test_held_out_pairs_never_in_train_and_only_in_test_compositional():
    for split, n in (("train", 20_000), ("val", 3_000), ("test", 3_000)):
        pairs = Counter((a.color, a.shape) for a in (sample_attrs(split, 0, i) for i in range(n)))
        assert not set(pairs) & SPEC_HELD_OUT, split
        assert len(pairs) == 20  # every other pair appears
    train = [sample_attrs("train", 0, i) for i in range(5_000)]
    for name in shapes.ATTRIBUTES[2:]:  # size, position, background all appear
        assert {getattr(a, name) for a in train} == set(shapes.CLASS_NAMES[name])
    comp = {(a.color, a.shape) for a in (sample_attrs("test_compositional", 0, i)
                                         for i in range(2_000))}
    assert comp == SPEC_HELD_OUT
    assert len(all_combinations("train")) == 1080 and len(all_combinations("val")) == 1080
    assert all(a.held_out for a in all_combinations("test_compositional"))
    assert len(all_combinations("test_compositional")) == 216


# ----------------------------------------------------------------------------- pixels

def _grid_centre(position: str, size: int) -> tuple[float, float]:
    """(x, y) of a position from its name: centres at 1/4, 1/2, 3/4 of the image."""
    if position == "center":
        row, col = "middle", "center"
    else:
        row, col = position.split()
    fx = {"left": 0.25, "center": 0.5, "right": 0.75}[col]
    fy = {"top": 0.25, "middle": 0.5, "bottom": 0.75}[row]
    return fx * size, fy * size


def _classify(box: np.ndarray) -> str:
    """Name the shape from its (bounding-box-cropped) object mask."""
    widths = box.sum(axis=1)  # object pixels per row
    n = box.shape[1]
    if box.all():
        return "square"
    if not np.array_equal(box, box[::-1]):  # only the triangle is top-bottom asymmetric
        assert widths[0] <= 2 and widths[-1] == n and np.all(np.diff(widths) >= 0)
        return "triangle"
    if len(set(widths.tolist())) == 2:  # arm rows and full-width rows only
        assert abs(widths[0] - n / 3) <= 1 and widths[n // 2] == n
        return "plus"
    assert np.array_equal(box, box[:, ::-1]) and widths[0] < widths[n // 2] == n
    return "circle"


def _check_pixels(attrs: ShapeAttrs, size: int) -> None:
    image = np.asarray(render(attrs, size))
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    bg, fg = np.array(SPEC_BACKGROUNDS[attrs.background]), np.array(SPEC_COLORS[attrs.color])
    for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
        assert np.array_equal(corner, bg)
    obj = ~(image == bg).all(axis=-1)
    assert (image[obj] == fg).all()  # exactly two colours: no anti-aliasing
    ys, xs = np.nonzero(obj)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cx, cy = _grid_centre(attrs.position, size)
    assert abs((x0 + x1) / 2 - cx) <= 1 and abs((y0 + y1) / 2 - cy) <= 1, attrs
    extent = 2 * SPEC_HALF_EXTENT_AT_64[attrs.size] * size / 64
    assert abs((x1 - x0) - extent) <= 1 and abs((y1 - y0) - extent) <= 1, attrs
    box = obj[y0:y1, x0:x1]
    assert abs(box.mean() - SPEC_FILL[attrs.shape]) <= 1 / box.shape[0], (attrs, box.mean())
    assert _classify(box) == attrs.shape


def test_every_combination_renders_to_spec_at_64():
    for attrs in all_combinations():
        _check_pixels(attrs, 64)


@pytest.mark.parametrize("size", [32, 128])
def test_combinations_render_to_spec_at_other_sizes(size):
    subset = all_combinations()[::5]
    assert {(a.shape, a.size) for a in subset} == {(s, z) for s in shapes.SHAPES
                                                   for z in shapes.SIZES}
    for attrs in subset:
        _check_pixels(attrs, size)


def test_masks_follow_the_documented_formulas():
    """A per-pixel reference of the module docstring's rules, in plain Python."""
    rules = {
        "square": lambda dx, dy, r, n: True,
        "circle": lambda dx, dy, r, n: 4 * (dx * dx + dy * dy) <= n * n,
        "triangle": lambda dx, dy, r, n: 4 * abs(dx) <= 2 * (dy + r) + 1,
        "plus": lambda dx, dy, r, n: 6 * abs(dx) <= n or 6 * abs(dy) <= n,
    }
    for size in (32, 64, 128):
        for shape, rule in rules.items():
            for obj_size in shapes.SIZES:
                attrs = ShapeAttrs("red", shape, obj_size, "top left", "black")
                r = SPEC_HALF_EXTENT_AT_64[obj_size] * size // 64
                c = size // 4
                expected = np.array([[abs(x - c) <= r and abs(y - c) <= r
                                      and rule(x - c, y - c, r, 2 * r + 1)
                                      for x in range(size)] for y in range(size)])
                got = (render_array(attrs, size) == SPEC_COLORS["red"]).all(axis=-1)
                assert np.array_equal(got, expected), (size, shape, obj_size)


def test_render_is_fast():
    attrs = ShapeAttrs("red", "circle", "large", "center", "white")
    render_array(attrs)  # warm the mask cache
    start = time.perf_counter()
    for _ in range(1000):
        render_array(attrs)
    assert time.perf_counter() - start < 1.0  # < 1 ms per 64x64 image (typically ~0.05 ms)


# ----------------------------------------------------------------------------- dataset API

def test_dataset_items_and_batches():
    ds = ShapesDataset("test", size=32, length=16, seed=1)
    item = ds[3]
    a = ds.attrs(3)
    assert set(item) == {"image", "caption", *shapes.ATTRIBUTES}
    image = item["image"]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    expected_bg = torch.tensor(SPEC_BACKGROUNDS[a.background]) / 127.5 - 1
    assert torch.equal(image[:, 0, 0], expected_bg)
    assert item["color"] == shapes.COLORS.index(a.color) and isinstance(item["shape"], int)
    assert ShapeAttrs.from_labels([item[k] for k in shapes.ATTRIBUTES]) == a
    batch = next(iter(DataLoader(ds, batch_size=16)))
    tensors = ds.as_tensors()
    assert torch.equal(batch["image"], tensors["image"])
    assert batch["caption"] == tensors["caption"]
    for k in shapes.ATTRIBUTES:
        assert torch.equal(batch[k], tensors[k]) and tensors[k].dtype == torch.long
    with pytest.raises(IndexError, match="out of range"):
        ds[16]


def test_transform_replaces_default_conversion():
    ds = ShapesDataset("val", length=4, transform=np.asarray)
    a = ds.attrs(2)
    assert np.array_equal(ds[2]["image"], render_array(a, 64))


def test_validation_errors_are_specific():
    with pytest.raises(ValueError, match="unknown color 'pink'"):
        ShapeAttrs("pink", "circle", "small", "center", "white")
    with pytest.raises(ValueError, match="missing \\['background'\\]"):
        render({"color": "red", "shape": "circle", "size": "small", "position": "center"})
    with pytest.raises(ValueError, match="unknown split 'training'"):
        ShapesDataset("training")
    with pytest.raises(ValueError, match="multiple of 4"):
        ShapesDataset(size=30)
    with pytest.raises(ValueError, match="caption mode 'fancy'"):
        ShapesDataset(caption_mode="fancy")
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        sample_attrs("train", -1, 0)
    for attrs in all_combinations()[::37]:
        assert ShapeAttrs.from_labels(attrs.labels) == attrs
