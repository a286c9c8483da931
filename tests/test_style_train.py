"""Training of the feed-forward style transfer methods (mmgen.style.train), their recipes
(mmgen.recipes.style) at toy size, and the pixel measures of mmgen.metrics.style."""

import json
from dataclasses import replace
from functools import partial

import pytest
import torch
import torchvision.transforms.functional as TF
from helpers import train_steps
from safetensors import safe_open
from torch import nn

import mmgen
from mmgen.data.photos import load_photo
from mmgen.metrics.style import color_histogram_distance, structure_similarity, texture_distance
from mmgen.recipes import get_recipe
from mmgen.registry import PretrainedModel
from mmgen.style.styles import load_style
from mmgen.style.train import (
    AdaINObjective,
    FastStyleObjective,
    StylePairs,
    lsuv_calibrate,
    random_encoder,
)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photos(size: int) -> torch.Tensor:
    """(4, 3, size, size) bundled photos in [0, 1]."""
    return torch.stack([TF.to_tensor(load_photo(name, size)) for name in PHOTOS])


@pytest.fixture(scope="module")
def encoder():
    return random_encoder(0)


def tiny_adain(encoder) -> nn.Module:
    torch.manual_seed(0)
    model = mmgen.create_model("style/adain-small", width=0.125)
    model.encoder.load_state_dict(encoder.state_dict())
    return model


# ----------------------------------------------------------------------------- objectives


def test_fast_style_loss_decreases_and_leaves_the_loss_network_alone():
    torch.manual_seed(0)
    net = mmgen.create_model("style/transformer-net-small", width=0.25, residual_blocks=1)
    style = TF.to_tensor(load_photo("immunohistochemistry", 48))[None]
    objective = FastStyleObjective(style, style_weight=1e5)
    before = {k: v.clone() for k, v in objective.networks[0].state_dict().items()}
    losses = train_steps(net, objective, (photos(48)[:2], None), net.parameters(), lr=1e-2)
    assert losses[-1] < 0.7 * losses[0]
    assert all(not p.requires_grad and p.grad is None for p in objective.networks[0].parameters())
    for k, v in objective.networks[0].state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert not any(k.startswith("features") for k in net.state_dict())  # not in the model
    out = objective(net, photos(48)[:1])  # a bare image batch works too
    assert {"loss", "content_loss", "style_loss", "tv_loss"} <= set(out)


def tiny_multi_style(styles):
    """A tiny conditional-IN network whose norm rows differ per style."""
    torch.manual_seed(0)
    net = mmgen.create_model("style/transformer-net-small", width=0.25, residual_blocks=1,
                             styles=styles)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.split(".")[-2].startswith("in"):  # (S, C) gamma and beta rows
                p.add_(0.3 * torch.randn(p.shape))
    return net


def test_fast_style_objective_gives_each_image_its_styles_grams():
    """Two styles: the losses equal those of two one-style objectives, each on the images
    given its style (the network fixed to that style), weighted by their share of the batch."""
    net = tiny_multi_style(("immunohistochemistry", "swirls"))
    styles = [TF.to_tensor(load_style(name, 48))[None] for name in net.config.styles]
    weights = (1e5, 3e5)
    objective = FastStyleObjective(styles, style_weight=weights)
    x = photos(48)  # (4, 3, 48, 48)
    torch.manual_seed(3)
    index = objective.style_indices(4)
    assert sorted(index.tolist()) == [0, 0, 1, 1]  # equal shares
    torch.manual_seed(3)  # the same draw inside the call
    out = objective(net, (x, None))
    expected = {key: 0.0 for key in out}
    for s in (0, 1):
        single = FastStyleObjective(styles[s], objective.networks[0], style_weight=weights[s])
        part = single(partial(net, style=s), x[index == s])  # Grams of style s only
        for key in expected:
            expected[key] += part[key] * (index == s).sum() / 4
    for key in expected:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-5, atol=0, msg=key)
    # Both styles' rows learn; the style term is weighted per style
    out["loss"].backward()
    assert (net.in1.weight.grad.abs().sum(-1) > 0).all()
    assert out["loss"] > out["content_loss"] + weights[0] * out["style_loss"]


