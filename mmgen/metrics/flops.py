"""Model compute per forward pass: multiply-adds (MACs) and FLOPs, attention included.

    count = count_flops(model, x, t, context)  # one forward under torch.no_grad()
    count.macs                                  # multiply-adds; what papers call "Gflops"
    count.flops                                 # floating-point operations = 2 * macs

Conventions:
    * A multiply-add is one MAC and two FLOPs. The "Gflops" of the DiT paper (Peebles & Xie
      2023, Table 4: DiT-XL/2 at 256x256 = 118.6 Gflops) and of fvcore are multiply-adds:
      compare them with ``count.macs``, not ``count.flops``.
    * Only matrix products are counted: linear layers, convolutions, batched matmuls and the
      two matmuls of attention (q k^T and softmax(.) v). Elementwise work (norms,
      activations, softmax, residual adds, the attention scale and mask) is not counted, as
      in the DiT paper and fvcore. Masked or causal attention counts the full (Lq, Lk) score
      matrix, since that is what every backend computes.

How it counts: ``torch.utils.flop_counter.FlopCounterMode`` with torch's own formulas
(``2 * m * n * k`` per matmul). Attention is counted exactly once whichever backend
:func:`mmgen.nn.attention` uses. The "math" and "chunked" backends run plain matmuls
(``aten.bmm``), which torch counts. The "sdpa" backend on the CPU runs the fused kernel
``aten._scaled_dot_product_flash_attention_for_cpu``, which torch's counter has no formula
for (checked with torch 2.14.1): an ``F.scaled_dot_product_attention`` call on the CPU
counts zero FLOPs in forward and in backward. :data:`SDPA_FLOP_FORMULAS` adds torch's own
attention formulas for that op (and for the MPS one). For DiT-XL/2 at 256x256 this gives
118.62 G MACs with every backend; torch's counter alone gives 114.39 G with "sdpa" (it
drops the 4.23 G of attention). Meta-device models decompose sdpa
into counted matmuls, so they can be counted without allocating weights::

    with torch.device("meta"):
        model = mmgen.create_model("unet/sd15")
    count_flops(model, x.to("meta"), t.to("meta"), context.to("meta")).macs

``FlopCount.by_operator`` therefore names ``aten.bmm`` for the math backends and
``aten._scaled_dot_product_flash_attention_for_cpu`` for sdpa, with the same total.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

import mmgen.nn.attention  # noqa: F401  (registers torch.ops.mmgen.tiled_attention)

aten = torch.ops.aten


def _sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
                        ) -> int:
    """q k^T and softmax(.) v for q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                         out_shape=None, **kwargs) -> int:
    """torch's fused-attention backward: recomputes q k^T, then four gradient matmuls."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# Fused attention ops that torch's FlopCounterMode has no formula for. Each takes
# (query, key, value, ...) first, like the CUDA flash/efficient ops torch does count; the
# backward takes (grad_out, query, key, value, ...). Pass this as
# FlopCounterMode(custom_mapping=SDPA_FLOP_FORMULAS) to count a training step yourself.
# Should torch gain its own formula, ours replaces it (same key), so nothing counts twice.
_FORWARD_OPS = ("_scaled_dot_product_flash_attention_for_cpu",
                "_scaled_dot_product_attention_math_for_mps")
_BACKWARD_OPS = ("_scaled_dot_product_flash_attention_for_cpu_backward",)
SDPA_FLOP_FORMULAS: dict[Any, Any] = {
    **{getattr(aten, name): _sdpa_forward_flops
       for name in _FORWARD_OPS if hasattr(aten, name)},
    **{getattr(aten, name): _sdpa_backward_flops
       for name in _BACKWARD_OPS if hasattr(aten, name)},
    # mmgen's "tiled" backend: one custom op whose inner matmuls the counter does not see
    torch.ops.mmgen.tiled_attention: _sdpa_forward_flops,
}


@dataclass(frozen=True)
class FlopCount:
    """Compute of one forward pass, from :func:`count_flops`."""

    flops: int  # floating-point operations, 2 per multiply-add
    by_operator: dict[str, int]  # FLOPs per aten op, e.g. {"aten.addmm": ..., "aten.bmm": ...}
    by_module: dict[str, int]  # FLOPs per module (with its children), named as in named_modules()

    @property
    def macs(self) -> int:
        """Multiply-adds: the "Gflops" of the DiT paper and of fvcore (times 1e9)."""
        return self.flops // 2  # every counted op is a matmul or conv: exactly 2 FLOPs per MAC

    def __str__(self) -> str:
        return f"{self.macs / 1e9:.2f} GMACs ({self.flops / 1e9:.2f} GFLOPs)"


def count_flops(model: Callable[..., Any], *args: Any, **kwargs: Any) -> FlopCount:
    """Run ``model(*args, **kwargs)`` once under ``torch.no_grad()`` and count its FLOPs.

    The model is used as it is (train/eval mode, device, dtype, attention backend); only
    matmuls and convolutions are counted, see the module docstring.

    Args:
        model: the module to run; ``by_module`` names are relative to it. Any callable
            works too (``model.encode_text``, ``F.scaled_dot_product_attention``); its
            ``by_module`` keeps torch's names, rooted at each outermost module's class name.
        *args: positional inputs of ``model``, e.g. ``x, t, y`` for DiT.
        **kwargs: keyword inputs of ``model``.

    Returns:
        A :class:`FlopCount`; ``.macs`` is the number papers report as "Gflops" (x 1e9).
    """
    counter = FlopCounterMode(display=False, custom_mapping=SDPA_FLOP_FORMULAS)
    with torch.no_grad(), counter:
        model(*args, **kwargs)
    counts = counter.get_flop_counts()  # {"Global": {op: n}, "UNet": ..., "UNet.conv_in": ...}
    total = counts.get("Global", {})
    by_module = {}
    for name, ops in counts.items():
        if name == "Global":
            continue
        if isinstance(model, nn.Module):
            name = name.partition(".")[2]  # torch roots names at the class: "UNet.conv_in"
        by_module[name] = sum(ops.values())
    return FlopCount(
        flops=sum(total.values()),
        by_operator={str(op): n for op, n in total.items()},
        by_module=by_module,
    )
