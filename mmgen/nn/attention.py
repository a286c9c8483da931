"""Scaled dot-product attention with interchangeable backends.

Every model in mmgen calls the one function `attention(q, k, v, mask=..., backend=...)`;
the backend only changes how the same number is computed (speed and memory), never the
result beyond float rounding.

Backends:
    "sdpa"      torch.nn.functional.scaled_dot_product_attention (the default): fused
                flash / memory-efficient kernels where torch has them, on CPU and GPU.
    "xformers"  xformers.ops.memory_efficient_attention. CUDA tensors only, and only when
                the optional dependency is installed: `pip install 'mmgen[xformers]'`.
    "chunked"   exact attention computed a block of queries at a time, so the score matrix
                held at once is (chunk, Lk) instead of (Lq, Lk). For long sequences on small
                machines, and on devices where sdpa has no memory-efficient kernel.
    "tiled"     exact attention one (batch, head) and one tile of queries at a time, a tile's
                scores sized to stay in cache, with matmuls in the inputs' own dtype: the
                fast path's choice on CPUs, where torch's flash kernel computes bf16 in fp32
                (1.8x faster at 4,096 tokens in bf16; benchmarks/attention.py). The softmax
                probabilities are rounded to the input dtype before the second matmul, so in
                bf16 it is a little less exact than sdpa. Under autograd it runs "chunked".
    "math"      the plain formula softmax(q k^T * scale + mask) v; the reference the other
                backends are tested against.

Which backend runs, first match wins:
    1. the `backend=` argument of the call,
    2. `set_attention_backend(name)` (process-wide; `set_attention_backend(None)` resets),
    3. the environment variable MMGEN_ATTENTION,
    4. "sdpa".
"""

from __future__ import annotations

import importlib
import os

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

BACKENDS = ("sdpa", "xformers", "chunked", "tiled", "math")
DEFAULT_BACKEND = "sdpa"
ENV_VAR = "MMGEN_ATTENTION"

# Upper bound, in bytes, on one chunk's score matrix in the "chunked" backend. A chunk holds
# its scores and their softmax at the same time, so its peak is about twice this. 64 MiB
# keeps 16k-token attention over 10x below "math" while chunks stay large enough to be fast.
CHUNKED_MEMORY_BUDGET = 64 * 2**20

# Bytes of one query tile's scores in the "tiled" backend: small enough for a core's L2
# cache (512 queries x 4,096 keys in bf16), so the softmax reads what the matmul just wrote.
TILE_BYTES = 4 * 2**20

_global_backend: str | None = None


# ----------------------------------------------------------------------------------------
# Backend selection
# ----------------------------------------------------------------------------------------


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(
            f"Unknown attention backend {name!r} (from {source}). "
            f"Valid backends: {', '.join(BACKENDS)}."
        )
    return name


def set_attention_backend(name: str | None) -> None:
    """Set the process-wide default attention backend.

    Args:
        name: one of "sdpa", "xformers", "chunked", "math"; or None to go back to the
            MMGEN_ATTENTION environment variable (or "sdpa" when it is unset).
    """
    global _global_backend
    _global_backend = None if name is None else _check_name(name, "set_attention_backend")


def get_attention_backend() -> str:
    """Return the backend `attention()` uses when the call does not name one."""
    if _global_backend is not None:
        return _global_backend
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check_name(env, f"the {ENV_VAR} environment variable")
    return DEFAULT_BACKEND


def _xformers_ops():
    """Import and return `xformers.ops`, or None when xformers is not installed."""
    try:
        return importlib.import_module("xformers.ops")
    except ImportError:
        return None


def available_attention_backends() -> list[str]:
    """Backends that can run on this machine ("xformers" needs the package and a CUDA GPU)."""
    usable = ["sdpa"]
    if torch.cuda.is_available() and _xformers_ops() is not None:
        usable.append("xformers")
    return usable + ["chunked", "tiled", "math"]


