"""The latent-diffusion U-Net and the KL autoencoder against diffusers (random weights, fp32,
eval mode), their config translation both ways, save/load round trips, channels_last,
tiled decoding and the registry presets."""

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL as RefVAE
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import save_file

import mmgen
from mmgen.diffusion.samplers import Sampler
from mmgen.diffusion.unet import UNet, UNetConfig
from mmgen.interop.convert import KeyMapError
from mmgen.interop.diffusers import (
    from_diffusers,
    from_diffusers_state_dict,
    to_diffusers_config,
    unet_config_from_diffusers,
    vae_config_from_diffusers,
)
from mmgen.registry import PretrainedModel
from mmgen.vae import AutoencoderKL, AutoencoderKLConfig, LatentDistribution

# 3 levels, attention on the first two (SD 1.x's pattern), heads differing per level.
TINY_UNET = dict(block_out_channels=(32, 64, 64), layers_per_block=2, cross_attention_dim=24,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 attention_head_dim=(2, 4, 4), norm_num_groups=8, sample_size=16)
# SD 2.x's style: linear projections, 64 channels per head (heads = channels / 64), fp32
# attention flag, two transformer blocks per attention layer.
SD2_UNET = dict(block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=32,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=[1, 2],
                use_linear_projection=True, upcast_attention=True,
                transformer_layers_per_block=2, norm_num_groups=16)
TINY_VAE = dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=2, norm_num_groups=8)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, sample_size=512)


def _close(got, ref, rel=1e-4):
    """Equal within rel of the reference's largest magnitude; returns the max error."""
    torch.testing.assert_close(got, ref, rtol=rel, atol=rel * ref.abs().max().item())
    return (got - ref).abs().max().item()


def _ref_unet(seed=0, **kw):
    torch.manual_seed(seed)
    return UNet2DConditionModel(**kw).eval()


def _ref_vae(seed=0, **kw):
    torch.manual_seed(seed)
    return RefVAE(**kw).eval()


def _unet_inputs(cfg, batch=2, size=(9, 11), tokens=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, *size, generator=g)
    context = torch.randn(batch, tokens, cfg.cross_attention_dim, generator=g)
    return x, context


# ----------------------------------------------------------------------------- U-Net parity


@torch.no_grad()
def test_unet_tiny_matches_diffusers_at_odd_size():
    ref = _ref_unet(**TINY_UNET)
    model = from_diffusers(ref)
    assert isinstance(model, UNet) and not model.training
    assert model.config.attention_blocks == (True, True, False)
    assert model.config.heads == (2, 4, 4)
    x, context = _unet_inputs(model.config)  # 9 x 11: both halvings are odd
    t = torch.tensor([10, 700])
    out = model(x, t, context)
    assert out.shape == x.shape
    _close(out, ref(x, t, encoder_hidden_states=context).sample)


@torch.no_grad()
def test_unet_sd2_style_matches_diffusers():
    ref = _ref_unet(**SD2_UNET)
    model = from_diffusers(ref)
    assert model.config.use_linear_projection and model.config.transformer_layers == 2
    assert model.config.heads == (1, 2)  # 64 channels per head
    assert isinstance(model.down_blocks[0].attentions[0].proj_in, torch.nn.Linear)
    x, context = _unet_inputs(model.config, size=(8, 8))
    t = torch.tensor(321.5)  # 0-dim float tensor: one timestep for the batch
    _close(model(x, t, context), ref(x, t, encoder_hidden_states=context).sample)


@torch.no_grad()
def test_unet_sd15_default_config_matches_diffusers():
    """diffusers' default UNet2DConditionModel with SD 1.x's 768-wide context (~860 M
    parameters; building the random reference dominates the ~15 s this takes)."""
    ref = _ref_unet(cross_attention_dim=768)
    # Through the state dict, so the 3.4 GB of weights are shared rather than copied
    # (from_diffusers(ref) copies them; both go through the same checked loader).
    model = from_diffusers_state_dict(ref.state_dict(),
                                      {**ref.config, "_class_name": "UNet2DConditionModel"})
    assert model.model_name == "unet/sd15"
    assert model.config == UNetConfig()
    x, context = _unet_inputs(model.config, batch=1, size=(8, 8), tokens=77)
    _close(model(x, 999, context), ref(x, 999, encoder_hidden_states=context).sample)


