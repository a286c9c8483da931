"""mmgen.nn.attention: every backend equals the "math" reference, and backend selection."""

import importlib

import pytest
import torch

from mmgen.nn import (
    attention,
    available_attention_backends,
    get_attention_backend,
    set_attention_backend,
)

# `mmgen.nn.attention` is the function; the module holding it is reached through importlib.
attention_module = importlib.import_module("mmgen.nn.attention")

FAST_BACKENDS = [name for name in available_attention_backends() if name != "math"]


pytestmark = pytest.mark.usefixtures("clean_attention_backend")


def qkv(batch=2, heads=3, lq=37, lk=53, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, lq, dim, generator=gen)
    k = torch.randn(batch, heads, lk, dim, generator=gen)
    v = torch.randn(batch, heads, lk, dim, generator=gen)
    return q, k, v


def make_mask(kind, batch=2, heads=3, lq=37, lk=53):
    """Masks of every supported kind. Only "causal" with Lq > Lk masks whole query rows."""
    gen = torch.Generator().manual_seed(1)
    if kind == "none":
        return None
    if kind == "bool":  # full (B, H, Lq, Lk), random
        mask = torch.rand(batch, heads, lq, lk, generator=gen) > 0.3
        mask[..., 0] = True
        return mask
    if kind == "additive":  # float bias, broadcast over the batch
        return torch.randn(1, heads, lq, lk, generator=gen)
    if kind == "additive_inf":  # float mask with -inf entries
        bias = torch.zeros(batch, 1, lq, lk)
        bias[..., lk // 2 :] = float("-inf")
        return bias
    if kind == "causal":  # (Lq, Lk): query i sees keys 0..i (plus the Lk - Lq extra keys)
        return torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=lk - lq)
    if kind == "key_padding":  # (B, 1, 1, Lk): per-sample valid lengths
        lengths = torch.tensor([lk, lk // 3])[:batch]
        return (torch.arange(lk)[None, :] < lengths[:, None])[:, None, None, :]
    raise ValueError(kind)


MASKS = ["none", "bool", "additive", "additive_inf", "causal", "key_padding"]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("lq,lk", [(37, 37), (37, 53), (53, 8)])
def test_backend_matches_math(backend, mask_kind, lq, lk):
    q, k, v = qkv(lq=lq, lk=lk)
    mask = make_mask(mask_kind, lq=lq, lk=lk)
    expected = attention(q, k, v, mask=mask, backend="math")
    out = attention(q, k, v, mask=mask, backend=backend)
    assert out.shape == (2, 3, lq, 16)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_math_matches_textbook_formula():
    q, k, v = qkv(lq=5, lk=7)
    bias = torch.randn(5, 7)
    scores = q @ k.transpose(-2, -1) / 4.0 + bias  # scale 1/sqrt(16)
    expected = scores.softmax(-1) @ v
    torch.testing.assert_close(attention(q, k, v, mask=bias, backend="math"), expected)


@pytest.mark.parametrize("backend", FAST_BACKENDS + ["math"])
def test_custom_scale(backend):
    q, k, v = qkv()
    expected = (q @ k.transpose(-2, -1) * 0.3).softmax(-1) @ v
    out = attention(q, k, v, scale=0.3, backend=backend)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", FAST_BACKENDS + ["math"])
def test_fully_masked_query_gives_zeros(backend):
    q, k, v = qkv()
    mask = torch.ones(37, 53, dtype=torch.bool)
    mask[4] = False  # query 4 may attend to nothing
    out = attention(q, k, v, mask=mask, backend=backend)
    assert torch.isfinite(out).all()
    assert (out[:, :, 4] == 0).all()


@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive", "causal"])
def test_chunked_with_chunks_not_dividing_lq(monkeypatch, mask_kind):
    q, k, v = qkv(lq=37, lk=53)
    # A budget of 7 query rows: chunks 7, 7, 7, 7, 7, 2.
    monkeypatch.setattr(attention_module, "CHUNKED_MEMORY_BUDGET", 7 * 2 * 3 * 53 * 4)
    assert attention_module.chunk_size_for(q, k) == 7
    mask = make_mask(mask_kind)
    expected = attention(q, k, v, mask=mask, backend="math")
    out = attention(q, k, v, mask=mask, backend="chunked")
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_chunk_size_follows_budget():
    q, k, _ = qkv(batch=1, heads=2, lq=16384, lk=16384, dim=1)
    rows = attention_module.chunk_size_for(q, k, budget=64 * 2**20)
    assert rows == 512  # 64 MiB / (1 * 2 * 16384 keys * 4 bytes)
    assert attention_module.chunk_size_for(q, k, budget=1) == 1  # never below one row


@pytest.mark.parametrize("mask_kind", ["none", "additive", "key_padding"])
def test_chunked_gradients_match_math(monkeypatch, mask_kind):
    monkeypatch.setattr(attention_module, "CHUNKED_MEMORY_BUDGET", 5 * 2 * 3 * 53 * 4)
    grads = {}
    for backend in ("math", "chunked"):
        q, k, v = (t.requires_grad_() for t in qkv())
        out = attention(q, k, v, mask=make_mask(mask_kind), backend=backend)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[backend] = (q.grad, k.grad, v.grad)
    for got, expected in zip(grads["chunked"], grads["math"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask_kind", MASKS)
def test_tiled_with_tiles_not_dividing_lq(monkeypatch, mask_kind):
    """Tiles of 5 queries over 37 (the last one short); every mask kind, empty rows too."""
    monkeypatch.setattr(attention_module, "TILE_BYTES", 5 * 53 * 4)
    q, k, v = qkv()
    mask = make_mask(mask_kind)
    expected = attention(q, k, v, mask=mask, backend="math")
    torch.testing.assert_close(attention(q, k, v, mask=mask, backend="tiled"), expected,
                               atol=1e-5, rtol=1e-5)


def test_tiled_under_autograd_gives_math_gradients():
    grads = {}
    for backend in ("math", "tiled"):
        q, k, v = (t.requires_grad_() for t in qkv())
        attention(q, k, v, mask=make_mask("causal"), backend=backend).square().sum().backward()
        grads[backend] = (q.grad, k.grad, v.grad)
    for got, expected in zip(grads["tiled"], grads["math"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_tiled_compiles_as_one_op():
    """torch.compile keeps the custom op whole (fullgraph: no graph break) and matches."""
    q, k, v = qkv()
    compiled = torch.compile(lambda q, k, v: attention(q, k, v, backend="tiled"),
                             fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(q, k, v), attention(q, k, v, backend="math"),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "chunked", "tiled"])
def test_bfloat16_close_to_math(backend):
    q, k, v = (t.bfloat16() for t in qkv())
    out = attention(q, k, v, backend=backend)
    assert out.dtype == torch.bfloat16
    expected = attention(q.float(), k.float(), v.float(), backend="math")
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)


# ---------------------------------------------------------------------------- selection


def test_default_is_sdpa():
    assert get_attention_backend() == "sdpa"
    assert {"sdpa", "chunked", "math"} <= set(available_attention_backends())


def test_precedence_call_over_global_over_env(monkeypatch):
    monkeypatch.setenv("MMGEN_ATTENTION", "chunked")
    assert get_attention_backend() == "chunked"
    set_attention_backend("math")
    assert get_attention_backend() == "math"
    set_attention_backend(None)
    assert get_attention_backend() == "chunked"
    monkeypatch.delenv("MMGEN_ATTENTION")
    assert get_attention_backend() == "sdpa"


def test_which_backend_runs(monkeypatch):
    """Spy on torch's sdpa to see which backend a call actually used."""
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q, k, v = qkv()
    attention(q, k, v)
    assert len(calls) == 1  # default: sdpa
    monkeypatch.setenv("MMGEN_ATTENTION", "math")
    attention(q, k, v)
    assert len(calls) == 1  # env var: math
    set_attention_backend("sdpa")
    attention(q, k, v)
    assert len(calls) == 2  # global beats env var
    attention(q, k, v, backend="chunked")
    assert len(calls) == 2  # per-call beats global


def test_unknown_backend_raises(monkeypatch):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="Valid backends: sdpa, xformers, chunked, tiled, math"):
        attention(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="set_attention_backend"):
        set_attention_backend("flash")
    monkeypatch.setenv("MMGEN_ATTENTION", "flash")
    with pytest.raises(ValueError, match="MMGEN_ATTENTION"):
        attention(q, k, v)


@pytest.mark.skipif("xformers" in available_attention_backends(), reason="xformers usable here")
def test_xformers_unavailable_raises_clear_error():
    q, k, v = qkv()
    with pytest.raises((RuntimeError, ValueError), match="xformers.*(pip install|CUDA)"):
        attention(q, k, v, backend="xformers")


def test_bad_shapes_raise():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(q, k, v, mask=torch.ones(2, 37, 53, dtype=torch.bool))  # (B, Lq, Lk)
    with pytest.raises(ValueError, match=r"\(B, H, L, D\)"):
        attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="incompatible shapes"):
        attention(q, k[..., :8], v)
    with pytest.raises(ValueError, match="bool"):
        attention(q, k, v, mask=torch.ones(37, 53, dtype=torch.long))
