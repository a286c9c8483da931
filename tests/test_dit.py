"""DiT against diffusers (random weights, fp32): the diffusers -> official key map, the
official checkpoint format, the class-conditional pipeline against diffusers' DiTPipeline, its
save/load round trip and ``mmgen generate --class``.

diffusers' DiT computes two things differently from the official model (whose numerics
mmgen's DiT has, bit for bit): its timestep frequencies are exp(-ln(1e4) i / 127) where the
official code divides by 128 (``downscale_freq_shift=1`` in ``CombinedTimestepLabelEmbeddings``),
and its MLP LayerNorm takes ``norm_eps`` (default 1e-5) where the official one has 1e-6. The
references below are diffusers models with exactly those two settings set to the official
values (:func:`official_numerics`); everything else is diffusers' own code.
"""

import argparse
import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL as RefVAE
from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel
from faults import evil_pickle
from PIL import Image
from safetensors.torch import save_file

import mmgen
from mmgen.checkpoint import UnsafeCheckpointError
from mmgen.cli import main
from mmgen.dit import DiT, DiTConfig
from mmgen.dit.model import PRESETS
from mmgen.dit.pipeline import (
    DIT_SCHEDULE,
    ClassConditionalConfig,
    ClassConditionalPipeline,
    default_config,
)
from mmgen.interop import KeyMapError, from_diffusers
from mmgen.interop.diffusers_schedulers import schedule_from_diffusers
from mmgen.interop.dit import (
    dit_from_diffusers,
    dit_from_diffusers_state_dict,
    load_dit_checkpoint,
)

# A tiny DiT in diffusers' terms: 2 heads of 16 channels, 2 blocks, 8x8 latents, learned sigma.
# 1000 classes: DiTPipeline hard-codes the "no class" label 1000.
TINY = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8,
            num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000)
TINY_VAE = dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8)


def _close(got, ref, rel=1e-4):
    """Equal within rel of the reference's largest magnitude; returns the max error."""
    torch.testing.assert_close(got, ref, rtol=rel, atol=rel * ref.abs().max().item())
    return (got - ref).abs().max().item()


def official_numerics(ref: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """``ref`` computing as the official DiT: timestep frequencies exp(-ln(1e4) i / 128) and
    MLP LayerNorm eps 1e-6 (see the module docstring)."""
    for block in ref.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
        block.norm3.eps = 1e-6
    return ref


def ref_dit(seed=0, **kw) -> DiTTransformer2DModel:
    """A random diffusers DiT whose blocks share one embedder (as every release's do), with
    every parameter perturbed, computing with the official numerics."""
    torch.manual_seed(seed)
    ref = DiTTransformer2DModel(**{**TINY, **kw}).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    shared = ref.transformer_blocks[0].norm1.emb.state_dict()
    for block in ref.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(shared)
    return official_numerics(ref)


def tiny_dit(seed=0, **overrides) -> DiT:
    """mmgen's tiny DiT with every parameter perturbed (adaLN-Zero starts at zero)."""
    torch.manual_seed(seed)
    model = mmgen.create_model("dit/tiny", **overrides).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def inputs(cfg, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g)
    t = torch.tensor([0, 500, 999, 250][:batch])
    y = torch.tensor([0, 7, cfg.num_classes, 3][:batch])  # the "no class" label included
    return x, t, y


# ----------------------------------------------------------------------------- diffusers


@torch.no_grad()
def test_diffusers_dit_converts_and_its_state_dict_loads_strictly(tmp_path):
    ref = ref_dit()
    model = dit_from_diffusers(ref)
    assert model.config == DiTConfig(input_size=8, patch_size=2, hidden_size=32, depth=2,
                                     num_heads=2, num_classes=1000)
    x, t, y = inputs(model.config)
    expected = ref(x, timestep=t, class_labels=y).sample
    assert _close(model(x, t, y), expected) == 0.0  # the same operations: bit for bit
    # The result has the official names: a fresh DiT takes them strictly.
    fresh = DiT(model.config).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh(x, t, y), expected)
    # The diffusers dispatch and a diffusers folder give the same model.
    ref.save_pretrained(tmp_path / "transformer")
    for other in (from_diffusers(ref), dit_from_diffusers(tmp_path / "transformer"),
                  from_diffusers(tmp_path / "transformer"), mmgen.load(tmp_path / "transformer")):
        assert isinstance(other, DiT) and other.config == model.config
        assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(),
                                                     model.state_dict().values(), strict=True))
    assert ref.transformer_blocks[0].attn1.to_q.weight.data_ptr() != \
        model.blocks[0].attn.qkv.weight.data_ptr()  # copied, not shared


