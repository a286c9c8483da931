"""``scripts/style_results.py`` and ``benchmarks/style.py`` on tiny cases: one photo, one style,
gatys with 6 steps at 48 px (a few seconds), and the methods whose models are not installed
(a package without its bundled folder: the bundled fast and AdaIN models hidden).

What holds: the script writes finite numbers that show a transfer (the style loss went down,
the output differs from the content), a grid whose tiles sit where its docstring says (photo,
style, then the output, each 128 px with a label row), and a re-run takes every output from
the cache; a missing AdaIN model is a clear error before anything is stylized, and the
benchmark reports it as "not installed" (and times the bundled fast model, the only one left).
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script
from PIL import Image

import mmgen.hub
import mmgen.style.transfer
from mmgen.data.photos import load_photo
from mmgen.style.styles import load_style

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--methods", "gatys", "--photos", "astronaut", "--styles", "swirls", "--size", "48",
        "--steps", "6"]


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/style_results.py")


@pytest.fixture(scope="module")
def first_run(script, tmp_path_factory):
    """One run of the script: (work folder, docs folder)."""
    d = tmp_path_factory.mktemp("style_results")
    assert script.main([*ARGS, "--work", str(d / "work"), "--out", str(d / "docs")]) == 0
    return d / "work", d / "docs"


def test_numbers_are_finite_and_show_a_transfer(first_run, script):
    _, docs = first_run
    record = json.loads((docs / "style_results.json").read_text())
    entry = record["methods"]["gatys"]
    results = entry["results"]
    assert all(math.isfinite(v) for v in results.values())
    assert results["style_loss_reduction"] > 1.5  # 6 L-BFGS steps lower the Gram loss
    assert 0 < results["content_loss"] < results["content_loss_unrelated"]
    assert results["content_loss_ratio"] == pytest.approx(
        results["content_loss"] / results["content_loss_unrelated"], rel=1e-3)
    assert -1 <= results["structure_similarity"] <= 1
    assert set(entry["passed"]) >= {"style_loss_reduction", "structure_similarity",
                                    "content_loss_ratio"}
    assert entry["per_style"]["swirls"] == results  # one style: the same pairs
    assert entry["key"].endswith("-s6-relu1_1+relu2_1+relu4_2")  # its steps and content layers
    table = (docs / "style_results.md").read_text()
    assert f"| gatys | all | {results['style_loss_reduction']:.1f} " in table


def test_grid_shows_photo_style_and_output_in_that_order(first_run, script):
    work, docs = first_run
    grid = np.asarray(Image.open(docs / "images" / "style_grid.png").convert("RGB"))
    tile, pad, label = script.TILE, 2, 15  # image_grid: 2 px gaps, one 11 px label line + 4
    assert grid.shape == (pad + tile + label + pad, pad + 3 * (tile + pad), 3)
    (output_file,) = (work / "gatys").glob("*-astronaut-swirls-48.png")
    expected = [load_photo("astronaut", tile), load_style("swirls", tile),
                Image.open(output_file).convert("RGB").resize((tile, tile), Image.LANCZOS)]
    for column, picture in enumerate(expected):
        x = pad + column * (tile + pad)
        np.testing.assert_array_equal(grid[pad:pad + tile, x:x + tile], np.asarray(picture))
    assert np.abs(np.asarray(expected[2], int) - np.asarray(expected[0], int)).mean() > 5


def test_rerun_takes_outputs_from_the_cache(first_run, script, tmp_path, monkeypatch):
    work, docs = first_run

    def no_stylize(*args, **kwargs):
        raise AssertionError("stylize called although the output is cached")

    monkeypatch.setattr(mmgen.style.transfer, "stylize", no_stylize)
    assert script.main([*ARGS, "--work", str(work), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "style_results.json").read_text())
    before = json.loads((docs / "style_results.json").read_text())
    assert again["methods"] == before["methods"]


def test_missing_adain_model_is_an_error_before_any_work(script, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path / "home"))  # nothing installed
    monkeypatch.setattr(mmgen.hub, "BUNDLED_DIR", tmp_path / "bundled")  # nor bundled
    code = script.main(["--methods", "gatys", "adain", "--photos", "astronaut", "--work",
                        str(tmp_path / "work"), "--out", str(tmp_path / "docs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "style-adain is not installed" in err and "--adain-weights" in err
    assert not (tmp_path / "work").exists() and not (tmp_path / "docs").exists()


def test_benchmark_reports_models_that_are_not_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path / "home"))
    bundled = tmp_path / "bundled"  # the bundled fast model only
    bundled.mkdir()
    (bundled / "style-fast").symlink_to(mmgen.hub.BUNDLED_DIR / "style-fast")
    monkeypatch.setattr(mmgen.hub, "BUNDLED_DIR", bundled)
    bench = load_script("benchmarks/style.py")
    assert bench.main(["--methods", "fast", "adain", "--threads", "1", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "1 torch thread(s)" in out
    assert re.search(r"\| fast \| [0-9.]+ \| [0-9.]+ \| < 1.5 s \| pass \|", out)  # bundled
    assert "| adain | - | - | < 1.5 s | not installed (style-adain;" in out
