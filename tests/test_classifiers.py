"""LeNet-5, the attribute classifier, classifier training (recipes) and `mmgen classify`."""

import json

import pytest
import torch
from PIL import Image

import mmgen
from mmgen import cli
from mmgen.cnn.train import ClassificationObjective
from mmgen.data.mnist import load_mnist_arrays


def test_lenet5_matches_the_1998_layout():
    for size in (32, 28):
        model = mmgen.create_model("cnn/lenet5", input_size=size)
        assert sum(p.numel() for p in model.parameters()) == 61_706
        assert model(torch.randn(2, 1, size, size)).shape == (2, 10)
        maps = model.feature_maps(torch.randn(2, 1, size, size), ["features.0", "features.3"])
        assert maps["features.0"].shape == (2, 6, 28, 28)  # C1
        assert maps["features.3"].shape == (2, 16, 10, 10)  # C3
        assert model.forward_features(torch.randn(2, 1, size, size)).shape == (2, 84)
    classic = mmgen.create_model("cnn/lenet5", classic=True)
    assert isinstance(classic.features[1], torch.nn.Tanh)


def test_classifier_input_errors():
    model = mmgen.create_model("cnn/lenet5")
    with pytest.raises(ValueError, match="expects 1-channel images, got 3"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="at least 28x28"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.randn(1, 32, 32))
    with pytest.raises(KeyError, match="unknown layer"):
        model.feature_maps(torch.randn(1, 1, 32, 32), ["nope"])


def test_attribute_net_heads_and_objective():
    heads = {"color": 6, "shape": 4}
    model = mmgen.create_model("cnn/attribute_net", heads=heads, input_size=32)
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert {k: v.shape for k, v in out.items()} == {"color": (3, 6), "shape": (3, 4)}
    labels = {"color": torch.tensor([0, 1, 2]), "shape": torch.tensor([3, 2, 1])}
    logs = ClassificationObjective()(model, (x, labels))
    expected = sum(torch.nn.functional.cross_entropy(out[k], labels[k]) for k in heads)
    model.eval()
    assert set(logs) == {"loss", "acc_color", "acc_shape"}
    assert torch.isfinite(logs["loss"]) and logs["loss"] > 0
    assert expected > 0


def _digit_png(path, index=0, invert=False):
    images, labels = load_mnist_arrays("test")
    array = 255 - images[index] if invert else images[index]
    Image.fromarray(array).resize((56, 56)).save(path)
    return int(labels[index])


def test_train_classifier_then_classify(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "classifier", "--model", "lenet5", "--steps", "30",
                     "--batch-size", "64", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert 0.0 <= results["test/accuracy"] <= 1.0
    model = mmgen.load(out / "model")
    assert model.info["labels"][3] == "3" and model.info["preprocess"]["size"] == 28
    stored = (out / "model" / "model.safetensors")
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(str(stored)).values())

    png = tmp_path / "digit.png"
    _digit_png(png, invert=True)  # dark digit on a light background: auto-inverted
    capsys.readouterr()
    assert cli.main(["classify", str(png), "--model", str(out / "model"), "--top-k", "3",
                     "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows[0]["top"]) == 3
    probs = [p["prob"] for p in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert len({p["label"] for p in rows[0]["top"]}) == 3


@pytest.mark.parametrize("content, message", [
    (b"not an image at all", "not a readable image"),
    (None, "needs at least 28x28"),
])
def test_classify_bad_input_is_one_line_exit_2(tmp_path, capsys, content, message):
    model_dir = tmp_path / "m"
    net = mmgen.create_model("cnn/lenet5", input_size=28)
    net.info = {"labels": [str(i) for i in range(10)],
                "preprocess": {"size": 28, "channels": 1, "mean": [0.5], "std": [0.5]}}
    net.save_pretrained(model_dir)
    bad = tmp_path / "bad.png"
    if content is None:
        Image.new("L", (10, 10)).save(bad)
    else:
        bad.write_bytes(content)
    assert cli.main(["classify", str(bad), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(bad) in err


def test_unknown_recipe_and_model_errors(capsys):
    assert cli.main(["train", "--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert cli.main(["classify", "x.png", "--model", "no-such-model"]) == 2
    assert "neither a model folder nor an installed or bundled model" in capsys.readouterr().err


@pytest.mark.parametrize("name, goal", [("mnist-lenet5", 0.98), ("mnist-resnet18", 0.985)])
def test_bundled_mnist_classifiers_reach_their_targets(name, goal):
    """Re-measure the bundled fp16 weights on the 1,000 held-out MNIST digits."""
    from mmgen.cnn.train import accuracy
    from mmgen.recipes import get_recipe
    from mmgen.recipes.classifiers import build_data

    model = mmgen.load(name)
    _, evals, _ = build_data(get_recipe(name))
    measured = accuracy(model, evals["test"])["accuracy"]
    assert measured >= goal
    assert measured == pytest.approx(model.info["results"]["test/accuracy"], abs=1e-4)


def test_classify_cli_reads_real_digits_with_the_bundled_lenet(tmp_path, capsys):
    files, truth = [], []
    for i in range(0, 1000, 100):  # one digit of each class
        files.append(str(tmp_path / f"{i}.png"))
        truth.append(_digit_png(files[-1], index=i, invert=i % 200 == 0))
    assert cli.main(["classify", *files, "--json"]) == 0
    predicted = [int(row["top"][0]["label"]) for row in json.loads(capsys.readouterr().out)]
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= 9


def test_train_cli_sets_the_training_fast_path(tmp_path, capsys):
    """--mixed-precision / --channels-last override the recipe's TrainConfig (recorded in
    results.json); a value TrainConfig refuses is a one-line error, exit 2, nothing written."""
    out = tmp_path / "run"
    assert cli.main(["train", "classifier", "--steps", "2", "--batch-size", "8",
                     "--mixed-precision", "bf16", "--channels-last", "--out", str(out)]) == 0
    train = json.loads((out / "results.json").read_text())["recipe_config"]["train"]
    assert train["mixed_precision"] == "bf16" and train["channels_last"] is True
    assert train["compile"] is False  # not given: the recipe's
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert cli.main(["train", "classifier", "--steps", "2", "--mixed-precision", "fp8",
                     "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "mixed_precision='fp8'" in err and "Traceback" not in err and not bad.exists()
