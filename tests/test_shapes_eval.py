"""The bundled Shapes attribute classifier and the Shapes evaluation built on it."""

import torch

import mmgen
from mmgen.data.shapes import ShapesDataset
from mmgen.metrics import shapes_adherence, shapes_fid


def _batch(split, n, seed=1):
    data = ShapesDataset(split, length=n, seed=seed).as_tensors()
    return (data["image"] + 1) / 2, data["caption"]  # images in [0, 1]


def test_bundled_classifier_loads_offline_with_its_labels():
    model = mmgen.load("shapes-classifier")
    assert model.info["labels"]["color"][0] == "red"
    results = model.info["results"]
    assert all(results[f"test_compositional/{a}"] >= 0.995
               for a in ("color", "shape", "size", "position", "background"))


def test_adherence_is_perfect_on_renders_and_low_on_wrong_prompts():
    images, prompts = _batch("test_compositional", 120)
    ok = shapes_adherence(images, prompts, progress=False)
    assert ok.all.n == 120 and ok.all.value == 1.0
    assert set(ok.per_attribute) == {"color", "shape", "size", "position", "background"}
    shuffled = prompts[1:] + prompts[:1]  # every image judged against another image's prompt
    bad = shapes_adherence(images, shuffled, progress=False)
    assert bad.all.value < 0.2
    assert "adherence@120" in str(ok)


def test_shapes_fid_orders_sets_by_similarity():
    a, _ = _batch("test", 300, seed=1)
    b, _ = _batch("test", 300, seed=2)
    blurred = torch.nn.functional.avg_pool2d(b, 5, stride=1, padding=2)
    same = shapes_fid(a, b, progress=False)
    worse = shapes_fid(a, blurred, progress=False)
    assert same.name == "ShapesFID" and same.n == 300
    assert 0 <= same.value < worse.value
