"""Issue #24's evaluation at small size: the perturbations do what they say, and the
measurement reads the bundled shapes-clip (all right on clean renders) the same way for
images passed as generated."""

from pathlib import Path

import pytest
import torch

import mmgen
from mmgen.data import shapes
from mmgen.metrics.clip_robustness import (
    JPEG_QUALITY,
    MAX_SHIFT,
    NOISE_SIGMA,
    PERTURBATIONS,
    clip_robustness,
    perturb,
)


@pytest.fixture(scope="module")
def renders():
    return (shapes.ShapesDataset("test", length=6, seed=1).as_tensors()["image"] + 1) / 2


def test_perturbations(renders):
    for name in PERTURBATIONS:
        out = perturb(renders, name, seed=3)
        assert out.shape == renders.shape and out.min() >= 0 and out.max() <= 1, name
        assert torch.equal(out, perturb(renders, name, seed=3)), name  # seeded
        assert not torch.equal(out, renders) or name == "shift", name
    flat = torch.full((2, 3, 64, 64), 0.5)
    noise = perturb(flat, "noise") - flat
    assert noise.std().item() == pytest.approx(NOISE_SIGMA, rel=0.05)
    jpeg = perturb(renders, "jpeg")
    assert 0 < (jpeg - renders).abs().mean() < 0.02 and JPEG_QUALITY == 70
    blur = perturb(renders, "blur")
    edges = lambda x: (x[..., 1:] - x[..., :-1]).pow(2).sum()  # noqa: E731  (gradient energy)
    assert edges(blur) < 0.8 * edges(renders)
    dot = torch.zeros(1, 3, 64, 64)
    dot[..., 32, 32] = 1.0  # one bright pixel: where does it go?
    for seed in range(10):
        y, x = divmod(int(perturb(dot, "shift", seed)[0, 0].argmax()), 64)
        assert abs(y - 32) <= MAX_SHIFT and abs(x - 32) <= MAX_SHIFT
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(renders, "rotate")


def test_clip_robustness_reads_clean_and_generated_alike():
    model = mmgen.load("shapes-clip")
    clean = {g: (shapes.ShapesDataset(s, length=12, seed=1).as_tensors()["image"] + 1) / 2
             for g, s in (("seen", "test"), ("held_out", "test_compositional"))}
    r = clip_robustness(model, model.tokenize, n=12, generated=clean)
    for group in ("seen", "held_out"):
        assert r[f"{group}/clean/retrieval"] == 1.0  # the bundled model on exact renders
        for key in ("retrieval", "zero_shot_color", "zero_shot_shape", "zero_shot_background"):
            assert r[f"{group}/generated/{key}"] == r[f"{group}/clean/{key}"], key
        for name in PERTURBATIONS:
            assert 0.0 <= r[f"{group}/{name}/retrieval"] <= 1.0


def test_search_finds_generated_images_by_their_attributes(tmp_path, monkeypatch, capsys):
    """`mmgen search` over a folder of images made by the bundled shapes-t2i (seen and
    held-out colour-shape pairs): a colour-and-shape query returns exactly its images first,
    and a full caption its own image."""
    import json

    from mmgen import cli
    from mmgen.data.shapes import ShapeAttrs

    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    pairs = [("red", "circle"), ("blue", "square"), ("yellow", "triangle"), ("green", "plus"),
             ("purple", "circle"), ("orange", "square")]  # the last two are held out
    scenes = [("large", "center", "white"), ("small", "top left", "black")]
    attrs = [ShapeAttrs(c, s, *scene) for c, s in pairs for scene in scenes]
    prompts = [shapes.caption(a) for a in attrs]
    images = mmgen.load("shapes-t2i")(prompts, seed=0, progress=False)
    folder = tmp_path / "generated"
    folder.mkdir()
    for i, image in enumerate(images):
        image.save(folder / f"{i:02d}.png")

    def search(query: str, k: int) -> list[str]:
        assert cli.main(["search", str(folder), query, "--top-k", str(k), "--json"]) == 0
        return [Path(h["file"]).name for h in json.loads(capsys.readouterr().out)]

    for p, (color, shape) in enumerate(pairs):
        assert sorted(search(f"a {color} {shape}", 2)) == [f"{2 * p:02d}.png",
                                                           f"{2 * p + 1:02d}.png"], (color, shape)
    for i, prompt in enumerate(prompts):
        assert search(prompt, 1) == [f"{i:02d}.png"], prompt
