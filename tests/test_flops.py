"""mmgen.metrics.flops: analytic counts for linear, conv and attention, on every CPU backend."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mmgen
from mmgen.metrics import FlopCount, count_flops
from mmgen.metrics.flops import SDPA_FLOP_FORMULAS
from mmgen.nn import Attention, available_attention_backends, set_attention_backend

CPU_BACKENDS = [name for name in available_attention_backends() if name != "xformers"]


pytestmark = pytest.mark.usefixtures("clean_attention_backend")


def torch_count(model, *args):
    """torch's counter without our attention formulas: the reference where sdpa is absent."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    return counter.get_total_flops()


def test_linear_macs_are_n_a_b():
    n, a, b = 5, 7, 11
    count = count_flops(nn.Linear(a, b), torch.randn(n, a))
    assert isinstance(count, FlopCount)
    assert count.macs == n * a * b
    assert count.flops == 2 * n * a * b
    assert count.by_operator == {"aten.addmm": 2 * n * a * b}


def test_conv2d_matches_analytic_count():
    n, c_in, c_out, k, h, w = 2, 3, 8, 3, 9, 10
    conv = nn.Conv2d(c_in, c_out, kernel_size=k, stride=2, padding=1)
    count = count_flops(conv, torch.randn(n, c_in, h, w))
    h_out, w_out = (h + 2 - k) // 2 + 1, (w + 2 - k) // 2 + 1  # 5, 5
    assert count.macs == n * c_out * h_out * w_out * c_in * k * k  # bias add not counted


def test_cpu_sdpa_is_counted_once():
    """torch alone counts 0 for CPU sdpa (a fused op it has no formula for); we count it."""
    b, h, lq, lk, d = 2, 3, 5, 7, 4
    q, k, v = torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, d)
    expected_macs = b * h * lq * lk * d * 2  # q k^T and softmax(.) v
    count = count_flops(F.scaled_dot_product_attention, q, k, v)
    assert count.macs == expected_macs
    mask = torch.rand(lq, lk) > 0.5
    assert count_flops(F.scaled_dot_product_attention, q, k, v, attn_mask=mask).macs == (
        expected_macs)


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_attention_block_is_analytic_and_same_for_every_backend(cross):
    batch, heads, head_dim, length, dim, ctx_len, ctx_dim = 2, 4, 8, 16, 24, 5, 12
    block = Attention(dim, context_dim=ctx_dim if cross else None, heads=heads,
                      head_dim=head_dim)
    x = torch.randn(batch, length, dim)
    context = torch.randn(batch, ctx_len, ctx_dim) if cross else None
    keys, kv_dim = (ctx_len, ctx_dim) if cross else (length, dim)
    inner = heads * head_dim
    projections = batch * (length * dim * inner  # to_q
                           + 2 * keys * kv_dim * inner  # to_k, to_v
                           + length * inner * dim)  # to_out
    scores_and_values = 2 * batch * heads * length * keys * head_dim  # q k^T + softmax(.) v

    counts = {}
    for backend in CPU_BACKENDS:
        set_attention_backend(backend)
        counts[backend] = count_flops(block, x, context).macs
    assert {"math", "sdpa"} <= set(counts)
    assert counts == {name: projections + scores_and_values for name in CPU_BACKENDS}


def test_unet_tiny_is_stable_and_matches_torch_without_sdpa():
    torch.manual_seed(0)
    model = mmgen.create_model("unet/tiny").eval()
    x, context = torch.randn(1, 4, 16, 16), torch.randn(1, 7, 32)
    t = torch.tensor([10])

    set_attention_backend("math")  # plain matmuls: torch's counter is the reference
    math = count_flops(model, x, t, context)
    assert math.flops > 0
    assert math.flops == torch_count(model, x, t, context)
    assert math.by_module[""] == math.flops
    assert 0 < math.by_module["conv_in"] < math.flops

    set_attention_backend("sdpa")  # torch alone misses the attention; we do not
    first, second = count_flops(model, x, t, context), count_flops(model, x, t, context)
    assert first == second
    assert first.flops == math.flops
    assert torch_count(model, x, t, context) < first.flops


def test_meta_device_gives_the_same_count():
    torch.manual_seed(0)
    model = mmgen.create_model("unet/tiny")
    x, t, context = torch.randn(2, 4, 16, 16), torch.tensor([3, 7]), torch.randn(2, 7, 32)
    with torch.device("meta"):
        meta_model = mmgen.create_model("unet/tiny")
    meta = count_flops(meta_model, x.to("meta"), t.to("meta"), context.to("meta"))
    assert meta.flops == count_flops(model, x, t, context).flops


def test_training_step_formulas_count_sdpa_backward():
    """SDPA_FLOP_FORMULAS also covers the CPU backward: torch's fused-attention rule, which
    recomputes q k^T (5 matmuls) where the math backend's autograd runs 4."""
    b, h, l, d = 1, 2, 6, 4
    q, k, v = (torch.randn(b, h, l, d, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False, custom_mapping=SDPA_FLOP_FORMULAS) as counter:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    matmul = 2 * b * h * l * l * d
    assert counter.get_total_flops() == 2 * matmul + 5 * matmul


@pytest.mark.parametrize("name, paper", [("dit/xl-2", 118.64), ("dit/s-2", 6.06),
                                         ("dit/xl-8", 7.39)])
def test_dit_counts_the_papers_gflops(name, paper):
    """The DiT paper's "Gflops" (Table 4, 256x256) are multiply-adds per forward, attention
    included (torch's counter alone misses it on the CPU: 114.4 G for XL/2)."""
    with torch.device("meta"):  # 675 M parameters, nothing allocated
        model = mmgen.create_model(name)
        x, t, y = torch.randn(1, 4, 32, 32), torch.tensor([500]), torch.tensor([207])
    macs = count_flops(model, x, t, y).macs / 1e9
    assert abs(macs - paper) / paper < 0.01, macs