def test_fast_style_objective_draws_one_loss_network_per_call():
    """With several loss networks, each call is the one-network objective of the network it
    draws (first, from the global RNG), each with its own Grams of the style."""
    from mmgen.style.features import feature_network

    torch.manual_seed(0)
    net = mmgen.create_model("style/transformer-net-small", width=0.25, residual_blocks=1)
    style = TF.to_tensor(load_style("swirls", 48))[None]
    networks = [feature_network("random", seed=seed) for seed in (0, 5)]
    objective = FastStyleObjective(style, networks, style_weight=1e5)
    assert not torch.equal(objective.grams[0]["relu1_1"], objective.grams[1]["relu1_1"])
    x = photos(32)[:2]
    picked = set()
    for seed in range(6):
        torch.manual_seed(seed)
        pick = int(torch.randint(2, ()))
        picked.add(pick)
        torch.manual_seed(seed)
        out = objective(net, x)
        single = FastStyleObjective(style, networks[pick], style_weight=1e5)(net, x)
        for key in out:
            torch.testing.assert_close(out[key], single[key], rtol=1e-6, atol=0, msg=key)
    assert picked == {0, 1}
    with pytest.raises(ValueError, match="non-empty sequence"):
        FastStyleObjective(style, [])


def test_fast_style_objective_indices_and_errors():
    objective = FastStyleObjective([torch.rand(1, 3, 32, 32)] * 3, style_weight=1e5)
    torch.manual_seed(0)
    draws = [objective.style_indices(4) for _ in range(30)]
    torch.manual_seed(0)
    assert all(torch.equal(a, objective.style_indices(4)) for a in draws)  # reproducible
    for index in draws:  # consecutive styles from a random first one: shares differ by <= 1
        assert sorted(torch.bincount(index, minlength=3).tolist()) == [1, 1, 2]
    assert {int(index[0]) for index in draws} == {0, 1, 2}
    assert objective.style_weights == (1e5, 1e5, 1e5)
    plain = mmgen.create_model("style/transformer-net-small", width=0.25, residual_blocks=1)
    with pytest.raises(ValueError, match="3 style image.*network knows 0 style"):
        objective(plain, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="one style_weight per style"):
        FastStyleObjective([torch.rand(1, 3, 32, 32)] * 2, style_weight=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"style 1 must be one RGB image"):
        FastStyleObjective([torch.rand(1, 3, 32, 32), torch.rand(3, 32, 32)])


def test_adain_loss_decreases_and_only_the_decoder_learns(encoder):
    model = tiny_adain(encoder)
    images = photos(48)
    batch = (images[:2], images[2:].flip(-1))
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    objective = AdaINObjective()
    out = objective(model, batch)
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    model.zero_grad(set_to_none=True)
    losses = train_steps(model, objective, batch, model.decoder.parameters(), lr=1e-3)
    assert losses[-1] < 0.7 * losses[0]
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)
    model.encoder.requires_grad_(True)
    with pytest.raises(ValueError, match="trains the decoder only"):
        objective(model, batch)


def test_adain_layout_anchor_adds_the_content_features_of_a_drawn_network(encoder):
    """anchor_weight adds weight x MSE(phi(g(t)), phi(content)) at relu2_1 of the random
    network the call draws, on top of the paper's loss (anchor_weight 0)."""
    from mmgen.style.adain import adain
    from mmgen.style.features import feature_network

    model = tiny_adain(encoder)
    images = photos(48)
    batch = (images[:2], images[2:])
    networks = [feature_network("random", seed=seed) for seed in (0, 4)]
    anchored = AdaINObjective(anchor_weight=3.0, anchor_networks=networks)
    with torch.no_grad():
        image = model.decoder(adain(model.encoder(batch[0]),
                                    model.encoder.intermediate(batch[1])[-1]))
        for seed in range(4):
            torch.manual_seed(seed)
            pick = int(torch.randint(2, ()))
            torch.manual_seed(seed)
            out = anchored(model, batch)
            feats = [networks[pick](x, ["relu2_1"])["relu2_1"] for x in (image, batch[0])]
            anchor = torch.nn.functional.mse_loss(*feats)
            torch.testing.assert_close(out["anchor_loss"], anchor)
            paper = AdaINObjective()(model, batch)
            torch.testing.assert_close(out["loss"], paper["loss"] + 3.0 * anchor)
    assert "anchor_loss" not in paper
    assert AdaINObjective(anchor_weight=1.0).anchor_networks[0].config.seed == 0
    with pytest.raises(ValueError, match="must be >= 0"):
        AdaINObjective(anchor_weight=-1.0)