# ----------------------------------------------------------------------------------------
# The public function
# ----------------------------------------------------------------------------------------


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    backend: str | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Multi-head scaled dot-product attention: softmax(q k^T * scale + mask) v.

    Args:
        q: queries, shape (B, H, Lq, D).
        k: keys, shape (B, H, Lk, D).
        v: values, shape (B, H, Lk, Dv).
        mask: optional, broadcastable to (B, H, Lq, Lk). Either bool (True = the query may
            attend to that key) or float (added to the scores; use -inf to block). A query
            that may attend to no key gets a zero output. Example key-padding mask of shape
            (B, Lk): pass `mask[:, None, None, :]`.
        backend: "sdpa", "xformers", "chunked", "tiled" or "math"; None uses
            `get_attention_backend()` (see the module docstring for the precedence).
        scale: multiplier of q k^T; defaults to 1 / sqrt(D).

    Returns:
        Tensor of shape (B, H, Lq, Dv) in the dtype of q.
    """
    name = get_attention_backend() if backend is None else _check_name(backend, "backend=")
    _check_shapes(q, k, v, mask)
    scale = q.shape[-1] ** -0.5 if scale is None else scale

    if name == "sdpa":
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)  # sdpa wants a float mask in the query dtype
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if name == "xformers":
        return _xformers_attention(q, k, v, mask, scale)
    if name == "chunked":
        return _chunked_attention(q, k, v, mask, scale)
    if name == "tiled":
        if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            return _chunked_attention(q, k, v, mask, scale)
        return torch.ops.mmgen.tiled_attention(q, k, v, mask, scale)
    return _math_attention(q, k, v, mask, scale)


def _check_shapes(q, k, v, mask) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention() expects q, k, v of shape (B, H, L, D); got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}. Split heads first, e.g. "
            "x.view(B, L, H, D).transpose(1, 2)."
        )
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"attention() got incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}: need q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv)."
        )
    if mask is None:
        return
    target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])  # (B, H, Lq, Lk)
    fits = mask.ndim <= 4 and all(
        m in (1, t) for m, t in zip(reversed(mask.shape), reversed(target), strict=False)
    )
    if not fits:
        raise ValueError(
            f"attention mask of shape {tuple(mask.shape)} does not broadcast to "
            f"(B, H, Lq, Lk) = {target}. Use size 1 for broadcast dims, e.g. a key-padding "
            "mask (B, Lk) as mask[:, None, None, :]."
        )
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(
            f"attention mask must be bool (True = may attend) or float (additive), "
            f"got dtype {mask.dtype}. Convert it with mask.bool()."
        )


# ----------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------


def _math_attention(q, k, v, mask, scale) -> torch.Tensor:
    """The reference formula. Half-precision inputs are computed in float32, then cast back."""
    dtype = q.dtype
    if dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, H, Lq, Lk)
    if mask is None:
        return torch.matmul(scores.softmax(dim=-1), v).to(dtype)  # (B, H, Lq, Dv)
    empty = _mask_scores(scores, mask)  # (B, H, Lq, 1)
    out = torch.matmul(scores.softmax(dim=-1), v)  # (B, H, Lq, Dv)
    return out.masked_fill(empty, 0.0).to(dtype)  # on the small output, not (Lq, Lk)


def chunk_size_for(q: torch.Tensor, k: torch.Tensor, budget: int | None = None) -> int:
    """Queries per chunk so that one chunk's (B, H, chunk, Lk) score block fits the budget.

    Args:
        q: queries, shape (B, H, Lq, D).
        k: keys, shape (B, H, Lk, D).
        budget: bytes for one chunk's scores; defaults to CHUNKED_MEMORY_BUDGET.
    """
    budget = CHUNKED_MEMORY_BUDGET if budget is None else budget
    batch, heads, lk = k.shape[0], k.shape[1], k.shape[2]
    element_size = max(q.element_size(), 4)  # half-precision scores are computed in float32
    return max(1, budget // (batch * heads * lk * element_size))


def _chunked_attention(q, k, v, mask, scale) -> torch.Tensor:
    """Exact attention over blocks of queries: each query row's softmax only needs its own
    scores, so rows can be processed independently and concatenated.

    Under autograd each chunk is checkpointed (recomputed in backward), so training memory
    stays bounded too instead of keeping every chunk's probabilities alive.
    """
    lq = q.shape[2]
    chunk = chunk_size_for(q, k)
    if mask is not None:
        mask = mask[(None,) * (4 - mask.ndim)]  # (b, h, lq or 1, lk or 1)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))

    outputs = []
    for start in range(0, lq, chunk):
        q_chunk = q[:, :, start : start + chunk]  # (B, H, c, D)
        mask_chunk = mask
        if mask is not None and mask.shape[2] != 1:
            mask_chunk = mask[:, :, start : start + chunk]  # (b, h, c, lk)
        if needs_grad:
            out = checkpoint(_math_attention, q_chunk, k, v, mask_chunk, scale, use_reentrant=False)
        else:
            out = _math_attention(q_chunk, k, v, mask_chunk, scale)
        outputs.append(out)  # (B, H, c, Dv)
    return torch.cat(outputs, dim=2)  # (B, H, Lq, Dv)


@torch.library.custom_op("mmgen::tiled_attention", mutates_args=())
def _tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """The "tiled" backend (inference): the (batch, head) pairs in groups, and each group's
    queries in tiles, so that one tile's scores (group, tile, Lk) fit ``TILE_BYTES``; per
    tile softmax(q k^T * scale + mask) v with batched matmuls in q's dtype. Long sequences
    get one head per group and tiles of queries; short key sequences (cross-attention to
    77 text tokens) many heads per group and all queries at once. A torch custom op, so
    that ``torch.compile`` keeps it as one call instead of unrolling its loops."""
    batch, heads, lq, _ = q.shape
    lk = k.shape[2]
    tile = max(1, min(lq, TILE_BYTES // (lk * q.element_size())))
    group = max(1, TILE_BYTES // (tile * lk * q.element_size()))
    q = (q * scale).flatten(0, 1)  # (BH, Lq, D)
    k_t = k.flatten(0, 1).transpose(1, 2)  # (BH, D, Lk)
    v = v.flatten(0, 1)  # (BH, Lk, Dv)
    if mask is not None:
        mask = mask.expand(batch, heads, lq, lk).reshape(batch * heads, lq, lk)
        mask = mask if mask.dtype == torch.bool else mask.to(q.dtype)
    out = q.new_empty(batch * heads, lq, v.shape[2])  # (BH, Lq, Dv)
    for g in range(0, batch * heads, group):
        pairs = slice(g, g + group)
        keys = k_t[pairs].contiguous()  # (G, D, Lk): read by every tile of the group
        for start in range(0, lq, tile):
            rows = slice(start, start + tile)
            scores = torch.bmm(q[pairs, rows], keys)  # (G, tile, Lk)
            empty = None if mask is None else _mask_scores(scores, mask[pairs, rows])
            torch.bmm(scores.softmax(dim=-1), v[pairs], out=out[pairs, rows])
            if empty is not None:
                out[pairs, rows].masked_fill_(empty, 0.0)
    return out.view(batch, heads, lq, -1)


@_tiled_attention.register_fake
def _(q, k, v, mask, scale):
    return q.new_empty(*q.shape[:3], v.shape[3])


def _mask_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply a bool (True = may attend) or additive float mask to ``scores`` (..., Lq, Lk) in
    place, and return which query rows it masks everywhere (..., Lq, 1). A row masked
    everywhere would give NaN (0/0): its scores are set to 0 here (which keeps gradients
    NaN-free) and, like torch's sdpa, the callers give it a zero output. In-place edits are
    safe under autograd: neither the matmul before nor the add needs ``scores`` backward."""
    if mask.dtype == torch.bool:
        scores.masked_fill_(~mask, float("-inf"))
    else:
        scores += mask
    empty = scores.detach().amax(dim=-1, keepdim=True) == float("-inf")
    scores.masked_fill_(empty, 0.0)
    return empty