@torch.no_grad()
def test_dit_xl_2_256_matches_diffusers():
    """The released DiT-XL/2-256 architecture (675 M parameters) at random weights."""
    torch.manual_seed(0)
    ref = DiTTransformer2DModel(out_channels=8).eval()  # diffusers' defaults are XL/2-256
    shared = ref.transformer_blocks[0].norm1.emb.state_dict()
    for block in ref.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(shared)
    official_numerics(ref)
    model = dit_from_diffusers_state_dict(ref.state_dict(), dict(ref.config))  # no copy
    assert model.config == PRESETS["xl-2"] and model.model_name == "dit/xl-2"
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(1, 4, 32, 32, generator=g), torch.tensor([500]), torch.tensor([207])
    assert _close(model(x, t, y), ref(x, timestep=t, class_labels=y).sample) == 0.0


def test_blocks_with_different_embedders_are_refused():
    ref = ref_dit(num_layers=4)
    with torch.no_grad():
        ref.transformer_blocks[3].norm1.emb.timestep_embedder.linear_2.bias.add_(1e-3)
    with pytest.raises(ValueError, match="block 3's timestep embedder differs from block 0's: "
                                         "this DiT cannot be expressed with the official shared"):
        dit_from_diffusers(ref)
    ref = ref_dit()
    with torch.no_grad():
        ref.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight[5, 0] += 1
    with pytest.raises(ValueError, match="block 1's class embedder differs"):
        dit_from_diffusers(ref)


@pytest.mark.parametrize("option, match", [
    ({"norm_type": "ada_norm_single"}, "norm_type='ada_norm_single' is not supported"),
    ({"activation_fn": "geglu"}, "activation_fn='geglu' is not supported"),
    ({"out_channels": 5}, "out_channels=5 must be in_channels"),
    ({"brand_new_option": 3}, "refuses to guess"),
    ({"_class_name": "UNet2DConditionModel"}, "expected a diffusers DiTTransformer2DModel"),
])
def test_diffusers_configs_mmgen_cannot_express_are_refused(option, match):
    ref = ref_dit()
    with pytest.raises(ValueError, match=match):
        dit_from_diffusers_state_dict(ref.state_dict(), {**ref.config, **option})


def test_diffusers_weights_that_do_not_fit_are_refused():
    ref = ref_dit()
    state = ref.state_dict()
    state["proj_out_2.weight"] = state["proj_out_2.weight"][:-1]
    with pytest.raises(KeyMapError, match="final_layer.linear.weight: got"):
        dit_from_diffusers_state_dict(state, dict(ref.config))


# ----------------------------------------------------------------------------- official files


@torch.no_grad()
def test_official_checkpoint_formats(tmp_path):
    model = tiny_dit()
    x, t, y = inputs(model.config)
    expected = model(x, t, y)
    other = tiny_dit(seed=1).state_dict()
    files = {"raw.pt": model.state_dict(),  # DiT-XL-2-256x256.pt: the state dict itself
             # train.py's checkpoints: the EMA weights are the ones to sample with
             "train.pt": {"model": other, "ema": model.state_dict(), "args":
                          argparse.Namespace(model="DiT-XL/2", image_size=256), "opt": {}},
             "model-only.pt": {"model": model.state_dict()}}
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
    save_file(model.state_dict(), tmp_path / "weights.safetensors")
    for name in (*files, "weights.safetensors"):
        loaded = load_dit_checkpoint(tmp_path / name, num_heads=2)
        assert loaded.config == model.config, name
        assert torch.equal(loaded(x, t, y), expected), name
    # The paper's widths need no num_heads; mmgen.load reads the file as a DiT.
    small = DiT(DiTConfig(input_size=8, hidden_size=384, depth=1, num_heads=6, num_classes=10))
    torch.save(small.state_dict(), tmp_path / "s.pt")
    assert mmgen.load(tmp_path / "s.pt").config == small.config