@torch.no_grad()
def test_unet_timestep_forms_agree():
    model = mmgen.create_model("unet/tiny").eval()
    x, context = _unet_inputs(model.config, size=(8, 8))
    expected = model(x, torch.tensor([250, 250]), context)
    for t in (250, 250.0, torch.tensor(250), torch.tensor([250])):
        assert torch.equal(model(x, t, context), expected)
    one = context[:1]  # (1, L, D): the same context for every sample
    assert torch.equal(model(x, 250, one), model(x, 250, one.repeat(2, 1, 1)))
    with pytest.raises(ValueError, match="shape"):
        model(x, torch.tensor([1, 2, 3]), context)
    with pytest.raises(ValueError, match="cross_attention_dim"):
        model(x, 1, torch.randn(2, 5, 7))


# ----------------------------------------------------------------------------- VAE parity


@torch.no_grad()
@pytest.mark.parametrize("kw, size", [(TINY_VAE, (18, 14)), (SD_VAE, (32, 32))],
                         ids=["tiny", "sd"])
def test_vae_matches_diffusers(kw, size):
    ref = _ref_vae(**kw)
    model = from_diffusers(ref)
    assert isinstance(model, AutoencoderKL) and not model.training
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    got, expected = model.encode(x), ref.encode(x).latent_dist
    _close(got.mean, expected.mean)
    _close(got.logvar, expected.logvar)
    _close(got.std, expected.std)
    _close(got.kl(), expected.kl())
    z = torch.randn_like(got.mean)
    _close(model.decode(z), ref.decode(z).sample)
    _close(model(x), ref(x).sample)  # reconstruction through the mean
    f = model.latent_factor
    assert z.shape[-2:] == (size[0] // f, size[1] // f)


def test_vae_sd_preset_and_old_attention_names():
    ref = _ref_vae(**TINY_VAE)
    state = ref.state_dict()
    # diffusers < 0.14 names and 1x1-conv shapes of the mid-block attention
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for key, value in state.items():
        for new, legacy in old.items():
            if f".attentions.0.{new}." in key:
                key = key.replace(f".attentions.0.{new}.", f".attentions.0.{legacy}.")
                value = value[:, :, None, None] if value.ndim == 2 else value
        renamed[key] = value
    model = from_diffusers_state_dict(renamed, {**ref.config, "_class_name": "AutoencoderKL"})
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert mmgen.create_model("vae/sd").config == vae_config_from_diffusers(
        {"_class_name": "AutoencoderKL", **SD_VAE})


def test_latent_distribution_sampling():
    vae = mmgen.create_model("vae/tiny").eval()
    with torch.no_grad():
        posterior = vae.encode(torch.randn(1, 3, 8, 8))
    a = posterior.sample(torch.Generator().manual_seed(3))
    b = posterior.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, posterior.mode())
    ref = DiagonalGaussianDistribution(torch.cat([posterior.mean, posterior.logvar], 1))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, ref.mean + ref.std * noise)
    moments = torch.cat([torch.zeros(1, 4, 2, 2), torch.full((1, 4, 2, 2), 100.0)], dim=1)
    assert LatentDistribution(moments).logvar.max().item() == 20.0  # clamped as diffusers


# ----------------------------------------------------------------------------- folders, configs


def test_diffusers_folder_equals_in_memory(tmp_path):
    for name, ref in (("unet", _ref_unet(**TINY_UNET)), ("vae", _ref_vae(**TINY_VAE))):
        ref.save_pretrained(tmp_path / name)
        ref.save_pretrained(tmp_path / f"{name}-bin", safe_serialization=False)
        in_memory = from_diffusers(ref)
        expected = in_memory.state_dict()
        for folder in (tmp_path / name, tmp_path / f"{name}-bin",
                       tmp_path / name / "config.json"):
            got = from_diffusers(folder)
            assert not got.training and got.config == in_memory.config
            assert got.state_dict().keys() == expected.keys()
            assert all(torch.equal(got.state_dict()[k], v) for k, v in expected.items())
    half = from_diffusers(tmp_path / "unet", dtype=torch.float16)
    assert next(half.parameters()).dtype == torch.float16


