"""Named style images (mmgen.style.styles): sizes, determinism, colour, texture, speed.

Thresholds are about half of (or well below) what was measured when the painters were
written, so they catch a broken painter (a flat, grey or blank image), not small changes:

* mean HSV saturation of procedural styles at 512 px: measured 0.40 (cubist) to 0.69 (mosaic);
  required > 0.25. (The photos: immunohistochemistry 0.25, hubble_deep_field 0.28.)
* texture, the mean absolute difference between neighbouring pixels ([0, 1] scale) at 512 px:
  measured 0.029 (cubist) to 0.064 (pointillism); required > 0.015.
* distinctness, the mean absolute difference of 64 px thumbnails of the 256 px images:
  measured >= 0.18 for every pair involving a procedural style (required > 0.1) and 0.075
  between the grayscale textures brick and grass (required > 0.04 for all pairs).
* time: each procedural style took 0.03-0.3 s at 512 px on a busy CPU; required < 2 s.
"""

import itertools
import time

import numpy as np
import pytest
from PIL import Image

from mmgen.style.styles import list_styles, load_style

STYLES = list_styles()
PROCEDURAL = list_styles("procedural")


def saturation(image: Image.Image) -> float:
    return float(np.asarray(image.convert("HSV"))[..., 1].mean() / 255)


def neighbour_difference(image: Image.Image) -> float:
    a = np.asarray(image, np.float32) / 255  # (H, W, 3)
    return float((np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()) / 2)


def thumbnail(name: str) -> np.ndarray:
    return np.asarray(load_style(name, 256).resize((64, 64), Image.BILINEAR), np.float32) / 255


def test_registry():
    assert STYLES == sorted(STYLES) and len(set(STYLES)) == len(STYLES)
    assert set(PROCEDURAL) == {"cubist", "mosaic", "pointillism", "swirls", "waves"}
    assert set(list_styles("photo")) | set(PROCEDURAL) == set(STYLES)
    with pytest.raises(ValueError, match="procedural"):
        list_styles("paintings")


@pytest.mark.parametrize("name", STYLES)
@pytest.mark.parametrize("size", [64, 200])
def test_size_mode_and_determinism(name, size):
    image = load_style(name, size)
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB" and image.size == (size, size)
    assert load_style(name, size).tobytes() == image.tobytes()


@pytest.mark.parametrize("name", PROCEDURAL)
def test_procedural_is_colourful_textured_and_fast(name):
    start = time.perf_counter()
    image = load_style(name, 512)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{name} took {elapsed:.2f} s at 512 px"
    assert saturation(image) > 0.25, f"{name} saturation {saturation(image):.3f}"
    assert neighbour_difference(image) > 0.015, f"{name} texture {neighbour_difference(image)}"


@pytest.mark.parametrize("name", PROCEDURAL)
def test_procedural_is_the_same_picture_at_every_size(name):
    # The random draws do not depend on the size: 128 px and 512 px show the same layout.
    small, large = (np.asarray(load_style(name, s).resize((32, 32), Image.BILINEAR),
                               np.float32) / 255 for s in (128, 512))
    other = np.asarray(load_style(PROCEDURAL[PROCEDURAL.index(name) - 1], 512)
                       .resize((32, 32), Image.BILINEAR), np.float32) / 255
    assert np.abs(small - large).mean() < 0.5 * np.abs(other - large).mean()


@pytest.mark.parametrize("name", ["brick", "grass", "gravel"])
def test_textures_are_grayscale(name):
    # Documented: these carry no colour, only texture.
    assert saturation(load_style(name, 128)) < 0.01


def test_styles_are_distinct():
    thumbs = {name: thumbnail(name) for name in STYLES}
    for a, b in itertools.combinations(STYLES, 2):
        difference = np.abs(thumbs[a] - thumbs[b]).mean()
        bound = 0.1 if a in PROCEDURAL or b in PROCEDURAL else 0.04
        assert difference > bound, f"{a} and {b} differ by only {difference:.3f}"


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown style 'starry'.*mosaic.*swirls"):
        load_style("starry")
    with pytest.raises(ValueError, match="size"):
        load_style("mosaic", 0)
    with pytest.raises(ValueError, match="size"):
        load_style("brick", 12.5)
