"""The fast inference path (mmgen.fast, pipe.enable_fast): its outputs against the exact fp32
path's, what it changes in the networks, and the switch in Python and the CLI. Correctness
only; its speed is measured by benchmarks/unet_step.py and benchmarks/shapes_image.py."""

import numpy as np
import pytest
import torch

import mmgen
from mmgen import fast
from mmgen.device import cpu_has_bf16
from mmgen.diffusion.unet import UNet, UNetConfig
from mmgen.nn import Attention

PROMPTS = ["a large red circle in the center on a white background",
           "a small green triangle in the bottom right on a black background",
           "a small blue plus in the top left on a white background"]
BF16 = torch.bfloat16 if cpu_has_bf16() else torch.float32


def tiny_unet(levels=2):
    torch.manual_seed(0)
    config = UNetConfig(block_out_channels=(32, 64)[:levels], attention_blocks=(True,) * levels,
                        heads=(2, 4)[:levels], cross_attention_dim=48, norm_num_groups=8,
                        sample_size=8)
    unet = UNet(config).eval()
    for p in unet.parameters():  # zero-initialised output layers would hide differences
        p.data.normal_(0, 0.05)
    return unet


def unet_inputs(batch=2):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 4, 16, 16, generator=g), torch.tensor([10, 700][:batch]),
            torch.randn(batch, 7, 48, generator=g))


def images(pipe, prompts, **kw):
    return np.stack([np.asarray(im) for im in pipe(prompts, seed=0, progress=False, **kw)]
                    ).astype(int)


def test_fused_projections_compute_the_same_attention():
    torch.manual_seed(0)
    attn = Attention(32, heads=4, head_dim=8, qkv_bias=True).eval()
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        expected = attn(x)
        attn.fuse_projections()
        assert attn.qkv_weight.shape == (96, 32) and attn.qkv_bias.shape == (96,)
        torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-6)
    assert "qkv_weight" not in attn.state_dict()  # a copy, never saved
    cross = Attention(32, context_dim=16)
    cross.fuse_projections()  # no-op: k and v read the context
    assert cross.qkv_weight is None


def test_prepare_changes_the_network_and_stays_close_to_fp32():
    unet = tiny_unet()
    keys = set(unet.state_dict())
    x, t, context = unet_inputs()
    with torch.no_grad():
        expected = unet(x, t, context)
        fast.prepare(unet, torch.device("cpu"), BF16)
        got = unet(x.to(BF16), t, context.to(BF16)).float()
    assert set(unet.state_dict()) == keys
    assert all(p.dtype == BF16 and not p.requires_grad for p in unet.parameters())
    attentions = [m for m in unet.modules() if isinstance(m, Attention)]
    assert attentions and all(m.backend == "tiled" for m in attentions)
    assert all((m.qkv_weight is None) == (m.context_dim is not None) for m in attentions)
    # bf16 keeps 8 mantissa bits: errors of a few 1e-3 relative to the output's scale
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 0.03 * scale
    assert (got - expected).abs().mean() <= 0.005 * scale


def test_compiled_network_matches_the_eager_fast_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEN_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))  # restored
    unet = fast.prepare(tiny_unet(levels=1), torch.device("cpu"), BF16)  # quicker to compile
    x, t, context = (v.to(BF16) if v.is_floating_point() else v for v in unet_inputs())
    with torch.no_grad():
        eager = unet(x, t, context).float()
        compiled = fast.compiled(unet)(x, t, context).float()
    scale = eager.abs().max()
    assert (compiled - eager).abs().max() <= 0.03 * scale
    assert any((tmp_path / "cache").iterdir())  # inductor wrote its cache there


@pytest.mark.parametrize("model", ["shapes-t2i", "shapes-dit"])
def test_fast_pipeline_draws_what_the_exact_one_draws(model):
    exact = mmgen.load(model)
    pipe = mmgen.load(model, fast=True)
    assert pipe.fast and pipe.dtype == BF16 and not pipe.batch_invariant
    assert pipe.model_hash == exact.model_hash  # the weights as loaded, not the bf16 copy
    ours, theirs = images(pipe, PROMPTS), images(exact, PROMPTS)
    assert np.abs(ours - theirs).mean() < 1.0  # grey levels (of 255)
    assert np.abs(ours - theirs).max() <= 24
    # the same seed at the same batch size: the same image; another batch: within a level
    assert np.array_equal(images(pipe, PROMPTS), ours)
    assert np.abs(images(pipe, PROMPTS[:1]) - ours[:1]).max() <= 2


def test_fast_pipeline_stays_fast_when_moved():
    pipe = mmgen.load("shapes-t2i").enable_fast()
    pipe.to("cpu", "fp32")  # dtype is ignored on the fast path
    assert pipe.fast and pipe.dtype == BF16
    assert all(p.dtype == BF16 for p in pipe.unet.parameters())
    assert not pipe.fp32_fallback


def test_fast_is_for_diffusion_pipelines():
    with pytest.raises(ValueError, match="fast=True is for diffusion pipelines"):
        mmgen.load("mnist-lenet5", fast=True)


def test_cli_switch(tmp_path, capsys):
    from mmgen import cli

    out = tmp_path / "circle.png"
    assert cli.main(["generate", PROMPTS[0], "--fast", "--steps", "5", "--out", str(out)]) == 0
    assert out.is_file()
    assert cli.main(["generate", PROMPTS[0], "--fast", "--dtype", "bf16"]) == 2
    assert cli.main(["generate", "--model", "mnist-dcgan", "--class", "3", "--fast"]) == 2
    err = capsys.readouterr().err
    assert "drop --dtype" in err and "are for diffusion models" in err


def test_app_switch():
    from mmgen_app.config import AppConfig
    from mmgen_app.models import ModelStore

    assert ModelStore(AppConfig(fast=True)).pipeline("shapes-t2i").fast
    assert not ModelStore(AppConfig()).pipeline("shapes-t2i").fast