def test_scheduler_is_delegated(tmp_path):
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.save_pretrained(tmp_path / "scheduler")
    assert isinstance(from_diffusers(scheduler), Sampler)
    assert isinstance(from_diffusers(tmp_path / "scheduler"), Sampler)


@torch.no_grad()
def test_to_diffusers_config_loads_in_diffusers(tmp_path):
    """mmgen model -> diffusers folder (to_diffusers_config + its state dict) -> diffusers'
    from_pretrained gives the same outputs, and the config translation round-trips."""
    torch.manual_seed(0)
    unet = mmgen.create_model("unet/tiny", heads=(2, 8), use_linear_projection=True).eval()
    vae = mmgen.create_model("vae/f4", shift_factor=0.1).eval()
    for name, model, cls in (("unet", unet, UNet2DConditionModel), ("vae", vae, RefVAE)):
        config = to_diffusers_config(model.config)
        back = (unet_config_from_diffusers if name == "unet" else vae_config_from_diffusers)
        assert back(config) == model.config
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  tmp_path / name / "diffusion_pytorch_model.safetensors")
        ref = cls.from_pretrained(tmp_path / name).eval()
        if name == "unet":
            x, context = _unet_inputs(model.config, size=(7, 8))
            _close(model(x, 500, context), ref(x, 500, encoder_hidden_states=context).sample)
        else:
            x = torch.randn(1, 3, 16, 16)
            _close(model.encode(x).mean, ref.encode(x).latent_dist.mean)
            assert ref.config.shift_factor == pytest.approx(0.1)


