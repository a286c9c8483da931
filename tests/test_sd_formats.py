"""Stable Diffusion 1.x checkpoints: diffusers folders and original single files.

A tiny random-weight SD 1.x is built with diffusers/transformers and saved in diffusers'
folder layout (with a CLIP tokenizer folder that ``write_clip_tokenizer`` writes from
open_clip's BPE, the vocabulary mmgen tokenizes with). References: diffusers' own LDM key
converters for the single-file format, and the diffusers/transformers models' outputs for
the loaded components.
"""

import dataclasses
import json
import pickle
import sys

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mmgen.checkpoint import UnsafeCheckpointError
from mmgen.clip.model import CLIPTextModel as MMGenTextModel
from mmgen.clip.model import TextConfig
from mmgen.clip.tokenizer import CLIPTokenizer as MMGenTokenizer
from mmgen.diffusion.pipeline import TextToImagePipeline
from mmgen.interop.ldm_keys import (
    text_config_from_ldm,
    unet_config_from_ldm,
    unet_to_ldm,
    vae_config_from_ldm,
    vae_to_ldm,
)
from mmgen.interop.stable_diffusion import (
    SD1_SCHEDULER,
    load_sd_folder,
    load_sd_single_file,
    read_sd_folder,
    read_sd_single_file,
    sd_pipeline,
    write_clip_tokenizer,
    write_sd_single_file,
)

WIDTH = 128  # text encoder width = U-Net cross-attention size (2 heads of 64, as OpenAI's)
UNET_KW = dict(sample_size=8, block_out_channels=(32, 64, 64), cross_attention_dim=WIDTH,
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               attention_head_dim=8)
VAE_KW = dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
              up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=2)
MODEL_INDEX = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
               "feature_extractor": [None, None], "safety_checker": [None, None],
               "requires_safety_checker": False,
               "scheduler": ["diffusers", "PNDMScheduler"],
               "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"],
               "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"]}
PNDM_CONFIG = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)  # SD 1.5's
PROMPTS = ["a photo of an astronaut riding a horse", "Cats, dogs & 3 birds!"]


def _unet(layers=2, **kw):
    torch.manual_seed(layers)
    return UNet2DConditionModel(**{**UNET_KW, "layers_per_block": layers, **kw}).eval()


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """(folder, reference models): a tiny SD 1.x pipeline folder in diffusers' layout."""
    folder = tmp_path_factory.mktemp("sd") / "tiny-sd"
    folder.mkdir()
    torch.manual_seed(0)
    refs = {"unet": _unet(), "vae": AutoencoderKL(**VAE_KW).eval(),
            "text_encoder": CLIPTextModel(CLIPTextConfig(
                hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=2,
                num_attention_heads=2, vocab_size=49408, max_position_embeddings=77,
                eos_token_id=2)).eval(),  # SD 1.x's legacy eos id
            # SD 1.x folders ship a PNDMScheduler (read as DDIM on its schedule)
            "scheduler": PNDMScheduler(**PNDM_CONFIG)}
    for name, obj in refs.items():
        obj.save_pretrained(folder / name)
    # SD 1.5's scheduler_config.json also says clip_sample: false (PNDM ignores it; a DDIM
    # built from this config by diffusers would otherwise clip x0 to [-1, 1])
    config_file = folder / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()),
                                       "clip_sample": False}))
    write_clip_tokenizer(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX))
    return folder, refs


