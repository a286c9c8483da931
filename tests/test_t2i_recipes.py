"""The shapes-vae / shapes-t2i recipes end to end at toy size, and their pieces."""

import json
from dataclasses import replace

import pytest
import torch

import mmgen
from mmgen.data import shapes
from mmgen.data.shapes_text import shapes_vocabulary
from mmgen.data.shapes_training import LatentPairs, latent_table
from mmgen.device import batched
from mmgen.diffusion import DiffusionObjective, NoiseSchedule
from mmgen.diffusion.objective import TextConditionedObjective
from mmgen.diffusion.pipeline import PipelineConfig, TextToImagePipeline
from mmgen.recipes import get_recipe
from mmgen.vae.objective import VAEObjective


def test_vae_objective_terms():
    torch.manual_seed(0)
    vae = mmgen.create_model("vae/tiny")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.manual_seed(1)
    out = VAEObjective(kl_weight=0.5)(vae, x)
    torch.manual_seed(1)
    post = vae.encode(x)
    recon = vae.decode(post.sample())
    l1, mse = (recon - x).abs().mean(), (recon - x).pow(2).mean()
    kl = post.kl().mean() / x[0].numel()
    torch.testing.assert_close(out["loss"], l1 + mse + 0.5 * kl)


def test_text_conditioned_objective_drops_captions():
    torch.manual_seed(0)
    clip = mmgen.create_model("clip/tiny", text={"layers": 1}, vision={"layers": 1})
    text = clip.text_model()
    seen = {}

    def unet(x, t, context):
        seen["context"] = context
        return torch.zeros_like(x)

    batch = {"latent": torch.randn(3, 4, 4, 4), "caption": ["a red circle"] * 3}
    TextConditionedObjective(DiffusionObjective(NoiseSchedule()), text, clip.tokenize,
                             dropout=1.0)(unet, batch)
    empty = text.encode_text_states(clip.tokenize([""])).last_hidden_state
    torch.testing.assert_close(seen["context"], empty.expand(3, -1, -1))
    TextConditionedObjective(DiffusionObjective(NoiseSchedule()), text, clip.tokenize,
                             dropout=0.0)(unet, batch)
    full = text.encode_text_states(clip.tokenize(["a red circle"])).last_hidden_state
    torch.testing.assert_close(seen["context"], full.expand(3, -1, -1))


def test_pipeline_refuses_a_context_the_unet_was_not_built_for():
    clip = mmgen.create_model("clip/shapes-tiny", text={"layers": 1}, vision={"layers": 1})
    text = clip.text_model(context="last+input")  # 2 x 128 channels
    unet = mmgen.create_model("unet/tiny", cross_attention_dim=128)
    vae = mmgen.create_model("vae/tiny")
    with pytest.raises(ValueError, match="takes text states of 128 channels but the text "
                                         "encoder's context has 256"):
        TextToImagePipeline(unet, vae, text, PipelineConfig())


def test_mixed_captions_are_half_factored_and_always_true():
    table = {a.labels: torch.zeros(1) for a in shapes.all_combinations("train")}
    data = LatentPairs("train", 400, "mixed", table)
    captions = [data[i]["caption"] for i in range(400)]
    assert captions == [data[i]["caption"] for i in range(400)]  # a pure function of i
    without_color = [c for c in captions if not any(f" {k} " in f" {c} " for k in shapes.COLORS)]
    assert 0.05 < len(without_color) / 400 < 0.3  # colour left out by some factored captions
    for i, c in enumerate(captions):  # every caption is true of its image
        attrs = data.data.attrs(i)
        assert (attrs.color in c.split() or c in without_color) and (
            attrs.shape in c.split() or " shape" in c)
    with pytest.raises(ValueError, match="unknown caption mode"):
        LatentPairs("train", 4, "poetic", table)


def test_vocabulary_covers_every_caption_word():
    tokenize = mmgen.create_model("clip/tiny").tokenize
    vocab = set(shapes_vocabulary(tokenize))
    texts = [shapes.caption(a) for a in shapes.all_combinations()]
    texts += [shapes.sample_caption("test_compositional", 1, i, "varied") for i in range(500)]
    assert set(tokenize(texts).flatten().tolist()) <= vocab
    assert len(vocab) < 100


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i")
    vae_recipe = get_recipe("shapes-vae")
    vae_recipe = replace(vae_recipe, train=replace(vae_recipe.train, steps=2, ckpt_every=0,
                                                   log_every=1, warmup_steps=0),
                         eval_items=8)
    vae_results = vae_recipe.run(root / "vae", "shapes-vae")
    torch.manual_seed(0)
    clip = mmgen.create_model("clip/shapes-tiny", text={"layers": 1}, vision={"layers": 1})
    clip.save_pretrained(root / "clip")
    t2i = get_recipe("shapes-t2i")
    t2i = replace(t2i, vae=str(root / "vae" / "model"), clip=str(root / "clip"),
                  network={**t2i.network, "block_out_channels": (32, 32, 32), "heads": (1, 1, 1),
                        "norm_num_groups": 8},
                  train=replace(t2i.train, steps=2, ckpt_every=0, log_every=1,
                                warmup_steps=0), eval_prompts=4)
    t2i_results = t2i.run(root / "t2i", "shapes-t2i")
    return root, vae_results, t2i_results