def test_official_checkpoint_errors(tmp_path):
    torch.save(tiny_dit().state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="hidden size 32 is not one of the paper's.*pass "
                                         "num_heads"):
        load_dit_checkpoint(tmp_path / "tiny.pt")
    torch.save(mmgen.create_model("cnn/lenet5").state_dict(), tmp_path / "lenet.pt")
    with pytest.raises(ValueError, match="not a class-conditional DiT checkpoint: no "
                                         "x_embedder.proj.weight"):
        load_dit_checkpoint(tmp_path / "lenet.pt")
    torch.save(ref_dit().state_dict(), tmp_path / "diffusers.pt")
    with pytest.raises(ValueError, match="looks like a diffusers DiTTransformer2DModel"):
        load_dit_checkpoint(tmp_path / "diffusers.pt")
    torch.save({"step": 3}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="is not a DiT checkpoint: expected a state dict"):
        load_dit_checkpoint(tmp_path / "junk.pt")
    state = tiny_dit().state_dict()
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"][:-3]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(KeyMapError, match="blocks.0.attn.qkv.weight: got"):
        load_dit_checkpoint(tmp_path / "cut.pt", num_heads=2)


def test_malicious_pickle_is_refused(tmp_path):
    evil = evil_pickle(tmp_path / "DiT-XL-2-256x256.pt", tmp_path / "pwned.txt")
    with pytest.raises(UnsafeCheckpointError, match="refuses"):
        load_dit_checkpoint(evil)
    with pytest.raises(UnsafeCheckpointError, match="refuses"):
        mmgen.load(evil)
    assert not (tmp_path / "pwned.txt").exists()


# ----------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("guidance", [4.0, 1.0])
@torch.no_grad()
def test_pipeline_matches_diffusers_dit_pipeline(guidance):
    """ClassConditionalPipeline == DiTPipeline with the same weights, DDIM, seeds (one CPU
    generator per image, so the same initial latents) and guidance: decoded float pixels."""
    ref, vae = ref_dit(), RefVAE(**TINY_VAE).eval()
    scheduler = DDIMScheduler(beta_schedule="linear", clip_sample=False)  # DiT's schedule
    ref_pipe = DiTPipeline(ref, vae, scheduler)
    ref_pipe.set_progress_bar_config(disable=True)
    classes, seed, steps = [3, 999], 5, 8
    expected = ref_pipe(classes, guidance_scale=guidance, num_inference_steps=steps,
                        output_type="pt", generator=[torch.Generator().manual_seed(seed + i)
                                                     for i in range(2)]).images  # (2, 3, H, W)
    dit, decoder = dit_from_diffusers(ref), from_diffusers(vae)
    assert schedule_from_diffusers(scheduler) == DIT_SCHEDULE
    pipe = ClassConditionalPipeline(dit, decoder, default_config(dit, decoder))
    final = {}
    images = pipe(classes, seed=seed, steps=steps, guidance=guidance, progress=False,
                  callback=lambda i, t, x: final.update(latents=x))
    pixels = decoder.decode(final["latents"] / decoder.config.scaling_factor)
    got = (pixels / 2 + 0.5).clamp(0, 1)  # DiTPipeline's conversion
    assert ((expected > 0) & (expected < 1)).float().mean() > 0.5  # not saturated
    assert _close(got, expected) < 1e-5
    as_uint8 = (expected.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    assert np.abs(np.stack([np.asarray(im) for im in images]).astype(int) - as_uint8).max() <= 1
    assert images[1].info["parameters"].startswith("class 999\n")


def tiny_pipeline(labels=()) -> ClassConditionalPipeline:
    dit, vae = tiny_dit(), mmgen.create_model("vae/tiny")
    return ClassConditionalPipeline(dit, vae, default_config(dit, vae, name="tiny-dit",
                                                             steps=3, labels=labels))


def test_save_load_round_trip_and_class_names(tmp_path):
    labels = tuple(f"thing {i}" for i in range(8)) + ("dog, puppy", "cat")
    pipe = tiny_pipeline(labels)
    assert (pipe.config.height, pipe.config.width) == (16, 16)  # 8 latents x VAE factor 2
    images = pipe(["puppy", 9, "class 2"], seed=4, progress=False)
    assert [json.loads(im.info["mmgen"])["prompt"] for im in images] == \
        ["class 8 (dog, puppy)", "class 9 (cat)", "class 2 (thing 2)"]
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = mmgen.load(tmp_path / "pipe")
    assert isinstance(loaded, ClassConditionalPipeline) and loaded.config == pipe.config
    again = loaded([8, "CAT", "thing 2"], seed=4, progress=False)
    for a, b in zip(images, again, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)) and a.info == b.info
    with pytest.raises(ValueError, match="class 'bird' is not a class number or a single"):
        pipe("bird", progress=False)
    with pytest.raises(ValueError, match="class 10 is out of range: this model has classes 0 to 9"):
        pipe(10, progress=False)
    with pytest.raises(ValueError, match="takes no negative prompt"):
        pipe(1, negative_prompt="blurry", progress=False)
    with pytest.raises(ValueError, match="text-conditioned"):
        ClassConditionalPipeline(mmgen.create_model("dit/tiny-text"), pipe.vae,
                                 ClassConditionalConfig())


