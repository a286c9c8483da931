"""DiT's own behaviour: adaLN-Zero starts as the identity, text conditioning is used,
shapes and sizes, config checks, and a text DiT in the text-to-image pipeline. (Parity with
diffusers and the official checkpoints: tests/test_dit.py.)"""

import pytest
import torch
from test_pipeline import tiny_pipeline

import mmgen
from mmgen.dit import DiT, DiTConfig
from mmgen.nn import sincos_2d
from mmgen.registry import config_from_dict


def _perturbed(model: DiT, seed: int = 0) -> DiT:
    """Random non-zero weights everywhere (adaLN-Zero makes a fresh DiT predict 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def test_a_fresh_dit_predicts_zero_and_its_blocks_are_the_identity():
    torch.manual_seed(0)
    model = mmgen.create_model("dit/tiny").eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(model(x, 10, torch.tensor([1, 2])), torch.zeros(2, 8, 8, 8))
    tokens, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    assert torch.equal(model.blocks[0](tokens, c), tokens)  # gates start at 0


def test_class_and_text_conditions_change_the_prediction():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    classes = _perturbed(mmgen.create_model("dit/tiny"))
    a, b = classes(x, 10, torch.tensor([1, 1])), classes(x, 10, torch.tensor([1, 2]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    for options in ({}, {"cross_attention": False, "pooled_text": True},
                    {"pooled_text": True}):
        text = _perturbed(mmgen.create_model("dit/tiny-text", **options))
        context = torch.randn(2, 5, 32)
        out = text(x, 10, context)
        assert out.shape == (2, 4, 8, 8)
        assert not torch.allclose(out, text(x, 10, context.flip(0)))
        assert torch.allclose(out[:1], text(x[:1], 10, context[:1]), atol=1e-6)


def test_one_context_serves_the_batch_and_t_takes_every_form():
    text = _perturbed(mmgen.create_model("dit/tiny-text"))
    x, context = torch.randn(3, 4, 8, 8), torch.randn(1, 5, 32)
    ref = text(x, torch.tensor([7, 7, 7]), context.expand(3, -1, -1))
    for t in (7, torch.tensor(7), torch.tensor([7])):
        assert torch.allclose(text(x, t, context), ref, atol=1e-6)


def test_other_sizes_use_the_same_position_function():
    model = _perturbed(mmgen.create_model("dit/tiny"))
    assert torch.equal(model.pos_embed[0], sincos_2d(32, 4, 4))
    out = model(torch.randn(1, 4, 12, 8), 3, torch.tensor([0]))  # a 6x4 grid
    assert out.shape == (1, 8, 12, 8) and torch.isfinite(out).all()


def test_presets_follow_the_paper():
    sizes = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}
    for size, (depth, width, heads) in sizes.items():
        for p in (2, 4, 8):
            with torch.device("meta"):
                c = mmgen.create_model(f"dit/{size}-{p}").config
            assert (c.depth, c.hidden_size, c.num_heads, c.patch_size) == (depth, width, heads, p)
    with torch.device("meta"):
        xl = mmgen.create_model("dit/xl-2")
    # The official code counts its frozen pos_embed parameter (a buffer here): 675 M.
    assert sum(p.numel() for p in xl.parameters()) + xl.pos_embed.numel() == 675_129_632


@pytest.mark.parametrize("fields, match", [
    ({"hidden_size": 30, "num_heads": 4}, "divisible by num_heads"),
    ({"input_size": 9}, "multiple of patch_size"),
    ({"cross_attention_dim": 16}, "not both"),
    ({"num_classes": 0, "cross_attention_dim": 16, "cross_attention": False},
     "never sees the text"),
])
def test_bad_configs_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(DiTConfig, fields)


def test_a_text_dit_replaces_the_unet_in_the_pipeline(tmp_path):
    """Same samplers, seeds, guidance and folder format as with the U-Net."""
    base = tiny_pipeline()
    torch.manual_seed(0)
    dit = _perturbed(mmgen.create_model("dit/tiny-text", input_size=8, cross_attention_dim=64))
    pipe = type(base)(dit, base.vae, base.text_encoder, base.config)
    images = pipe(["a red circle", "a blue square"], seed=3, steps=3, sampler="dpm++2m")
    assert len(images) == 2 and images[0].size == (32, 32)
    again = mmgen.load(pipe.save_pretrained(tmp_path / "dit-pipe"))
    assert isinstance(again.unet, DiT)
    same = again(["a red circle", "a blue square"], seed=3, steps=3, sampler="dpm++2m")
    assert [im.tobytes() for im in same] == [im.tobytes() for im in images]