def test_vae_recipe_measures_its_latent_scale(toy_runs):
    root, results, _ = toy_runs
    vae = mmgen.load(root / "vae" / "model")
    assert vae.latent_factor == 4 and vae.config.scaling_factor > 0
    assert {"test/psnr", "test/adherence_all5", "test_compositional/adherence_all5"} <= set(
        results)
    table = latent_table(lambda x: batched(lambda b: vae.encode(b).mean, x))
    assert len(table) == len(shapes.all_combinations("train"))  # held-out pairs never encoded
    z = torch.stack(list(table.values()))
    assert z.shape[1:] == (4, 16, 16)


def test_t2i_recipe_exports_a_small_loadable_pipeline(toy_runs):
    root, _, results = toy_runs
    folder = root / "t2i" / "model"
    pipe = mmgen.load(folder)
    assert isinstance(pipe, TextToImagePipeline)
    assert pipe.text_encoder.config.kept_tokens < 100  # restricted vocabulary
    assert pipe.config.height == 64 and pipe.config.pad_token_id == 0
    weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    assert weights < 5e6
    (image,) = pipe("a small red circle in the center on a black background", steps=2,
                    seed=0, progress=False)
    assert image.size == (64, 64)
    assert {"test/adherence_all5", "test_compositional/adherence_all5",
            "test/seconds_per_image"} <= set(results)
    # the default guidance is the best of the recipe's candidates on the selection prompts
    candidates = get_recipe("shapes-t2i").guidance_candidates
    rates = {g: results[f"selection/guidance_{g}/adherence_all5"] for g in candidates}
    assert pipe.config.guidance == results["guidance"] == max(candidates, key=rates.get)
    assert (root / "t2i" / "results.json").is_file()


def test_bundled_shapes_vae_reconstructs_shapes():
    """Re-measure the bundled autoencoder (its recipe's targets: all five attributes of the
    reconstruction right for >= 99 %, PSNR >= 30 dB; measured on 1,000 images per split)."""
    from mmgen.metrics.shapes_benchmark import evaluate_vae

    vae = mmgen.load("shapes-vae")
    assert vae.latent_factor == 4 and vae.config.latent_channels == 4
    results = evaluate_vae(vae, n=200)
    for split in ("test", "test_compositional"):
        assert results[f"{split}/adherence_all5"] >= 0.99
        assert results[f"{split}/psnr"] >= 30.0
    recorded = vae.info["results"]
    assert recorded["test/adherence_all5"] >= 0.99 and recorded["test/psnr"] >= 30.0


@pytest.mark.parametrize("name", ["shapes-t2i", "shapes-dit"])
def test_bundled_pipeline_matches_its_recorded_adherence(name):
    """Re-measure a bundled pipeline on the first 50 of the 500 prompts per split its recipe
    measured (DDIM 25 at the default guidance; ~1 min on one thread): within 12 points of
    the recorded rates (a 50-prompt subset), and the in-distribution rate stays within 5
    points of its recipe's target (set on all 500)."""
    from mmgen.hub import model_dir
    from mmgen.metrics.shapes_benchmark import evaluate_t2i

    pipe = mmgen.load(name)
    weights = sum(f.stat().st_size for f in model_dir(name).rglob("*.safetensors"))
    assert weights < 20e6
    assert pipe.config.sampler == "ddim" and pipe.config.steps == 25
    recorded = pipe.unet.info["results"]
    assert recorded["guidance"] == pipe.config.guidance
    results = evaluate_t2i(pipe, n=50, batch_size=50)
    for split in ("test", "test_compositional"):
        key = f"{split}/adherence_all5"
        assert abs(results[key] - recorded[key]) <= 0.12, (key, results[key], recorded[key])
    target = get_recipe(name).targets["test/adherence_all5"]
    assert results["test/adherence_all5"] >= target - 0.05