def test_mmgen_save_load_round_trip(tmp_path):
    for name in ("unet/tiny", "vae/f4"):
        model = mmgen.create_model(name).eval()
        loaded = PretrainedModel.from_pretrained(model.save_pretrained(tmp_path / name))
        assert type(loaded) is type(model) and loaded.config == model.config
        assert loaded.model_name == name and not loaded.training
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("option, value", [
    ("addition_embed_type", "text_time"),  # SDXL
    ("class_embed_type", "timestep"),
    ("time_cond_proj_dim", 256),  # LCM
    ("resnet_time_scale_shift", "scale_shift"),
    ("mid_block_type", None),
    ("num_class_embeds", 10),
    ("only_cross_attention", [True, False, False]),
    ("dual_cross_attention", True),
    ("attention_type", "gated"),
    ("transformer_layers_per_block", [1, 2, 2]),
    ("down_block_types", ["SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
    ("brand_new_option", 3),
])
def test_unsupported_unet_options_are_named(option, value):
    config = {"_class_name": "UNet2DConditionModel", **TINY_UNET, option: value}
    with pytest.raises(ValueError, match=option if option != "down_block_types" else
                       "SimpleCrossAttnDownBlock2D"):
        unet_config_from_diffusers(config)


def test_config_checks():
    ok = unet_config_from_diffusers({**TINY_UNET, "upcast_attention": True,
                                     "only_cross_attention": [False] * 3,
                                     "cross_attention_dim": [24, 24, 24]})
    assert ok.cross_attention_dim == 24
    with pytest.raises(ValueError, match="latents_mean"):
        vae_config_from_diffusers({**TINY_VAE, "latents_mean": [0.0] * 4})
    with pytest.raises(ValueError, match="mirror"):
        unet_config_from_diffusers({**TINY_UNET, "up_block_types": ["CrossAttnUpBlock2D"] * 3})
    with pytest.raises(ValueError, match="_class_name"):
        unet_config_from_diffusers({"_class_name": "UNet2DModel"})
    with pytest.raises(ValueError, match="one entry per level"):
        UNetConfig(heads=(8, 8))
    with pytest.raises(KeyMapError, match="missing"):
        state = _ref_unet(**TINY_UNET).state_dict()
        state.pop("conv_in.weight")
        from_diffusers_state_dict(state, {"_class_name": "UNet2DConditionModel", **TINY_UNET})


# ----------------------------------------------------------------------------- behaviour


@torch.no_grad()
def test_channels_last_matches_contiguous():
    unet = mmgen.create_model("unet/tiny").eval()
    x, context = _unet_inputs(unet.config, size=(9, 11))
    expected = unet(x, 10, context)
    unet_cl = unet.to(memory_format=torch.channels_last)
    got = unet_cl(x.to(memory_format=torch.channels_last), 10, context)
    _close(got, expected, rel=1e-5)
    vae = mmgen.create_model("vae/f4").eval()
    img = torch.randn(1, 3, 32, 32)
    expected = vae(img)
    got = vae.to(memory_format=torch.channels_last)(img.to(memory_format=torch.channels_last))
    _close(got, expected, rel=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = mmgen.create_model("unet/tiny")
    x, context = _unet_inputs(model.config, size=(8, 8))
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        model(x, 5, context).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_decode_tiled():
    torch.manual_seed(0)
    vae = mmgen.create_model("vae/tiny").eval()  # 2x
    z = torch.randn(1, 4, 8, 8)
    # One window covering the latent: exactly decode.
    assert torch.equal(vae.decode_tiled(z, tile=8, overlap=2), vae.decode(z))

    # The blending is a partition of unity: with a decoder that is pointwise, tiles of any
    # layout reproduce the full decode.
    class Pointwise(AutoencoderKL):
        def decode(self, z):
            return F.interpolate(z[:, :3] * 2 + 1, scale_factor=2, mode="nearest")

    stub = Pointwise(vae.config)
    big = torch.randn(2, 4, 29, 40)
    _close(stub.decode_tiled(big, tile=12, overlap=4), stub.decode(big), rel=1e-6)

    # A real (random-weight) decoder is not local: each tile's GroupNorm statistics and
    # mid-block attention see that tile only, so no tiling reproduces decode exactly (here
    # ~16% mean relative difference). The overlap and blend should still halve the error of
    # decoding the same latent as four hard-edged, non-overlapping 16x16 tiles (~32%).
    big = torch.randn(1, 4, 32, 32)
    full, tiled = vae.decode(big), vae.decode_tiled(big, tile=16, overlap=6)
    assert tiled.shape == full.shape
    stitched = torch.cat([torch.cat([vae.decode(big[..., i:i + 16, j:j + 16]) for j in (0, 16)],
                                    dim=-1) for i in (0, 16)], dim=-2)
    tiled_error = (tiled - full).abs().mean() / full.abs().mean()
    stitched_error = (stitched - full).abs().mean() / full.abs().mean()
    assert tiled_error < 0.75 * stitched_error and tiled_error < 0.25

    moments = vae.encode_tiled(torch.randn(1, 3, 32, 32), tile=16, overlap=4)
    assert moments.mean.shape == (1, 4, 16, 16)


def test_registry_presets():
    assert {"unet/sd15", "unet/sd2", "unet/tiny", "vae/sd", "vae/tiny", "vae/f4"} <= set(
        mmgen.list_models())
    unet = mmgen.create_model("unet/tiny", cross_attention_dim=16)
    x, context = _unet_inputs(unet.config, size=(16, 16))
    with torch.no_grad():
        assert unet(x, 3, context).shape == (2, 4, 16, 16)
    with pytest.raises(TypeError, match="no field"):
        mmgen.create_model("unet/tiny", channels=3)

    with torch.no_grad():
        for name, factor in (("vae/tiny", 2), ("vae/f4", 4)):
            vae = mmgen.create_model(name)
            assert vae.latent_factor == factor
            posterior = vae.encode(torch.randn(2, 3, 64, 64))
            assert posterior.sample().shape == (2, 4, 64 // factor, 64 // factor)
            assert vae.decode(posterior.mode()).shape == (2, 3, 64, 64)
    f4_params = sum(p.numel() for p in mmgen.create_model("vae/f4").parameters())
    assert 0.5e6 < f4_params < 2e6
    assert mmgen.create_model("vae/sd").config == AutoencoderKLConfig()
