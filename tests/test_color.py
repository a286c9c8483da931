"""Colorization (issue #20): Lab conversions that keep L, the ab classes and their decoding,
the U-Net colorizer, its objectives and recipe, the PatchGAN, and the colour measures."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import train_steps
from skimage import color as skcolor

from mmgen.color.lab import (
    ab_bins,
    annealed_mean,
    lab_to_rgb,
    rebalancing_weights,
    rgb_to_lab,
    soft_encode,
)
from mmgen.color.net import ColorNet, ColorNetConfig
from mmgen.color.predict import colorize_tensor, grayscale
from mmgen.color.train import ClassObjective, Pix2Pix, Pix2PixObjective, RegressionObjective
from mmgen.data.photos import load_photo
from mmgen.gan.patchgan import PatchGAN, PatchGANConfig
from mmgen.metrics.color import ab_histogram_distance, colorfulness, psnr, ssim
from mmgen.recipes.color import COLOR_RECIPES, HELD_OUT_PHOTOS, TRAIN_PHOTOS, gray_input
from mmgen.registry import PretrainedModel, create_model

L_TOLERANCE = 100 / 255  # the "within 1/255" of L's range


def photo(name: str = "chelsea", size: int = 64) -> torch.Tensor:
    return torch.from_numpy(np.array(load_photo(name, size))).permute(2, 0, 1)[None] / 255


def rounded(rgb: torch.Tensor) -> torch.Tensor:
    """What an 8-bit PNG of ``rgb`` holds."""
    return (rgb * 255).round() / 255


# ----------------------------------------------------------------------------- Lab


def test_lab_matches_scikit_image_and_round_trips():
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    lab = rgb_to_lab(x)
    expected = skcolor.rgb2lab(x[1].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(lab[1].permute(1, 2, 0).numpy(), expected, atol=1e-10)
    torch.testing.assert_close(lab_to_rgb(lab), x, atol=1e-8, rtol=0)


def test_out_of_gamut_colour_keeps_its_lightness_and_hue():
    lab = torch.tensor([[20.0, 90, -100], [60, 100, 100], [90, -100, 80], [50, 0, 0]])
    lab = lab.T.reshape(1, 3, 2, 2)
    rgb = lab_to_rgb(lab)
    assert rgb.min() >= 0 and rgb.max() <= 1
    back = rgb_to_lab(rounded(rgb))
    assert (back[:, 0] - lab[:, 0]).abs().max() < L_TOLERANCE  # clipping RGB moves L
    hue_in = torch.atan2(lab[0, 2], lab[0, 1]).flatten()[:3]
    hue_out = torch.atan2(back[0, 2], back[0, 1]).flatten()[:3]
    assert (hue_in - hue_out).abs().max() < 0.1
    chroma = torch.hypot(back[0, 1], back[0, 2]).flatten()
    assert (chroma[:3] > 20).all() and chroma[3] < 1  # reduced, not dropped; gray stays gray


def test_clipping_would_have_moved_lightness():
    """The reason lab_to_rgb scales chroma: scikit-image's clipped conversion changes L."""
    lab = np.array([[[20.0, 90, -100]]])
    clipped = skcolor.rgb2lab(np.clip(skcolor.lab2rgb(lab), 0, 1))
    assert abs(clipped[0, 0, 0] - 20) > 2


# ----------------------------------------------------------------------------- classes


def test_ab_bins_cover_the_srgb_gamut():
    bins = ab_bins()
    assert bins.shape == (261, 2) and bins.abs().max() <= 110
    assert (bins == 0).all(dim=1).any()
    pixels = rgb_to_lab(torch.rand(1, 3, 64, 64))[0, 1:].flatten(1).T  # (P, 2)
    assert torch.cdist(pixels, bins).min(dim=1).values.max() <= 5 * math.sqrt(2) + 1e-4


def test_soft_encoding_weights_the_nearest_classes():
    bins = ab_bins()
    ab = torch.tensor([[[[30.0]], [[-20.0]]], [[[33.0]], [[-21.0]]]])  # (2, 2, 1, 1)
    target = soft_encode(ab, bins)
    assert target.shape == (2, len(bins), 1, 1)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(2, 1, 1))
    assert ((target > 0).sum(dim=1) == 5).all()
    nearest = torch.cdist(ab.flatten(1), bins).argmin(dim=1)
    assert (target.flatten(1).argmax(dim=1) == nearest).all()