@pytest.fixture(scope="module")
def single_file(sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("single") / "tiny-sd.safetensors"
    return write_sd_single_file(sd[0], path)


def _assert_same(got, expected):
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


# ----------------------------------------------------------------------------- key maps


@pytest.mark.parametrize("variant", ["layers1", "layers2", "sd2_linear"])
def test_unet_ldm_names_round_trip_through_diffusers_converter(variant):
    # SD 2.x: 64 channels per head; diffusers' attention_head_dim holds heads per level.
    kw = dict(use_linear_projection=True, cross_attention_dim=1024, attention_head_dim=[1, 2, 2],
              block_out_channels=(64, 128, 128)) if variant == "sd2_linear" else {}
    unet = _unet(layers=1 if variant == "layers1" else 2, **kw)
    ldm = unet_to_ldm(unet.state_dict())
    assert "time_embed.0.weight" in ldm and "out.2.weight" in ldm
    config = unet_config_from_ldm(ldm)
    for field in ("layers_per_block", "cross_attention_dim", "attention_head_dim",
                  "use_linear_projection", "in_channels", "out_channels"):
        assert config[field] == unet.config[field], field
    for field in ("block_out_channels", "down_block_types", "up_block_types"):
        assert tuple(config[field]) == tuple(unet.config[field]), field
    back = sfu.convert_ldm_unet_checkpoint({f"model.diffusion_model.{k}": v
                                            for k, v in ldm.items()}, config)
    _assert_same(back, unet.state_dict())


def test_vae_ldm_names_round_trip_through_diffusers_converter():
    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_KW)
    ldm = vae_to_ldm(vae.state_dict())
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)  # LDM's 1x1 convs
    assert "decoder.up.1.upsample.conv.weight" in ldm and "encoder.norm_out.bias" in ldm
    config = vae_config_from_ldm(ldm)
    for field in ("block_out_channels", "layers_per_block", "latent_channels",
                  "down_block_types", "up_block_types"):
        assert tuple(config[field]) == tuple(vae.config[field]) if isinstance(
            config[field], list) else config[field] == vae.config[field], field
    back = sfu.convert_ldm_vae_checkpoint({f"first_stage_model.{k}": v for k, v in ldm.items()},
                                          config)
    _assert_same(back, vae.state_dict())


