"""Reference-based colorization (mmgen.color.reference): the input's L kept, the reference's
palette transferred by lightness and texture, determinism, clear errors."""

import pytest
import torch
import torchvision.transforms.functional as TF

from mmgen.color.lab import rgb_to_lab
from mmgen.color.predict import grayscale
from mmgen.color.reference import ReferenceConfig, colorize_reference
from mmgen.data.photos import load_photo
from mmgen.metrics.color import ab_histogram_distance

RED, BLUE = (0.7, 0.1, 0.1), (0.45, 0.65, 1.0)  # L 38 (a 58, b 42) and L 68 (a 8, b -49)


def photo(name: str, height: int, width: int) -> torch.Tensor:
    """Bundled photo ``name`` resized to height x width, (1, 3, H, W) in [0, 1]."""
    return TF.to_tensor(TF.resize(load_photo(name), [height, width], antialias=True))[None]


def two_colours(height: int, width: int, split: int, first, second, axis: int) -> torch.Tensor:
    """(1, 3, H, W): colour ``first`` before index ``split`` along ``axis`` (2: rows, 3:
    columns), ``second`` after."""
    image = torch.empty(1, 3, height, width)
    image.narrow(axis, 0, split)[:] = torch.tensor(first)[:, None, None]
    image.narrow(axis, split, image.shape[axis] - split)[:] = torch.tensor(second)[:, None, None]
    return image


@pytest.mark.parametrize("config", [ReferenceConfig(), ReferenceConfig(size=48)],
                         ids=["full-size", "working-size-48"])
def test_lightness_is_kept_at_odd_sizes(config):
    gray = grayscale(photo("chelsea", 97, 131))
    reference = photo("astronaut", 300, 180)  # other size and aspect, above the size cap
    out = colorize_reference(gray, reference, config)
    assert out.shape == gray.shape and 0 <= out.min() and out.max() <= 1
    lightness = rgb_to_lab((out * 255).round() / 255)[:, 0]  # as saved in 8 bits
    assert (lightness - rgb_to_lab(gray)[:, 0]).abs().max() < 100 / 255
    assert rgb_to_lab(out)[:, 1:].abs().mean() > 5  # and colour was added


def test_only_the_lightness_of_the_input_is_read():
    truth, reference = photo("coffee", 64, 96), photo("astronaut", 96, 96)
    gray = grayscale(truth)  # the same L up to float rounding (< 1e-5)
    difference = colorize_reference(truth, reference) - colorize_reference(gray, reference)
    assert difference.abs().max() < 0.02


def test_output_palette_is_the_references():
    gray = grayscale(photo("chelsea", 96, 128))
    reference, unrelated = photo("astronaut", 128, 128), photo("flower", 128, 128)
    distance = ab_histogram_distance(colorize_reference(gray, reference), reference)
    assert ab_histogram_distance(gray, reference) == pytest.approx(1.0)  # no colour at all
    assert distance < 0.5 * ab_histogram_distance(gray, reference)
    assert distance < 0.5 * ab_histogram_distance(unrelated, reference)


def test_two_hues_are_transferred_by_lightness():
    reference = two_colours(48, 64, 32, RED, BLUE, axis=3)  # dark red left, light blue right
    scene = two_colours(60, 45, 20, BLUE, RED, axis=2)  # light top third, dark below
    lab = rgb_to_lab(colorize_reference(grayscale(scene), reference))[0]
    light, dark = lab[1:, :20], lab[1:, 20:]
    assert light[0].mean() < 15 and light[1].mean() < -40  # blue: b strongly negative
    assert dark[0].mean() > 50 and dark[1].mean() > 35  # red: a and b positive
    # no hue the reference lacks: every pixel has red's or blue's hue
    hue = torch.atan2(lab[2], lab[1]).rad2deg()  # (H, W)
    truth = rgb_to_lab(scene)[0]
    hues = torch.atan2(truth[2, [0, -1], 0], truth[1, [0, -1], 0]).rad2deg()  # blue, red
    assert ((hue[..., None] - hues).abs().min(dim=-1).values < 2).all()


def test_same_seed_same_output():
    gray = grayscale(photo("grace_hopper", 80, 64))
    reference = photo("astronaut", 96, 96)  # 9216 pixels: 4096 samples are a random choice
    first = colorize_reference(gray, reference, seed=3)
    assert torch.equal(first, colorize_reference(gray, reference, seed=3))
    assert not torch.equal(first, colorize_reference(gray, reference, seed=4))


@pytest.mark.parametrize(("images", "reference", "message"), [
    (torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32), r"images must be one RGB image"),
    (torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32), r"images must be one RGB image"),
    (torch.rand(1, 3, 32, 32), torch.rand(3, 32, 32), r"reference must be one RGB image"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.rand(1, 3, 32, 32), r"float tensor"),
    (torch.rand(1, 3, 10, 40), torch.rand(1, 3, 32, 32), r"images is 10 x 40 px.*>= 16"),
    (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 15), r"reference is 32 x 15 px"),
    (torch.full((1, 3, 32, 32), float("nan")), torch.rand(1, 3, 32, 32), r"NaN"),
])
def test_bad_images_are_refused(images, reference, message):
    with pytest.raises(ValueError, match=message):
        colorize_reference(images, reference)


@pytest.mark.parametrize(("fields", "message"), [
    ({"size": 8}, r"ReferenceConfig.size must be >= 16"),
    ({"samples": 4, "neighbours": 8}, r"neighbours \(8\) must be <= samples \(4\)"),
    ({"windows": (5, 6)}, r"windows must be odd ints >= 3"),
    ({"lightness_weight": 0.0, "mean_weight": 0.0, "std_weight": 0.0}, r"not all 0"),
    ({"rebalance": 2.0}, r"rebalance must be in \[0, 1\]"),
    ({"smooth_radius": -1}, r"smooth_radius must be >= 0"),
    ({"smooth_edge": 0.0}, r"smooth_edge must be > 0"),
])
def test_bad_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ReferenceConfig(**fields)