def _results_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "t2i_results.py"
    spec = importlib.util.spec_from_file_location("t2i_results", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_results_script_writes_tables_and_resumes_from_its_cache(toy_runs, tmp_path,
                                                                  monkeypatch):
    script = _results_script()
    root = toy_runs[0]
    args = ["--model", str(root / "t2i" / "model"), "--n", "2", "--quick", "--batch-size", "4",
            "--out", str(tmp_path / "docs"), "--cache", str(tmp_path / "cache.jsonl"),
            "--work", str(tmp_path / "work")]
    monkeypatch.setattr(script, "SETTINGS", [("ddim", 2), ("euler", 2)])
    monkeypatch.setattr(script, "GUIDANCE_SWEEP", [1.0, 3.0])
    owned = "<!-- begin dit-study -->\n## Another script's section\n<!-- end dit-study -->\n"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("# old tables\n\n" + owned)
    assert script.main(args) == 0
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| ddim 2 | test_compositional |" in text and "## Guidance sweep" in text
    assert "# old tables" not in text and text.endswith(owned)  # the section is kept
    assert "not measured (no DDPM row)" in text  # --quick
    record = json.loads((tmp_path / "docs" / "results.json").read_text())
    assert len(record["samplers"]) == 4 and len(record["guidance_sweep"]) == 4
    rows = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    keys = {(r["sampler"], r["steps"], r["guidance"], r["split"]) for r in rows}
    assert len(keys) == len(rows)  # each setting measured once, shared rows too
    # the sweep and the grid run DDIM 25; none of the sampler settings here does
    assert {("ddim", 25, record["default_guidance"], s) for s in script.SPLITS} <= keys
    assert all(r["n"] == 2 and r["threads"] >= 1 and r["seconds_per_image"] > 0 for r in rows)

    def fail(*a, **k):
        raise AssertionError("a cached row was measured again")

    monkeypatch.setattr(script, "measure", fail)
    assert script.main(args) == 0  # everything comes from the cache
    assert json.loads((tmp_path / "docs" / "results.json").read_text()) == record


def test_results_script_shards_make_the_same_images_and_claim_is_checked(toy_runs, tmp_path,
                                                                        monkeypatch):
    import numpy as np

    script = _results_script()
    monkeypatch.setattr(script, "SETTINGS", [("ddim", 25), ("ddpm", 3)])
    monkeypatch.setattr(script, "GUIDANCE_SWEEP", [1.0])
    model = str(toy_runs[0] / "t2i" / "model")
    base = ["--model", model, "--n", "4", "--claim-n", "6", "--out", str(tmp_path / "docs"),
            "--ddpm-splits", "test,test_compositional"]
    whole = base + ["--batch-size", "2", "--cache", str(tmp_path / "a.jsonl"),
                    "--work", str(tmp_path / "a")]
    split = base + ["--batch-size", "1", "--cache", str(tmp_path / "b.jsonl"),
                    "--work", str(tmp_path / "b")]
    threads = torch.get_num_threads()
    try:  # two "workers" in turn, each generating every other batch
        assert script.main(split + ["--shard", "0/2"]) == 0
        assert script.main(split + ["--shard", "1/2"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert not (tmp_path / "b.jsonl").exists()  # workers only generate

    generate = script.Batches.generate

    def no_new_images(self, *a, **k):
        assert not self.missing(), "the shards left a batch out"
        return generate(self, *a, **k)

    assert script.main(whole) == 0
    monkeypatch.setattr(script.Batches, "generate", no_new_images)
    assert script.main(split) == 0
    hash_dir = next((tmp_path / "b").iterdir()).name
    record = json.loads((tmp_path / "docs" / "results.json").read_text())
    ddim25 = f"ddim-25-g{record['default_guidance']:g}-"
    for row in (tmp_path / "a").joinpath(hash_dir).iterdir():
        a = np.concatenate([np.load(f)["images"] for f in sorted(row.iterdir())])
        b = np.concatenate([np.load(f)["images"] for f in
                            sorted((tmp_path / "b" / hash_dir / row.name).iterdir())])
        claimed = row.name.startswith((ddim25, "ddpm-"))  # also on --claim-n prompts
        assert a.shape == (6 if claimed else 4, 64, 64, 3), row.name
        assert np.abs(a.astype(int) - b).max() <= 1, row.name
    # the claim's 6-prompt rows added one batch to the 4-prompt rows' two, and made no other
    assert len(list((tmp_path / "a" / hash_dir / f"{ddim25}test").iterdir())) == 3
    claims = record["fid_claim"]
    assert [c["split"] for c in claims] == list(script.SPLITS)
    for c in claims:
        assert c["n"] == 6 and c["ddpm_steps"] == 3
        assert c["ratio"] == round(c["ddim_fid"] / c["ddpm_fid"], 3)
        assert c["holds"] == (c["ratio"] <= 1.10)
        low, high = c["interval"]  # the batches are at hand: a bootstrap interval
        assert 0 < low <= high
        assert set(c["prefix_ratios"]) <= {"3", "4"}  # first 6 // 4 * q prompts (JSON keys)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert {r["n"] for r in rows if r["sampler"] == "ddpm"} == {4, 6}
    assert "DDIM 25 steps against DDPM 1000 steps" in (tmp_path / "docs" / "results.md").read_text()


def test_t2i_demo_writes_a_labelled_grid_and_reports_adherence(toy_runs, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "examples" / "t2i_demo.py"
    spec = importlib.util.spec_from_file_location("t2i_demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    model = toy_runs[0] / "t2i" / "model"
    assert demo.main(["--model", str(model), "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert len(list((tmp_path / "demo").glob("[0-9][0-9].png"))) == len(demo.PROMPTS)
    assert Image.open(tmp_path / "demo" / "grid.png").width > 5 * 64
    assert out.count("[held out]") == len(demo.PROMPTS) - demo.HELD_OUT_FROM
    assert "Shapes adherence (all five attributes right)" in out
