"""DiT checkpoints -> :class:`mmgen.dit.DiT`: the official facebookresearch/DiT files and
diffusers' ``DiTTransformer2DModel``.

mmgen's DiT keeps the official parameter names, so the released ``DiT-XL-2-256x256.pt`` /
``DiT-XL-2-512x512.pt`` (a raw state dict) load as they are: :func:`load_dit_checkpoint`
only reads the configuration from the tensor shapes. diffusers restructured the network, and
:func:`dit_from_diffusers` maps it back with an explicit key map (every key and shape checked
by :func:`~mmgen.interop.convert.convert_state_dict`)::

    diffusers DiTTransformer2DModel                  official DiT (mmgen)
    pos_embed.proj                                   x_embedder.proj
    (not stored: a fixed sin-cos table)              pos_embed            (1, N, D)
    transformer_blocks.0.norm1.emb
        .timestep_embedder.linear_1 / linear_2       t_embedder.mlp.0 / mlp.2
        .class_embedder.embedding_table              y_embedder.embedding_table
    transformer_blocks.i.norm1.emb (i > 0)           (dropped: copies of block 0's, checked)
    transformer_blocks.i.norm1.linear                blocks.i.adaLN_modulation.1
    transformer_blocks.i.attn1.to_q / to_k / to_v    blocks.i.attn.qkv    (cat on dim 0)
    transformer_blocks.i.attn1.to_out.0              blocks.i.attn.proj
    transformer_blocks.i.ff.net.0.proj / net.2       blocks.i.mlp.fc1 / fc2
    proj_out_1 / proj_out_2                          final_layer.adaLN_modulation.1 / linear

diffusers gives every block its own timestep + class embedder where the official model shares
one; a diffusers DiT converts only if all blocks hold the same one (true of every converted
release). Two numerics differ in diffusers' DiT, and mmgen computes the official model's: the
timestep frequencies (diffusers: ``exp(-ln(10^4) i / 127)``, official: ``/ 128``) and the
epsilon of the MLP's LayerNorm (diffusers' ``norm_eps``, 1e-5 by default; official: 1e-6).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmgen.checkpoint import load_safetensors, load_state_dict, read_json, safe_torch_load
from mmgen.dit.model import PRESETS, DiT, DiTConfig
from mmgen.interop.convert import Rename, convert_state_dict, regex_rename
from mmgen.nn.embeddings import sincos_2d

DIT_CLASSES = ("DiTTransformer2DModel", "Transformer2DModel")  # the latter: older releases
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                     "diffusion_pytorch_model.fp16.safetensors")
# The paper's Table 1: hidden size -> attention heads (S, B, L, XL). Not readable from shapes.
PAPER_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}

# diffusers options: option -> accepted values (the first is diffusers' default). Others
# build a network the official DiT does not have.
DIFFUSERS_FIXED: dict[str, tuple[Any, ...]] = {
    "norm_type": ("ada_norm_zero",),
    "activation_fn": ("gelu-approximate",),
    "attention_bias": (True,),
    "norm_elementwise_affine": (False,),
    "num_vector_embeds": (None,),  # Transformer2DModel's other input kinds and options
    "cross_attention_dim": (None,),
    "only_cross_attention": (False,),
    "double_self_attention": (False,),
    "caption_channels": (None,),
    "attention_type": ("default",),
    "use_additional_conditions": (None, False),
}
# Options that do not change the official network: dropout (inference), GroupNorm groups
# (unused by patch inputs), fp32 attention (numerics), diffusers' MLP LayerNorm epsilon (mmgen
# keeps the official 1e-6: see the module docstring), linear projection (no effect on patches).
DIFFUSERS_IGNORED = ("dropout", "norm_num_groups", "upcast_attention", "norm_eps",
                     "use_linear_projection", "interpolation_scale")
_DIFFUSERS_MAPPED = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                     "num_layers", "sample_size", "patch_size", "num_embeds_ada_norm")

_EMB = "transformer_blocks.0.norm1.emb."
_RENAME = regex_rename([
    (r"^pos_embed\.proj\.", "x_embedder.proj."),
    (r"^transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.linear_1\.", "t_embedder.mlp.0."),
    (r"^transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.linear_2\.", "t_embedder.mlp.2."),
    (r"^transformer_blocks\.0\.norm1\.emb\.class_embedder\.", "y_embedder."),
    (r"^transformer_blocks\.\d+\.norm1\.emb\.", ""),  # the other blocks' copies (checked)
    (r"^transformer_blocks\.(\d+)\.norm1\.linear\.", r"blocks.\1.adaLN_modulation.1."),
    (r"^transformer_blocks\.(\d+)\.attn1\.qkv\.", r"blocks.\1.attn.qkv."),  # fused below
    (r"^transformer_blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.attn.proj."),
    (r"^transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.", r"blocks.\1.mlp.fc1."),
    (r"^transformer_blocks\.(\d+)\.ff\.net\.2\.", r"blocks.\1.mlp.fc2."),
    (r"^proj_out_1\.", "final_layer.adaLN_modulation.1."),
    (r"^proj_out_2\.", "final_layer.linear."),
])


# ----------------------------------------------------------------------------- diffusers


def dit_from_diffusers(source: Any, *, dtype: torch.dtype | None = None) -> DiT:
    """The mmgen (official) DiT of a diffusers ``DiTTransformer2DModel``, in eval mode.

    Args:
        source: an in-memory ``DiTTransformer2DModel`` (weights copied; the source is left
            untouched), or its folder (``config.json`` + ``diffusion_pytorch_model
            .safetensors`` or ``.bin``, read safely, without importing diffusers).
        dtype: dtype of the returned model; None keeps the source's.

    Raises:
        ValueError: not a class-conditional DiT, an option mmgen does not model (named), or
            blocks whose timestep/class embedders differ.
        mmgen.interop.KeyMapError: the weights do not fit the config (keys/shapes listed).
    """
    if isinstance(source, (str, os.PathLike)):
        config, state = _read_diffusers_folder(Path(source))
    elif hasattr(source, "config") and hasattr(source, "state_dict"):
        config = {"_class_name": type(source).__name__, **dict(source.config)}
        state = {k: v.detach().clone() for k, v in source.state_dict().items()}
    else:
        raise TypeError(f"dit_from_diffusers takes a diffusers DiTTransformer2DModel or the "
                        f"path of its folder; got {type(source).__name__}")
    return dit_from_diffusers_state_dict(state, config, dtype=dtype)


def dit_from_diffusers_state_dict(state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                                  *, dtype: torch.dtype | None = None) -> DiT:
    """The mmgen DiT of a diffusers-named DiT state dict and its diffusers config dict (see
    :func:`dit_from_diffusers`); the model takes the given tensors (no copy) unless ``dtype``
    asks for a conversion."""
    mm_config = dit_config_from_diffusers(config)
    state = _shared_embedders(dict(state), mm_config.depth)
    state = _fuse_qkv(state, mm_config.depth)
    state = {k: v for k, v in state.items() if k != "pos_embed.pos_embed"}  # recomputed
    grid = mm_config.input_size // mm_config.patch_size
    device = next(iter(state.values())).device
    state["pos_embed"] = sincos_2d(mm_config.hidden_size, grid, grid)[None].to(device)  # (1, N, D)
    return _build(mm_config, state, _RENAME, dtype)


def dit_config_from_diffusers(cfg: Mapping[str, Any]) -> DiTConfig:
    """The :class:`DiTConfig` of a diffusers ``DiTTransformer2DModel`` config dict (or of an
    older ``Transformer2DModel`` one with ``norm_type="ada_norm_zero"``).

    Raises:
        ValueError: not a class-conditional DiT, or an option that changes the network.
    """
    name = cfg.get("_class_name", DIT_CLASSES[0])
    if name not in DIT_CLASSES:
        raise ValueError(f"expected a diffusers {DIT_CLASSES[0]} config, got _class_name="
                         f"{name!r}")
    for key, value in cfg.items():
        if key.startswith("_") or key in DIFFUSERS_IGNORED or key in _DIFFUSERS_MAPPED:
            continue
        allowed = DIFFUSERS_FIXED.get(key)
        if allowed is not None and value not in allowed:
            raise ValueError(f"{name} option {key}={value!r} is not supported (supported: "
                             f"{', '.join(map(repr, allowed))}); mmgen converts the "
                             "class-conditional DiT of Peebles & Xie (adaLN-Zero) only")
        if allowed is None and value not in (None, False):
            raise ValueError(f"unknown {name} option {key}={value!r}: mmgen cannot tell "
                             "whether it changes the architecture, so it refuses to guess")
    for key in ("patch_size", "num_embeds_ada_norm"):
        if cfg.get(key, 1) is None:
            raise ValueError(f"{name} with {key}=None is not a class-conditional DiT")
    heads = int(cfg.get("num_attention_heads", 16))
    head_dim = int(cfg.get("attention_head_dim", 72))
    in_channels = int(cfg.get("in_channels", 4))
    out_channels = cfg.get("out_channels") or in_channels
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"{name} out_channels={out_channels} must be in_channels "
                         f"({in_channels}) or twice that (learned sigma)")
    size = cfg.get("sample_size", 32)
    if not isinstance(size, int):
        raise ValueError(f"{name} sample_size={size!r}: mmgen's DiT takes one (square) side")
    return DiTConfig(input_size=size,
                     patch_size=int(cfg.get("patch_size", 2)), in_channels=in_channels,
                     hidden_size=heads * head_dim, depth=int(cfg.get("num_layers", 28)),
                     num_heads=heads, num_classes=int(cfg.get("num_embeds_ada_norm", 1000)),
                     learn_sigma=out_channels == 2 * in_channels)


def _read_diffusers_folder(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, state dict) of a diffusers component folder, read safely."""
    path = path.parent if path.suffix == ".json" else path
    weights = next((path / n for n in DIFFUSERS_WEIGHTS if (path / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{path} is not a diffusers DiT folder: no config.json with "
                                f"{' or '.join(DIFFUSERS_WEIGHTS[:2])}")
    return read_json(path / "config.json"), load_state_dict(weights)


def _shared_embedders(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """``state`` after checking that every block's timestep and class embedders equal block
    0's (the official model has one of each, shared by all blocks)."""
    keys = sorted(k for k in state if k.startswith(_EMB))
    parts = {"timestep": [k for k in keys if ".timestep_embedder." in k],
             "class": [k for k in keys if ".class_embedder." in k]}
    for part, part_keys in parts.items():
        if not part_keys:
            raise ValueError(f"this diffusers DiT has no {part} embedder in block 0 "
                             f"({_EMB}{part}_embedder.*): not a class-conditional DiT")
        for i in range(1, depth):
            for key in part_keys:
                other = state.get(key.replace(".0.", f".{i}.", 1))  # transformer_blocks.i.
                if other is None or not torch.equal(other, state[key]):
                    raise ValueError(
                        f"block {i}'s {part} embedder differs from block 0's: this DiT cannot "
                        f"be expressed with the official shared embedders (t_embedder, "
                        f"y_embedder); every released DiT holds copies of one embedder (first "
                        f"difference: {key.replace('.0.', f'.{i}.', 1)})")
    return state


def _fuse_qkv(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """diffusers' separate to_q / to_k / to_v -> the official fused ``qkv`` (rows q, k, v)."""
    for i in range(depth):
        prefix = f"transformer_blocks.{i}.attn1."
        for kind in ("weight", "bias"):
            names = [f"{prefix}to_{p}.{kind}" for p in "qkv"]
            missing = [n for n in names if n not in state]
            if missing:
                raise ValueError(f"this diffusers DiT lacks {', '.join(missing)}")
            q, k, v = (state.pop(n) for n in names)
            if not q.shape == k.shape == v.shape:
                raise ValueError(f"{prefix}to_q/to_k/to_v.{kind} differ in shape: "
                                 f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
            state[f"{prefix}qkv.{kind}"] = torch.cat([q, k, v])  # (3D, D) / (3D,)
    return state


# ----------------------------------------------------------------------------- official


def load_dit_checkpoint(path: str | os.PathLike, *, num_heads: int | None = None,
                        dtype: torch.dtype = torch.float32) -> DiT:
    """A DiT from an official facebookresearch/DiT checkpoint, in eval mode.

    Reads ``DiT-XL-2-256x256.pt`` / ``-512x512.pt`` (a raw state dict), a training
    checkpoint ``{"model": ..., "ema": ...}`` (the EMA weights are taken, as the released
    models are), or a ``.safetensors`` with the same keys, safely (``torch.load`` with
    ``weights_only=True``). The configuration is read from the shapes: width, patch size,
    channels, depth, classes (table rows - 1, the "no class" row), learned sigma, latent side.

    Args:
        path: the checkpoint file.
        num_heads: attention heads, which the shapes do not tell; default: the paper's for
            its widths (6 for 384, 12 for 768, 16 for 1024 and 1152).
        dtype: dtype of the returned model.

    Raises:
        ValueError: not a class-conditional DiT state dict (says what was found), or a width
            outside the paper's without ``num_heads``.
        mmgen.checkpoint.UnsafeCheckpointError: a pickle that needs code to load.
    """
    path = Path(path)
    state = _read_official(path)
    config = dit_config_from_state_dict(state, num_heads=num_heads, source=str(path))
    return _build(config, state, lambda k: k, dtype)


def dit_config_from_state_dict(state: Mapping[str, torch.Tensor], *,
                               num_heads: int | None = None, source: str = "the state dict"
                               ) -> DiTConfig:
    """The :class:`DiTConfig` of an official DiT state dict, read from its shapes (see
    :func:`load_dit_checkpoint`)."""
    required = ("x_embedder.proj.weight", "pos_embed", "final_layer.linear.weight",
                "y_embedder.embedding_table.weight", "blocks.0.mlp.fc1.weight")
    missing = [k for k in required if k not in state]
    if missing:
        hint = (" (it looks like a diffusers DiTTransformer2DModel: use dit_from_diffusers on "
                "its folder)" if any(k.startswith("transformer_blocks.") for k in state) else
                "; expected the official facebookresearch/DiT state dict, e.g. "
                "DiT-XL-2-256x256.pt")
        raise ValueError(f"{source} is not a class-conditional DiT checkpoint: no "
                         f"{', '.join(missing)}{hint}")
    width, in_channels, p, _ = state["x_embedder.proj.weight"].shape  # (D, C, p, p)
    tokens = state["pos_embed"].shape[-2]  # (1, N, D)
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ValueError(f"{source}: pos_embed holds {tokens} positions, not a square grid")
    out, rem = divmod(state["final_layer.linear.weight"].shape[0], p * p)  # (p*p*C_out, D)
    if rem or out not in (in_channels, 2 * in_channels):
        raise ValueError(f"{source}: final_layer.linear makes {out} channels per pixel; "
                         f"expected {in_channels} or {2 * in_channels} (learned sigma)")
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if num_heads is None:
        if width not in PAPER_HEADS:
            raise ValueError(f"{source}: hidden size {width} is not one of the paper's "
                             f"({', '.join(map(str, PAPER_HEADS))}), so the number of attention "
                             "heads is unknown; pass num_heads")
        num_heads = PAPER_HEADS[width]
    return DiTConfig(input_size=grid * p, patch_size=p, in_channels=in_channels,
                     hidden_size=width, depth=depth, num_heads=num_heads,
                     mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / width,
                     num_classes=state["y_embedder.embedding_table.weight"].shape[0] - 1,
                     learn_sigma=out == 2 * in_channels)


def _read_official(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint file; training checkpoints' ``args`` (an
    ``argparse.Namespace``, a plain attribute bag) are allowed, nothing else beyond tensors
    and containers."""
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = safe_torch_load(path)
    if isinstance(obj, dict):
        obj = next((obj[k] for k in ("ema", "model", "state_dict") if isinstance(obj.get(k), dict)),
                   obj)
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path} is not a DiT checkpoint: expected a state dict of tensors "
                         f"(or a training checkpoint with 'ema' / 'model'), found {found}")
    return obj


# ----------------------------------------------------------------------------- common


def _build(config: DiTConfig, state: dict[str, torch.Tensor], rename: Rename,
           dtype: torch.dtype | None) -> DiT:
    """The DiT of ``config`` given the (renamed, checked) tensors of ``state``, built without
    allocating random weights."""
    with torch.device("meta"):
        model = DiT(config)
    state = convert_state_dict(state, model, rename)  # every key and shape checked
    if dtype is None:
        dtype = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.model_name = next((f"dit/{n}" for n, c in PRESETS.items() if c == config), None)
    return model.eval()