def test_rebalancing_weights_favour_rare_colours():
    bins = ab_bins()
    flat = rebalancing_weights(torch.ones(len(bins)), bins)
    assert (flat - 1).abs().max() < 0.25  # uniform but for the smoothing at the gamut's edge
    prior = torch.ones(len(bins))
    gray = (bins == 0).all(dim=1)
    prior[gray] = 1000.0
    weights = rebalancing_weights(prior, bins)
    smooth_mean = float((weights * prior / prior.sum()).sum())
    assert weights[gray] < 0.2 * weights[~gray].median() and 0.2 < smooth_mean < 5


def test_annealed_mean_goes_from_mean_to_mode():
    bins = ab_bins()
    torch.manual_seed(0)
    logits = 3 * torch.randn(1, len(bins), 3, 4)
    mean = torch.einsum("nqhw,qc->nchw", logits.softmax(dim=1), bins)
    torch.testing.assert_close(annealed_mean(logits, bins, 1.0), mean)
    mode = bins[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(annealed_mean(logits, bins, 1e-3), mode, atol=1e-3, rtol=0)
    chroma = [annealed_mean(logits, bins, t).norm(dim=1).mean() for t in (1.0, 0.38, 0.1)]
    assert chroma[0] < chroma[1] < chroma[2]
    with pytest.raises(ValueError, match="temperature must be > 0"):
        annealed_mean(logits, bins, 0)


# ----------------------------------------------------------------------------- network


def test_color_net_shapes_sizes_and_round_trip(tmp_path):
    torch.manual_seed(0)
    net = create_model("color/unet-tiny").eval()
    assert net.predicts_classes and net.config.stride == 4
    lightness = 100 * torch.rand(2, 1, 32, 48)
    assert net(lightness).shape == (2, 261, 16, 24)
    assert net.predict_ab(lightness[:, :, :31, :45]).shape == (2, 2, 31, 45)
    regression = ColorNet(ColorNetConfig(width=8, mults=(1, 2, 2), output="ab"))
    assert not regression.predicts_classes
    out = regression(lightness)
    assert out.shape == (2, 2, 16, 24) and out.abs().max() <= 1
    net.save_pretrained(tmp_path / "m", dtype=torch.float16)
    loaded = PretrainedModel.from_pretrained(tmp_path / "m").float()
    torch.testing.assert_close(loaded.bins, net.bins)  # class centres survive fp16 exactly
    with pytest.raises(ValueError, match="at least 16 px a side"):
        net.predict_ab(lightness[:, :, :12])
    with pytest.raises(ValueError, match="output must be one of"):
        ColorNetConfig(output="hsv")


@pytest.mark.parametrize("size", [(97, 131), (16, 300), (64, 64)])
def test_colorized_photo_keeps_the_input_lightness(size):
    """Colour photo -> grayscale -> colorize: L within 1/255 of the input's, any size."""
    torch.manual_seed(0)
    net = create_model("color/unet-tiny").eval()
    with torch.no_grad():
        net.head[-1].bias.normal_(0, 3)  # decisive colours, some far out of gamut
    image = torch.nn.functional.interpolate(photo("coffee", 128), size=size, mode="bilinear")
    gray = rounded(grayscale(image))
    out = rounded(colorize_tensor(net, gray, size=48, temperature=0.1))
    assert out.shape == gray.shape
    assert colorfulness(out) > 5  # colour was added
    l_in, l_out = rgb_to_lab(gray)[:, 0], rgb_to_lab(out)[:, 0]
    assert (l_in - l_out).abs().max() < L_TOLERANCE


# ----------------------------------------------------------------------------- training




@pytest.mark.parametrize("kind", ["classes", "ab"])
def test_objectives_learn_the_colours_of_a_crop(kind):
    torch.manual_seed(0)
    batch = photo("astronaut", 32).expand(2, -1, -1, -1).clone()
    model = ColorNet(ColorNetConfig(width=8, mults=(1, 2, 2), output=kind))
    if kind == "classes":
        objective = ClassObjective(torch.ones(len(ab_bins())), degrade=False)
    else:
        objective = RegressionObjective(degrade=False)
    losses = train_steps(model, objective, batch, steps=40, lr=3e-3)
    assert losses[-1] < 0.6 * losses[0], losses[::8]
    truth = batch[:1]
    with torch.no_grad():
        out = colorize_tensor(model.eval(), grayscale(truth), size=32)
    assert psnr(out, truth) > psnr(grayscale(truth), truth)  # nearer the true colours


def test_pix2pix_steps_only_the_network_of_its_pass():
    torch.manual_seed(0)
    pair = Pix2Pix(ColorNet(ColorNetConfig(width=8, mults=(1, 2, 2), output="ab")),
                   PatchGAN(PatchGANConfig(in_channels=3, width=8, layers=2)))
    batch = photo("china", 32).expand(2, -1, -1, -1).clone()
    objective = Pix2PixObjective(degrade=False)
    d_step = objective(pair, batch, 0)
    d_step["loss"].backward()
    assert all(p.grad is None for p in pair.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in pair.discriminator.parameters())
    pair.zero_grad(set_to_none=True)
    g_step = objective(pair, batch, 1)
    assert math.isfinite(float(g_step["loss"])) and float(g_step["l1"]) > 0
    g_step["loss"].backward()
    assert any(p.grad is not None for p in pair.generator.parameters())
    with pytest.raises(ValueError, match="needs an ab generator"):
        Pix2Pix(create_model("color/unet-tiny"), PatchGAN(PatchGANConfig(in_channels=3)))


def test_patchgan_logits_each_see_a_70px_patch():
    """The paper's 70 x 70 receptive field with 3 strided layers (spectral norm: no norm
    layer, whose statistics would mix every position)."""
    net = PatchGAN(PatchGANConfig(in_channels=3, width=8, norm="spectral")).eval()
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    assert int(rows.max() - rows.min()) + 1 == 70 and int(cols.max() - cols.min()) + 1 == 70


def test_recipes_train_export_and_measure(tmp_path):
    assert set(COLOR_RECIPES) == {"photo-colorizer", "photo-colorizer-l1",
                                  "photo-colorizer-pix2pix"}
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    for name in ("photo-colorizer", "photo-colorizer-pix2pix"):
        recipe = COLOR_RECIPES[name]
        small = "color/unet-tiny" if recipe.objective == "classes" else "color/unet-small-ab"
        recipe = dataclasses.replace(
            recipe, model=small, eval_photos=("coffee",), eval_size=96, patch_size=32,
            train=dataclasses.replace(recipe.train, steps=2, batch_size=2, warmup_steps=1,
                                      ckpt_every=2, log_every=1))
        results = recipe.run(tmp_path / name, name)
        assert results["clean/gray_colorfulness"] < 1 < results["clean/colorfulness"]
        for key in ("clean/psnr", "grain/ssim", "blur/psnr", "jpeg/colorfulness"):
            assert math.isfinite(results[key])
        saved = PretrainedModel.from_pretrained(tmp_path / name / "model")
        assert isinstance(saved, ColorNet) and saved.info["recipe"] == name


# ----------------------------------------------------------------------------- measures


def test_colour_measures():
    image = photo("coffee", 64)
    gray = grayscale(image)
    assert colorfulness(gray) < 0.5 < 20 < colorfulness(image)
    assert psnr(image, image) == math.inf and ssim(image, image) == pytest.approx(1.0)
    assert psnr(gray, image) < 40 and ssim(gray, image) < 1
    red = torch.tensor([0.8, 0.1, 0.1]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    blue = torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    assert ab_histogram_distance(red, red) == 0 and ab_histogram_distance(red, blue) == 2
    assert ab_histogram_distance(image, photo("chelsea", 64)) > 0


def test_gray_inputs_a_user_may_give():
    image = photo("coffee", 64)
    clean = gray_input(image)
    for degradation in ("grain", "blur", "jpeg"):
        degraded = gray_input(image, degradation)
        assert degraded.shape == image.shape
        assert (degraded.amax(dim=1) - degraded.amin(dim=1)).max() < 1e-3  # still gray
        assert 0 < (degraded - clean).abs().mean() < 0.1
    with pytest.raises(ValueError, match="unknown degradation"):
        gray_input(image, "sepia")