def _xformers_attention(q, k, v, mask, scale) -> torch.Tensor:
    """xformers.ops.memory_efficient_attention, which wants (B, L, H, D) tensors."""
    xops = _xformers_ops()
    if xops is None:
        raise RuntimeError(
            "Attention backend 'xformers' needs the xformers package, which is not installed. "
            "Install it with `pip install 'mmgen[xformers]'`, or use backend='sdpa'."
        )
    if not q.is_cuda:
        raise ValueError(
            f"Attention backend 'xformers' runs on CUDA tensors only, but q is on {q.device}. "
            "Move the model to a GPU or use backend='sdpa'."
        )
    bias = empty = None
    if mask is not None:
        bias = _xformers_bias(mask, q, k)  # (B, H, Lq, Lk)
        # Queries that may attend to no key: give them finite scores now and a zero output
        # below, as the other backends do, instead of xformers' NaN.
        empty = (bias == float("-inf")).all(dim=-1, keepdim=True)  # (B, H, Lq, 1)
        bias.masked_fill_(empty, 0.0)
    out = xops.memory_efficient_attention(
        q.transpose(1, 2).contiguous(),  # (B, Lq, H, D)
        k.transpose(1, 2).contiguous(),  # (B, Lk, H, D)
        v.transpose(1, 2).contiguous(),  # (B, Lk, H, Dv)
        attn_bias=bias,
        scale=scale,
    )  # (B, Lq, H, Dv)
    out = out.transpose(1, 2)  # (B, H, Lq, Dv)
    return out if empty is None else out.masked_fill(empty, 0.0)


def _xformers_bias(mask, q, k) -> torch.Tensor:
    """An additive (B, H, Lq, Lk) bias in q's dtype, laid out the way xformers requires.

    xformers' kernels take a dense float bias (no bool masks, no broadcast batch/head dims
    in older versions) whose row stride is a multiple of 8 elements. We therefore allocate
    rows padded to a multiple of 8 and slice them back to Lk.
    """
    batch, heads, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    padded = (lk + 7) // 8 * 8
    bias = q.new_zeros(batch, heads, lq, padded)[..., :lk]  # (B, H, Lq, Lk), aligned rows
    if mask.dtype == torch.bool:
        bias.masked_fill_(~mask, float("-inf"))  # mask broadcasts over bias
    else:
        bias.copy_(mask)  # broadcasting copy
    return bias