def test_folder_to_single_file_round_trips_key_by_key(sd, single_file):
    folder, refs = sd
    state = load_file(single_file)
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.",
                             "cond_stage_model.transformer.text_model.")) for k in state)
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in state  # level 0's downsampler
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in state  # after attention
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in state  # no attention
    unet_config = unet_config_from_ldm({k[22:]: v for k, v in state.items()
                                        if k.startswith("model.diffusion_model.")})
    vae_config = vae_config_from_ldm({k[18:]: v for k, v in state.items()
                                      if k.startswith("first_stage_model.")})
    _assert_same(sfu.convert_ldm_unet_checkpoint(state, unet_config),
                 load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    _assert_same(sfu.convert_ldm_vae_checkpoint(state, vae_config),
                 load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"))
    text = sfu.convert_ldm_clip_checkpoint(state)
    _assert_same(text, {f"text_model.{k}": v for k, v in load_file(
        folder / "text_encoder" / "model.safetensors").items()})
    hf = text_config_from_ldm(text)
    reference = refs["text_encoder"].config
    assert (hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"],
            hf["intermediate_size"], hf["max_position_embeddings"], hf["vocab_size"]) == (
        reference.hidden_size, reference.num_hidden_layers, reference.num_attention_heads,
        reference.intermediate_size, reference.max_position_embeddings, reference.vocab_size)


def test_write_casts_floats_and_needs_safetensors(sd, tmp_path):
    path = write_sd_single_file(sd[0], tmp_path / "half.safetensors", dtype=torch.float16)
    assert {v.dtype for v in load_file(path).values()} == {torch.float16}
    for dtype in (torch.float32, torch.float16):  # float32 weights by default
        c = read_sd_single_file(path, **({} if dtype == torch.float32 else {"dtype": dtype}))
        assert {p.dtype for net in (c.unet, c.vae, c.text_encoder)
                for p in net.parameters()} == {dtype}
    with pytest.raises(ValueError, match="as .safetensors only"):
        write_sd_single_file(sd[0], tmp_path / "x.ckpt")


# ----------------------------------------------------------------------------- tokenizer


def test_generated_tokenizer_folder_tokenizes_like_mmgen(sd):
    """The vocabulary check is meaningful: SD 1.x's tokenizer (transformers, this vocab)
    gives the ids of mmgen's CLIP tokenizer with SD 1.x padding."""
    hf = CLIPTokenizer.from_pretrained(sd[0] / "tokenizer")
    ids = hf(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids
    assert torch.equal(torch.tensor(ids), MMGenTokenizer(77, pad_token_id=49407)(PROMPTS))


def _folder_without(tmp_path, missing=(), index=None):
    """A pipeline folder skeleton: model_index.json and empty component folders."""
    folder = tmp_path / "pipe"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index or MODEL_INDEX))
    for name in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        if name not in missing:
            (folder / name).mkdir()
    return folder


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing the 'vae' component"):
        read_sd_folder(_folder_without(tmp_path / "a", missing=("vae",)))
    with pytest.raises(ValueError, match="lists no 'text_encoder' component"):
        read_sd_folder(_folder_without(tmp_path / "b", index={**MODEL_INDEX,
                                                              "text_encoder": [None, None]}))
    sdxl = {**MODEL_INDEX, "_class_name": "StableDiffusionXLPipeline",
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}
    with pytest.raises(ValueError, match="SDXL is not supported"):
        read_sd_folder(_folder_without(tmp_path / "c", index=sdxl))
    with pytest.raises(ValueError, match="_class_name 'FluxPipeline'"):
        read_sd_folder(_folder_without(tmp_path / "d", index={**MODEL_INDEX,
                                                              "_class_name": "FluxPipeline"}))
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        read_sd_folder(tmp_path)


def _linked_copy(sd_folder, tmp_path, tokenizer_files):
    """The tiny pipeline with its weights linked and a tokenizer folder of ``tokenizer_files``
    (name -> text; None: no tokenizer folder)."""
    folder = tmp_path / "linked"
    folder.mkdir(parents=True)
    for name in ("unet", "vae", "text_encoder", "scheduler", "model_index.json"):
        (folder / name).symlink_to(sd_folder / name)
    if tokenizer_files is not None:
        (folder / "tokenizer").mkdir()
        for name, text in tokenizer_files.items():
            (folder / "tokenizer" / name).write_text(text)
    return folder


def test_tokenizer_folder_is_optional_and_checked(sd, tmp_path):
    with pytest.warns(UserWarning, match="no vocab.json"):
        c = read_sd_folder(_linked_copy(sd[0], tmp_path / "a", None))
    assert (c.tokenizer.context_length, c.tokenizer.pad_token_id) == (77, 49407)
    vocab = (sd[0] / "tokenizer" / "vocab.json").read_text()
    sd2 = {"vocab.json": vocab, "tokenizer_config.json": json.dumps(
        {"pad_token": {"content": "!", "lstrip": False}, "model_max_length": 77})}
    c = read_sd_folder(_linked_copy(sd[0], tmp_path / "b", sd2))
    assert c.tokenizer.pad_token_id == 0  # SD 2.x pads with "!"
    with pytest.raises(ValueError, match="is not CLIP's vocabulary"):
        read_sd_folder(_linked_copy(sd[0], tmp_path / "c", {"vocab.json": '{"a": 0}'}))


# ----------------------------------------------------------------------------- single files


def test_unrelated_or_sdxl_single_files_are_refused(tmp_path):
    save_file({"encoder.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"not a Stable Diffusion checkpoint: no "
                                         r"model\.diffusion_model\.\* keys"):
        read_sd_single_file(tmp_path / "other.safetensors")
    save_file({"model.diffusion_model.x": torch.zeros(1),
               "conditioner.embedders.0.transformer.x": torch.zeros(1)},
              tmp_path / "xl.safetensors")
    with pytest.raises(ValueError, match="SDXL is not supported"):
        read_sd_single_file(tmp_path / "xl.safetensors")
    save_file({"model.diffusion_model.x": torch.zeros(1)}, tmp_path / "unet.safetensors")
    with pytest.raises(ValueError, match=r"has no VAE \(first_stage_model"):
        read_sd_single_file(tmp_path / "unet.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_sd_single_file(tmp_path / "broken.safetensors")


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: a stand-in for any code-execution gadget."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_ckpt_with_extra_original_keys_loads(single_file, from_single_file, tmp_path):
    """A .ckpt as CompVis saved them: wrapped in "state_dict", with the schedule buffers,
    an EMA entry and CLIP's position_ids beside the weights."""
    state = {**load_file(single_file), "alphas_cumprod": torch.rand(1000),
             "model_ema.decay": torch.tensor(0.9999),
             "cond_stage_model.transformer.text_model.embeddings.position_ids":
                 torch.arange(77)[None]}
    torch.save({"state_dict": state, "global_step": 470000}, tmp_path / "tiny.ckpt")
    c = read_sd_single_file(tmp_path / "tiny.ckpt")
    for name in ("unet", "vae", "text_encoder"):
        _assert_same(getattr(c, name).state_dict(), getattr(from_single_file, name).state_dict())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_ckpt_is_refused(single_file, tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.ckpt"
    state = load_file(single_file)
    torch.save({"state_dict": state, "callbacks": _CreatesFile(marker)}, evil)
    with pytest.raises(UnsafeCheckpointError, match="refuses"):
        read_sd_single_file(evil)
    assert not marker.exists()
    evil.write_bytes(pickle.dumps({"state_dict": _CreatesFile(marker)}))
    with pytest.raises(UnsafeCheckpointError):
        read_sd_single_file(evil)
    assert not marker.exists()


def test_single_file_needs_diffusers(single_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers.loaders", None)
    with pytest.raises(ImportError, match="needs diffusers: pip install diffusers"):
        read_sd_single_file(single_file)


# ----------------------------------------------------------------------------- components


@pytest.fixture(scope="module")
def from_folder(sd):
    return read_sd_folder(sd[0])


@pytest.fixture(scope="module")
def from_single_file(single_file):
    return read_sd_single_file(single_file)


@torch.no_grad()
def _assert_matches_references(c, refs):
    """Outputs of mmgen components == the diffusers/transformers models' (within 1e-4)."""
    torch.manual_seed(1)
    tokens = MMGenTokenizer(77, pad_token_id=c.tokenizer.pad_token_id)(PROMPTS)  # (2, 77)
    context = c.text_encoder.encode_text_states(tokens).last_hidden_state  # (2, 77, W)
    expected = refs["text_encoder"](tokens).last_hidden_state
    torch.testing.assert_close(context, expected, atol=1e-4, rtol=1e-4)

    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    torch.testing.assert_close(c.unet(x, t, context),
                               refs["unet"](x, t, encoder_hidden_states=context).sample,
                               atol=1e-4, rtol=1e-4)
    pixels = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(c.vae.encode(pixels).mean,
                               refs["vae"].encode(pixels).latent_dist.mean, atol=1e-4, rtol=1e-4)
    z = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(c.vae.decode(z), refs["vae"].decode(z).sample,
                               atol=1e-4, rtol=1e-4)
    assert c.vae.config.scaling_factor == pytest.approx(0.18215)

    # SD 1.5's scheduler_config.json has "clip_sample": false (PNDM ignores it)
    scheduler = DDIMScheduler.from_config(refs["scheduler"].config, clip_sample=False)
    scheduler.set_timesteps(10)
    c.sampler.set_timesteps(10)
    assert c.sampler.timesteps.tolist() == scheduler.timesteps.tolist()
    t0 = scheduler.timesteps[0]
    torch.testing.assert_close(c.sampler.step(x, t0, x),
                               scheduler.step(x, t0, x).prev_sample, atol=1e-5, rtol=1e-5)


def test_read_sd_folder_matches_diffusers_and_transformers(sd, from_folder):
    c = from_folder
    assert c.name == "tiny-sd"
    assert (c.tokenizer.context_length, c.tokenizer.pad_token_id) == (77, 49407)
    assert c.scheduler_config["_class_name"] == "PNDMScheduler"
    _assert_matches_references(c, sd[1])


def test_single_file_loads_the_same_components(sd, from_folder, from_single_file):
    c = from_single_file
    assert c.name == "tiny-sd" and c.scheduler_config == SD1_SCHEDULER
    for name in ("unet", "vae", "text_encoder"):
        _assert_same(getattr(c, name).state_dict(), getattr(from_folder, name).state_dict())
    _assert_matches_references(c, sd[1])


def test_components_write_the_same_single_file(from_folder, single_file, tmp_path):
    path = write_sd_single_file(from_folder, tmp_path / "again.safetensors")
    _assert_same(load_file(path), load_file(single_file))


def test_only_sd_text_encoders_are_written(from_folder, tmp_path):
    """A text tower with a projection, or with a config that is not a plain TextConfig (e.g.
    a restricted vocabulary), has no place in an original single file."""

    @dataclasses.dataclass
    class Restricted(TextConfig):  # stands in for any TextConfig subclass
        pass

    tiny = dict(vocab_size=64, context_length=8, width=64, layers=1, heads=1)
    for config, found in ((TextConfig(**tiny, embed_dim=32), "TextConfig with embed_dim=32"),
                          (Restricted(**tiny, embed_dim=0), "Restricted with embed_dim=0")):
        c = dataclasses.replace(from_folder, text_encoder=MMGenTextModel(config))
        with pytest.raises(ValueError, match=f"single file; got a {found}"):
            write_sd_single_file(c, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


# ----------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("sampler, diffusers_scheduler", [
    ("ddim", "DDIMScheduler"), ("dpm++2m", "DPMSolverMultistepScheduler"),
    ("euler_a", "EulerAncestralDiscreteScheduler")])
def test_sd_folder_pipeline_matches_diffusers(sd, sampler, diffusers_scheduler):
    """mmgen.load(folder) generates what diffusers' StableDiffusionPipeline generates from the
    same folder, seeds and sampler (one CPU generator per image, as mmgen uses)."""
    import diffusers
    import numpy as np

    import mmgen

    folder = sd[0]
    pipe = mmgen.load(folder)
    ours = pipe(PROMPTS, negative_prompt="blurry", sampler=sampler, steps=6, guidance=5.0,
                seed=3, height=32, width=32, progress=False)
    ref = diffusers.StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    ref.scheduler = getattr(diffusers, diffusers_scheduler).from_config(ref.scheduler.config)
    ref.set_progress_bar_config(disable=True)
    out = ref(PROMPTS, negative_prompt=["blurry"] * 2, num_inference_steps=6,
              guidance_scale=5.0, height=32, width=32, output_type="np",
              generator=[torch.Generator().manual_seed(3 + i) for i in range(2)]).images
    expected = (out * 255).round().astype("uint8")  # (2, 32, 32, 3)
    got = np.stack([np.asarray(im) for im in ours])
    assert np.abs(got.astype(int) - expected).max() <= 1  # float rounding at .5 only
    assert (got != expected).mean() < 0.01


def test_single_file_pipeline_equals_folder_pipeline(sd, single_file):
    import numpy as np

    import mmgen

    a = mmgen.load(sd[0])(PROMPTS[0], steps=3, seed=0, height=32, width=32, progress=False)
    b = mmgen.load(single_file)(PROMPTS[0], steps=3, seed=0, height=32, width=32,
                                progress=False)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))


def test_sd_pipeline_takes_the_checkpoint_settings(sd, single_file, from_folder):
    """load_sd_folder / load_sd_single_file (what mmgen.load calls) == sd_pipeline of the
    components: image size from the U-Net, the checkpoint's schedule, padding and DDIM end."""
    pipe = sd_pipeline(from_folder)
    assert isinstance(pipe, TextToImagePipeline)
    side = UNET_KW["sample_size"] * 2  # two VAE levels: latent factor 2
    assert (pipe.config.name, pipe.config.height, pipe.config.width) == ("tiny-sd", side, side)
    assert pipe.config.pad_token_id == 49407 and pipe.config.set_alpha_to_one is False
    assert pipe.config.schedule == from_folder.sampler.schedule
    assert dataclasses.asdict(load_sd_folder(sd[0]).config) == dataclasses.asdict(pipe.config)
    # A single file carries no sample size: SD 1.x's 64 latents (512 px at factor 8) is assumed.
    loaded = load_sd_single_file(single_file, dtype="fp32")
    assert isinstance(loaded, TextToImagePipeline)
    assert dataclasses.asdict(loaded.config) == {**dataclasses.asdict(pipe.config),
                                                 "height": 64 * 2, "width": 64 * 2}


# ----------------------------------------------------------------------------- export


def _diffusers_images(folder, prompts, steps, seed, **kw):
    import diffusers

    ref = diffusers.StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    ref.set_progress_bar_config(disable=True)
    out = ref(prompts, num_inference_steps=steps, output_type="np",
              generator=[torch.Generator().manual_seed(seed + i) for i in range(len(prompts))],
              **kw).images
    return ref, (out * 255).round().astype("uint8")  # (N, H, W, 3)


def test_to_diffusers_round_trips_a_stable_diffusion_folder(sd, tmp_path):
    """folder -> mmgen -> to_diffusers -> folder: diffusers runs it as it ran the original
    (DDIM, the exported scheduler), and mmgen reads back the same weights and settings."""
    import numpy as np

    import mmgen
    from mmgen.interop import to_diffusers

    pipe = mmgen.load(sd[0])
    out = to_diffusers(pipe, tmp_path / "export")
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    ref, images = _diffusers_images(out, PROMPTS, 4, 5, guidance_scale=4.0, height=32, width=32)
    ours = pipe(PROMPTS, steps=4, seed=5, guidance=4.0, height=32, width=32, progress=False)
    got = np.stack([np.asarray(im) for im in ours])
    assert np.abs(got.astype(int) - images).max() <= 1
    assert type(ref.scheduler).__name__ == "DDIMScheduler"
    back = mmgen.load(out)  # named after its folder
    assert dataclasses.asdict(back.config) == {**dataclasses.asdict(pipe.config), "name": "export"}
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(back, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name


def test_to_diffusers_writes_the_bundled_shapes_pipeline_exactly(tmp_path):
    """shapes-t2i's text encoder (restricted vocabulary, "last+input" context) becomes a
    transformers CLIPTextModel subclass that diffusers loads by name: same token ids, the
    same context bit for bit, the same images (to float rounding of the last grey level)."""
    import numpy as np

    import mmgen
    from mmgen.interop import to_diffusers
    from mmgen.interop.diffusers_export import LastPlusInputCLIPTextModel

    pipe = mmgen.load("shapes-t2i")
    prompts = ["a large red circle in the center on a white background",
               "a small blue plus in the top left on a black background"]
    out = to_diffusers(pipe, tmp_path / "shapes")
    ref, images = _diffusers_images(out, prompts, 5, 0, guidance_scale=pipe.config.guidance)
    assert isinstance(ref.text_encoder, LastPlusInputCLIPTextModel)
    assert ref.tokenizer.model_max_length == 32
    ids = ref.tokenizer(prompts, padding="max_length", max_length=32, truncation=True,
                        return_tensors="pt").input_ids
    assert torch.equal(ids, pipe.tokenizer(prompts))
    with torch.no_grad():
        assert torch.equal(ref.text_encoder(ids)[0], pipe.encode_prompt(prompts))
    got = np.stack([np.asarray(im) for im in pipe(prompts, steps=5, seed=0, progress=False)])
    assert np.abs(got.astype(int) - images).max() <= 1


def test_to_diffusers_refuses_what_it_cannot_write(tmp_path):
    import mmgen
    from mmgen.interop import to_diffusers

    with pytest.raises(ValueError, match="text-to-image U-Net pipelines"):
        to_diffusers(mmgen.load("mnist-dcgan"), tmp_path / "x")
    with pytest.raises(ValueError, match="before enable_fast"):
        to_diffusers(mmgen.load("shapes-t2i", fast=True), tmp_path / "x")
    assert not (tmp_path / "x").exists()