# ----------------------------------------------------------------------------- CLI


def _generate(capsys, *argv):
    code = main(["generate", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


def test_cli_generates_from_an_official_checkpoint_and_a_vae_folder(tmp_path, capsys):
    small = tiny_dit(hidden_size=384, num_heads=6, depth=1)  # a paper width: heads known
    torch.save(small.state_dict(), tmp_path / "DiT-S.pt")
    vae = mmgen.create_model("vae/tiny")
    vae.save_pretrained(tmp_path / "vae")
    code, report = _generate(capsys, "--model", tmp_path / "DiT-S.pt", "--vae", tmp_path / "vae",
                             "--class", 1, "--seed", 3, "--steps", 2, "--out", tmp_path / "a.png")
    assert code == 0, report
    (record,) = report["images"]
    assert (record["prompt"], record["model"], record["width"]) == ("class 1", "DiT-S", 16)
    assert (record["sampler"], record["guidance"]) == ("ddim", 4.0)
    pipe = ClassConditionalPipeline(small, vae, default_config(small, vae, name="DiT-S"))
    (expected,) = pipe(1, seed=3, steps=2, progress=False)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(expected))
    # The PNG's parameters re-create it.
    code, report = _generate(capsys, "--model", tmp_path / "DiT-S.pt", "--vae", tmp_path / "vae",
                             "--from-image", tmp_path / "a.png", "--out", tmp_path / "b.png")
    assert code == 0, report
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), np.asarray(expected))


def test_cli_generates_from_diffusers_folders(tmp_path, capsys):
    ref_dit().save_pretrained(tmp_path / "transformer")
    RefVAE(**TINY_VAE).save_pretrained(tmp_path / "vae")
    code, report = _generate(capsys, "--model", tmp_path / "transformer", "--vae",
                             tmp_path / "vae", "--class", 999, "--class", 0, "--steps", 2,
                             "--out", tmp_path / "out")
    assert code == 0, report
    assert [r["prompt"] for r in report["images"]] == ["class 999", "class 0"]


def test_cli_class_errors(tmp_path, capsys):
    torch.save(tiny_dit(hidden_size=384, num_heads=6, depth=1).state_dict(), tmp_path / "d.pt")
    mmgen.create_model("vae/tiny").save_pretrained(tmp_path / "vae")
    tiny_pipeline().save_pretrained(tmp_path / "pipe")
    dit, vae = ["--model", tmp_path / "d.pt"], ["--vae", tmp_path / "vae"]
    cases = [
        (["--class", 1], "go with a class-conditional DiT; shapes-t2i is a text-to-image"),
        (["a prompt", *dit, *vae], "is class-conditional: give --class N"),
        ([*dit, *vae], "say which class with --class N"),
        ([*dit, "--class", 1], "is a bare DiT, which makes latents: give a VAE folder"),
        (["--model", tmp_path / "pipe", *vae, "--class", 1], "with its own VAE"),
        ([*dit, *vae, "--class", 10], "class 10 is out of range"),
        ([*dit, *vae, "--class", "cat"], "it knows no names"),
        ([*dit, *vae, "--class", 1, "--height", 18], "multiples of 4"),
    ]
    for argv, match in cases:
        code, err = _generate(capsys, *argv, "--steps", 1, "--out", tmp_path / "x")
        assert code == 2 and match in err and err.count("\n") == 1, (argv, err)
    code, report = _generate(capsys, "--model", tmp_path / "pipe", "--class", 1, "--out",
                             tmp_path / "x")
    assert code == 0 and report["images"][0]["steps"] == 3  # the saved pipeline's defaults