def test_adain_gram_term_is_each_images_gram_loss_against_its_own_style(encoder):
    """gram_weight adds weight x the Gram loss of g(t) against its own style image at
    FAST_STYLE_LAYERS of the drawn network; with the anchor, both use that one network."""
    from mmgen.style.adain import adain
    from mmgen.style.features import feature_network
    from mmgen.style.losses import gram_matrix
    from mmgen.style.train import FAST_STYLE_LAYERS

    model = tiny_adain(encoder)
    images = photos(48)
    batch = (images[:2], images[2:])
    networks = [feature_network("random", seed=seed) for seed in (0, 4)]
    both = AdaINObjective(anchor_weight=3.0, anchor_networks=networks, gram_weight=2e4)
    with torch.no_grad():
        image = model.decoder(adain(model.encoder(batch[0]),
                                    model.encoder.intermediate(batch[1])[-1]))
        for seed in range(4):
            torch.manual_seed(seed)
            net = networks[int(torch.randint(2, ()))]
            torch.manual_seed(seed)
            out = both(model, batch)
            ours, theirs = net(image, FAST_STYLE_LAYERS), net(batch[1], FAST_STYLE_LAYERS)
            gram = sum(torch.nn.functional.mse_loss(gram_matrix(ours[k]), gram_matrix(theirs[k]))
                       for k in FAST_STYLE_LAYERS) / len(FAST_STYLE_LAYERS)
            torch.testing.assert_close(out["gram_loss"], gram)
            anchor = torch.nn.functional.mse_loss(net(image, ["relu2_1"])["relu2_1"],
                                                  net(batch[0], ["relu2_1"])["relu2_1"])
            torch.testing.assert_close(out["anchor_loss"], anchor)
            paper = AdaINObjective()(model, batch)
            torch.testing.assert_close(out["loss"], paper["loss"] + 3.0 * anchor + 2e4 * gram)
    swapped = both(model, (batch[0], batch[1].flip(0)))  # each image against the other style
    assert not torch.allclose(swapped["gram_loss"], out["gram_loss"])
    assert AdaINObjective(gram_weight=1.0).anchor_networks[0].config.seed == 0
    with pytest.raises(ValueError, match="must be >= 0"):
        AdaINObjective(gram_weight=-1.0)


# ----------------------------------------------------------------------------- random encoder


def test_lsuv_calibrate_gives_unit_preactivations_on_its_inputs():
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3, bias=True))
    x = torch.rand(4, 3, 16, 16) * 5 + 2
    lsuv_calibrate(layers, x)
    h = x
    for m in layers:
        h = m(h)
        if isinstance(m, nn.Conv2d):
            torch.testing.assert_close(h.mean(dim=(0, 2, 3)), torch.zeros(h.shape[1]),
                                       atol=1e-4, rtol=0)
            torch.testing.assert_close(h.std(dim=(0, 2, 3)), torch.ones(h.shape[1]),
                                       atol=1e-4, rtol=0)


