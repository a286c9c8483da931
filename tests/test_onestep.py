"""One-step generators: the latent tools, the pipeline (seeds, conditions, metadata, folder
round trip), AC-GAN's loss, batch-norm recalibration and the measurements of the recipes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mmgen
from mmgen.diffusion.metadata import GenerationParams, GenerationRequest
from mmgen.gan.objective import GANObjective, classification_loss
from mmgen.latents import attribute_vector, group_mean, interpolate, lerp, slerp
from mmgen.onestep import OneStepConfig, OneStepPipeline
from mmgen.recipes.onestep import recalibrate_batch_norm

CAPTION = "a large red circle in the center on a white background"


def _pixels(images):
    return np.stack([np.asarray(im) for im in images])


@pytest.fixture(scope="module")
def digits():
    torch.manual_seed(0)
    return OneStepPipeline(mmgen.create_model("gan/dcgan/tiny"),
                           OneStepConfig("tiny", "class", tuple("0123456789")))


@pytest.fixture(scope="module")
def shapes_gan():
    torch.manual_seed(1)
    model = mmgen.create_model("gan/dcgan/64", conditions=(6, 4, 2, 9, 3), width=4,
                               latent_dim=8, embed_dim=4)
    return OneStepPipeline(model, OneStepConfig("tiny-shapes", "shapes"))


# ----------------------------------------------------------------------------- latents


def test_slerp_follows_the_great_circle():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([[3 / math.sqrt(2)] * 2]), atol=1e-6)
    assert torch.allclose(lerp(a, b, 0.5), torch.tensor([[1.5, 1.5]]))  # shorter
    same = slerp(a, 2 * a, 0.25)  # parallel: falls back to a straight line
    assert torch.allclose(same, torch.tensor([[3.75, 0.0]]))


def test_interpolate_walks_z_by_slerp_and_the_embedding_by_a_line():
    start, end = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 4.0])
    path = interpolate(start, end, 5, latent_dim=2)  # (5, 3)
    assert path.shape == (5, 3)
    assert torch.allclose(path[0], start) and torch.allclose(path[-1], end)
    assert torch.allclose(path[:, :2].norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(path[:, 2], torch.linspace(0, 4, 5))
    assert torch.allclose(interpolate(start, end, 3, 2, "lerp")[1], (start + end) / 2)
    with pytest.raises(ValueError, match="at least 2 frames"):
        interpolate(start, end, 1, 2)
    with pytest.raises(ValueError, match="method"):
        interpolate(start, end, 3, 2, "cubic")


def test_attribute_vector_is_the_difference_of_group_means():
    w = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 8.0]])
    red, blue = torch.tensor([True, True, False, False]), torch.tensor([False, False, True, True])
    assert torch.allclose(attribute_vector(w, red, blue), torch.tensor([-1.0, 6.0]))
    with pytest.raises(ValueError, match="empty"):
        group_mean(w, torch.zeros(4, dtype=torch.bool))


# ----------------------------------------------------------------------------- pipeline


def test_images_depend_on_seed_and_condition_not_on_the_batch(digits):
    a = digits([3, 7, 1], seed=10, num_images=2, batch_size=1)
    b = digits([3, 7, 1], seed=10, num_images=2, batch_size=6)
    assert np.array_equal(_pixels(a), _pixels(b))
    assert a[0].size == (28, 28) and a[0].mode == "L"
    params = [GenerationParams.from_json(im.info["mmgen"]) for im in a]
    assert [p.seed for p in params] == list(range(10, 16))
    assert [p.prompt for p in params[::2]] == ["class 3 (3)", "class 7 (7)", "class 1 (1)"]
    assert params[0].sampler == "one-step" and params[0].model == "tiny"
    # image i is its seed's: alone, at another position, it is the same image
    alone = digits("class 7", seed=12)
    assert np.array_equal(_pixels(alone)[0], _pixels(a)[2])
    assert not np.array_equal(_pixels(a)[2], _pixels(a)[3])  # seeds 12 and 13 differ


def test_shapes_conditions_are_captions_recorded_canonically(shapes_gan):
    varied = "A  Large RED circle in the center on a white   background"  # case, spaces
    canonical = CAPTION
    image = shapes_gan(varied, seed=3)[0]
    assert GenerationParams.from_json(image.info["mmgen"]).prompt == canonical
    assert image.size == (64, 64) and image.mode == "RGB"
    with pytest.raises(ValueError):
        shapes_gan("a banana", seed=0)


def test_conditions_are_checked(digits, shapes_gan):
    with pytest.raises(ValueError, match="out of range"):
        digits(10)
    with pytest.raises(ValueError, match="not a class number or a single class name"):
        digits("eleven")
    with pytest.raises(ValueError, match="is conditional"):
        digits(None)
    vae = OneStepPipeline(mmgen.create_model("vae/conv/tiny"), OneStepConfig("v"))
    assert len(vae(None, num_images=3, seed=0)) == 3
    with pytest.raises(ValueError, match="unconditional"):
        vae(3)
    with pytest.raises(ValueError, match="conditioning 'shapes' needs"):
        OneStepPipeline(digits.model, OneStepConfig("x", "shapes"))
    with pytest.raises(ValueError, match="one per class"):
        OneStepPipeline(digits.model, OneStepConfig("x", "class", ("a", "b")))
    with pytest.raises(ValueError, match="no steps option"):
        digits.generate(GenerationRequest(["1"], steps=25))
    with pytest.raises(ValueError, match="no negative prompt"):
        digits.generate(GenerationRequest(["1"], negative_prompt="blurry"))
    # what the images record is accepted back (mmgen generate --from-image)
    image = digits(4, seed=5)[0]
    again = digits.generate(GenerationParams.from_json(image.info["mmgen"]).request())
    assert np.array_equal(_pixels(again), _pixels([image]))


def test_folder_round_trip_and_fp16(digits, tmp_path):
    digits.save_pretrained(tmp_path / "g", dtype=torch.float16)
    loaded = mmgen.load(tmp_path / "g")
    assert isinstance(loaded, OneStepPipeline) and loaded.config == digits.config
    want = digits.model.generator.main[0].weight.half().float()
    assert torch.equal(loaded.model.generator.main[0].weight, want)
    assert len(loaded([0, 9], seed=0)) == 2


def test_nonfinite_weights_are_an_error_not_an_image(tmp_path):
    model = mmgen.create_model("gan/dcgan/tiny")
    with torch.no_grad():
        model.generator.main[0].weight.fill_(float("nan"))
    pipe = OneStepPipeline(model, OneStepConfig("bad", "class"))
    with pytest.raises(ValueError, match="NaN/Inf"):
        pipe(1, seed=0)


def test_interpolation_ends_are_the_two_images(digits):
    frames = digits.interpolate(2, 8, seed=4, end_seed=9, frames=6)
    assert len(frames) == 6
    assert np.array_equal(_pixels(frames[:1]), _pixels(digits(2, seed=4)))
    assert np.array_equal(_pixels(frames[-1:]), _pixels(digits(8, seed=9)))
    middle = _pixels(frames[2:4]).astype(int)
    assert (middle != _pixels(frames[:1])).any()


def test_input_vector_then_synthesize_is_forward(digits):
    model = digits.model
    z, y = model.sample_latents(4, torch.Generator().manual_seed(0)), torch.tensor([1, 2, 3, 4])
    assert torch.allclose(model.synthesize(model.input_vector(z, y)), model(z, y))
    assert model.input_vector(z, y).shape == (4, model.config.latent_dim + model.config.embed_dim)


# ----------------------------------------------------------------------------- training parts


def test_acgan_loss_trains_the_auxiliary_classifier():
    torch.manual_seed(0)
    model = mmgen.create_model("gan/dcgan/tiny", aux_classifier=True)
    x, y = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (8,))
    _, classes = model.discriminator(x, y[:, None], with_classes=True)
    assert [c.shape for c in classes] == [(8, 10)]
    assert torch.allclose(classification_loss(classes, y[:, None]), F.cross_entropy(classes[0], y))
    out = GANObjective(aux_weight=1.0)(model, (x, y), 0)  # D step: real images' labels
    out["loss"].backward()
    assert model.discriminator.aux_heads[0].weight.grad.abs().sum() > 0
    assert "aux_real" in out
    with pytest.raises(ValueError, match="aux_classifier=True"):
        GANObjective(aux_weight=1.0)(mmgen.create_model("gan/dcgan/tiny"), (x, y), 1)
    with pytest.raises(ValueError, match="needs conditions"):
        mmgen.create_model("gan/dcgan/64", aux_classifier=True)


def test_batch_norm_recalibration_measures_the_generators_own_activations():
    torch.manual_seed(0)
    model = mmgen.create_model("gan/dcgan/tiny")
    calibrated = recalibrate_batch_norm(model, batches=3, batch_size=32, seed=5)
    bn = calibrated.generator.main[1]
    # the same draws, by hand: the first convolution's outputs, averaged over all batches
    g = torch.Generator().manual_seed(5)
    outs = []
    for _ in range(3):
        z = model.sample_latents(32, g)
        labels = torch.randint(0, 10, (32,), generator=g)[:, None]
        w = model.generator.input_vector(z, labels)[:, :, None, None]
        outs.append(model.generator.main[0](w).detach())
    h = torch.cat(outs)  # (96, C, 7, 7)
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-6)
    assert not calibrated.training and model.generator.main[1].running_mean.abs().sum() == 0


# ----------------------------------------------------------------------------- measurements


def test_vae_likelihood_bound_tightens_with_importance_samples():
    from mmgen.metrics.onestep import vae_likelihood_results

    torch.manual_seed(0)
    model = mmgen.create_model("vae/conv/tiny").eval()
    x = (torch.rand(16, 1, 28, 28) > 0.7).float()
    r = vae_likelihood_results(model, x, samples=64, prefix="t")
    assert r["t/nll_nats"] < r["t/negative_elbo_nats"]  # IWAE bound >= ELBO
    dims = 28 * 28
    assert r["t/nll_bits_per_dim"] == pytest.approx(r["t/nll_nats"] / (dims * math.log(2)),
                                                     rel=1e-3)


def test_mnist_measurement_of_real_digits_is_near_the_floor():
    """A 'generator' that returns real training digits of the asked class: LeNet reads
    nearly all of them, and FID / precision / recall sit at the floor's values."""
    from mmgen.data.mnist import MNIST
    from mmgen.metrics.onestep import mnist_generator_results
    from mmgen.onestep import to_pil

    data = MNIST("train", normalize=True)
    by_class = {d: torch.nonzero(data.labels == d)[:, 0].tolist() for d in range(10)}

    def real_digits(classes, seed=0):
        # digits 100 on of each class: not those of the floor
        picks = [by_class[c][seed + 100 + i // 10] for i, c in enumerate(classes)]
        return to_pil(torch.stack([data[i][0] for i in picks]))

    r = mnist_generator_results(real_digits, n=200)
    assert r["label_accuracy"] >= 0.97 and r["worst_digit_accuracy"] >= 0.85
    assert abs(r["lenet_fid"] - r["lenet_fid_floor"]) < 0.5 * r["lenet_fid_floor"] + 1.0
    assert r["precision"] > 0.6 and r["recall"] > 0.6


def test_l1_term_and_instance_noise():
    torch.manual_seed(0)
    model = mmgen.create_model("gan/dcgan/tiny")
    x, y = torch.rand(16, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (16,))
    seen = []

    class Recording(torch.nn.Module):  # D, remembering what it was shown
        def __init__(self, d):
            super().__init__()
            self.d = d

        def forward(self, images, labels):
            seen.append(images)
            return self.d(images, labels)

    model.discriminator = Recording(model.discriminator)
    torch.manual_seed(1)
    out = GANObjective(l1_weight=2.0, instance_noise=0.3)(model, (x, y), 1)  # G step
    torch.manual_seed(1)
    z = model.sample_latents(16)
    fake = model.generator(z, y[:, None])
    assert out["l1"] == pytest.approx(float((fake - x).abs().mean().detach()), rel=1e-5)
    assert float((seen[0] - fake).detach().std()) == pytest.approx(0.3, rel=0.05)  # noisy fakes
    seen.clear()
    GANObjective(instance_noise=0.3)(model, (x, y), 0)  # D step: real images get noise too
    assert float((seen[0] - x).std()) == pytest.approx(0.3, rel=0.05)
    with pytest.raises(ValueError, match="instance_noise must be >= 0"):
        GANObjective(instance_noise=-1.0)


# ----------------------------------------------------------------------------- recipes


def _toy(recipe, steps=4, **fields):
    from dataclasses import replace

    return replace(recipe, **fields, train=replace(recipe.train, steps=steps, ckpt_every=0,
                                                   log_every=1))


def test_gan_recipes_train_export_and_measure_at_toy_size(tmp_path):
    from mmgen.recipes import ONESTEP_RECIPES

    mnist = _toy(ONESTEP_RECIPES["mnist-dcgan"], model="gan/dcgan/tiny", monitor_every=2,
                 eval_samples=100)
    results = mnist.run(tmp_path / "mnist", "toy-dcgan")
    pipe = mmgen.load(tmp_path / "mnist" / "model")
    assert isinstance(pipe, OneStepPipeline) and pipe.config.labels == tuple("0123456789")
    assert pipe.model.info["results"] == results
    assert {"label_accuracy", "worst_digit_accuracy", "lenet_fid", "lenet_fid_floor",
            "precision", "recall"} <= set(results)
    monitor = (tmp_path / "mnist" / "run" / "monitor.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in monitor[1:]] == ["2", "4"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "mnist" / "model" / "model" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} <= {torch.float16, torch.int64}

    shapes_gan = _toy(ONESTEP_RECIPES["shapes-dcgan"], steps=2, monitor_every=2,
                      eval_samples=8, arithmetic_samples=16,
                      model_args={**ONESTEP_RECIPES["shapes-dcgan"].model_args, "width": 4,
                                  "latent_dim": 8, "embed_dim": 4})
    results = shapes_gan.run(tmp_path / "shapes", "toy-shapes")
    assert mmgen.load(tmp_path / "shapes" / "model").config.conditioning == "shapes"
    assert {"test/adherence_all5", "test_compositional/adherence_all5",
            "test/shapes_fid", "arithmetic/turned"} <= set(results)


def test_vae_recipe_at_toy_size(tmp_path):
    from mmgen.recipes import ONESTEP_RECIPES

    vae = _toy(ONESTEP_RECIPES["mnist-vae"], model="vae/conv/tiny", iwae_samples=4)
    results = vae.run(tmp_path, "toy-vae")
    for split in ("train", "test"):
        assert results[f"{split}/nll_nats"] <= results[f"{split}/negative_elbo_nats"] + 1.0
    assert mmgen.load(tmp_path / "model").config.conditioning == "none"


def test_results_script_renders_every_recorded_number():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "onestep_results.py"
    spec = importlib.util.spec_from_file_location("onestep_results", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    mnist = {"label_accuracy": 0.987, "worst_digit_accuracy": 0.95, "lenet_fid": 0.123,
             "lenet_fid_floor": 0.045, "precision": 0.81, "recall": 0.77,
             "precision_floor": 0.9, "recall_floor": 0.91,
             **{f"digit_{d}_accuracy": 0.9 + d / 100 for d in range(10)}}
    shapes_rows = {"arithmetic/samples": 41.0, "arithmetic/turned": 0.875,
                   "arithmetic/turned_and_kept_rest": 0.8}
    for split in ("test", "test_compositional"):
        shapes_rows |= {f"{split}/{k}": 0.5 for k in ("adherence_all5", "color", "shape",
                                                     "size", "position", "background")}
        shapes_rows[f"{split}/shapes_fid"] = 12.345
    vae = {f"{split}/{k}": 1.0 for split in ("train", "test") for k in (
        "nll_nats", "nll_bits_per_dim", "negative_elbo_nats", "negative_elbo_bits_per_dim")}
    vae["test/iwae_samples"] = 1000.0
    text = script.render({"mnist-dcgan": mnist, "shapes-dcgan": shapes_rows, "mnist-vae": vae})
    for expected in ("98.7%", "| 0.123 (0.045) |", "| 90.0% | 91.0% |", "99.0%", "12.35",
                     "of 41 samples", "**87.5%**", "K = 1000"):
        assert expected in text, expected


# ----------------------------------------------------------------------------- bundled


def test_bundled_generators_meet_their_targets_when_measured_again():
    """The bundled GANs re-measured (mnist-dcgan: the recipe's full measurement, 1,000
    samples; shapes-dcgan: the first 100 of its 500 captions per split) agree with the results
    their recipes recorded, and meet the targets; weights stay small."""
    from mmgen.hub import model_dir
    from mmgen.metrics.onestep import mnist_generator_results, shapes_generator_results
    from mmgen.recipes import get_recipe

    for name in ("mnist-dcgan", "shapes-dcgan", "mnist-vae"):
        size = sum(f.stat().st_size for f in model_dir(name).rglob("*.safetensors"))
        assert size < 5e6, (name, size)
    pipe = mmgen.load("mnist-dcgan")
    recorded = pipe.model.info["results"]
    again = mnist_generator_results(pipe)
    for key in ("label_accuracy", "worst_digit_accuracy", "lenet_fid", "precision", "recall"):
        assert again[key] == pytest.approx(recorded[key], abs=0.005), key
    assert get_recipe("mnist-dcgan").targets == {"label_accuracy": 0.97,
                                                 "worst_digit_accuracy": 0.90}
    assert again["label_accuracy"] >= 0.97 and again["worst_digit_accuracy"] >= 0.90

    pipe = mmgen.load("shapes-dcgan")
    recorded = pipe.model.info["results"]
    again = shapes_generator_results(pipe, n=100)
    for split in ("test", "test_compositional"):
        key = f"{split}/adherence_all5"
        assert abs(again[key] - recorded[key]) <= 0.06, (key, again[key], recorded[key])
    targets = get_recipe("shapes-dcgan").targets
    assert all(recorded[k] >= v for k, v in targets.items()), (recorded, targets)