def test_random_encoder_is_deterministic_and_calibrated_on_photos(encoder):
    again, other = random_encoder(0), random_encoder(1)
    for (k, v), w in zip(encoder.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    assert not torch.equal(encoder[2].weight, other[2].weight)
    assert all(not p.requires_grad for p in encoder.parameters())
    x = photos(64)  # natural images, not the calibration noise
    with torch.no_grad():
        for m in encoder:
            if isinstance(m, nn.Conv2d):
                y = m(x)  # pre-activations (4, C, h, w)
                assert 0.5 < y.var(dim=(0, 2, 3)).mean() < 2.0
                assert y.mean().abs() < 0.5
            x = m(x)


def test_style_pairs_are_a_pure_function_of_the_index():
    content = [(torch.rand(3, 32, 32), 0) for _ in range(5)]
    data = StylePairs(content, ["swirls", "immunohistochemistry"], 32, style_size=64, seed=3)
    c, s = data[4]
    assert c.shape == s.shape == (3, 32, 32) and 0 <= s.min() and s.max() <= 1
    torch.testing.assert_close(data[4][1], s, rtol=0, atol=0)
    assert not torch.equal(data[3][1], s)
    with pytest.raises(ValueError, match="patch_size <= style_size"):
        StylePairs(content, ["swirls"], 128, style_size=64)


# ----------------------------------------------------------------------------- recipes

RESULT_KEYS = {"style_loss_reduction", "color_distance_reduction", "texture_distance_reduction",
               "structure_similarity", "seconds_per_512px", "train_seconds"}


def tiny(recipe, **overrides):
    train = replace(recipe.train, steps=2, batch_size=2, warmup_steps=0, ckpt_every=1,
                    log_every=1)
    return replace(recipe, train=train, patch_size=32, photo_sizes=(64,),
                   eval_photos=("coffee", "chelsea"), eval_size=48, timing_size=32, **overrides)


def check_run(tmp_path, recipe, name) -> PretrainedModel:
    results = recipe.run(tmp_path, name)
    assert RESULT_KEYS <= set(results) and set(recipe.targets) <= set(results)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["recipe"] == name and saved["results"] == results
    model = PretrainedModel.from_pretrained(tmp_path / "model")
    assert model.info["recipe"] == name and model.info["results"] == results
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as f:  # fp16 on disk
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    return model


def test_fast_style_recipe_runs_end_to_end(tmp_path):
    recipe = tiny(get_recipe("style-fast"), style_size=64,
                  model_args={"width": 0.25, "residual_blocks": 1})
    model = check_run(tmp_path, recipe, "style-fast")
    assert model.config.styles == recipe.styles == ("swirls", "pointillism", "waves")
    assert model.info["styles"] == list(recipe.styles)
    assert {f"structure_similarity_{name}" for name in recipe.styles} <= set(
        model.info["results"])
    assert model.stylize(torch.rand(1, 3, 40, 40), 2).shape == (1, 3, 40, 40)
    with pytest.raises(ValueError, match="distinct styles of"):
        replace(recipe, styles=("swirls", "nope"), style_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="one style weight each"):
        replace(recipe, style_weights=(1.0,))
    with pytest.raises(ValueError, match="loss_seeds must be distinct"):
        replace(recipe, loss_seeds=(1, 1))
    objective = replace(recipe, loss_seeds=(0, 3)).setup(tmp_path / "seeds", False).objective
    assert [n.config.seed for n in objective.networks] == [0, 3]


def test_adain_recipe_runs_end_to_end_and_ships_its_encoder(tmp_path):
    recipe = tiny(get_recipe("style-adain"), style_size=64, model_args={"width": 0.125})
    model = check_run(tmp_path, recipe, "style-adain")
    assert model.info["held_out_styles"] == list(recipe.held_out)
    assert not set(recipe.held_out) & set(model.info["train_styles"])
    assert model.config.encoder_width == 0.5 and model.config.depth == 3  # adain-slim-relu3
    encoder = random_encoder(recipe.encoder_seed, model.config.encoder_width, 3)
    for k, v in encoder.state_dict().items():  # the random encoder, as fp16, in the file
        torch.testing.assert_close(model.encoder.state_dict()[k], v.half().float(),
                                   rtol=0, atol=0)


# ----------------------------------------------------------------------------- metrics


def test_style_metrics_behave():
    a = TF.to_tensor(load_photo("astronaut", 128))
    assert color_histogram_distance(a, a) == 0.0
    assert texture_distance(a, a) == 0.0
    assert structure_similarity(a, a) == pytest.approx(1.0)
    shifted = (a + torch.tensor([0.3, 0.0, -0.2])[:, None, None]).clamp(0, 1)
    blurred = TF.gaussian_blur(a, 9, 2.0)
    other = TF.to_tensor(load_photo("coffee", 128))
    # a colour shift moves the colours far, the texture hardly
    assert color_histogram_distance(shifted, a) > 0.3 > 0.05 > texture_distance(shifted, a)
    assert color_histogram_distance(shifted, a) > 5 * color_histogram_distance(blurred, a)
    # blurring keeps the (blurred-scale) structure but loses the fine texture
    assert structure_similarity(blurred, a) > 0.9
    assert texture_distance(blurred, a) > 3 * texture_distance(shifted, a)
    assert abs(structure_similarity(other, a)) < 0.2  # unrelated photos
    # batches: the mean over pairs, one reference for all
    batch = torch.stack([a, shifted])
    assert color_histogram_distance(batch, a) == pytest.approx(
        color_histogram_distance(shifted, a) / 2)


def test_style_metrics_reject_bad_inputs():
    a = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match="same size"):
        structure_similarity(a, torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        color_histogram_distance(a * 255, a)
    with pytest.raises(ValueError, match="one image per image or one for all"):
        texture_distance(torch.rand(3, 3, 32, 32), torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="float RGB"):
        texture_distance((a * 255).to(torch.uint8), a)
