"""open_clip / OpenAI CLIP (ViT) -> :class:`mmgen.clip.CLIP`.

mmgen's CLIP keeps OpenAI's parameter names, so the key map only strips wrappers: DDP's
``module.`` prefix, the ``text.`` prefix of open_clip's ``CustomTextCLIP`` layout, and the
metadata entries of OpenAI's files (``input_resolution``, ``context_length``,
``vocab_size``). What this module adds is the *configuration*: read off an in-memory
``open_clip.CLIP`` (its structure) or off a state dict (its shapes, as open_clip's
``build_model_from_openai_state_dict`` does), with every key and shape checked by
:func:`mmgen.interop.convert.load_converted`.

    model = from_open_clip(open_clip.create_model("ViT-B-32", pretrained=None))
    model = from_open_clip("ViT-B-32.safetensors")              # an OpenAI-layout state dict
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmgen.checkpoint import load_state_dict
from mmgen.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig, registered_name
from mmgen.interop.convert import load_converted, regex_rename

# Wrappers around OpenAI's names; everything else is kept as it is.
RENAME = regex_rename([
    (r"^module\.(.+)$", r"\1"),  # saved from DistributedDataParallel
    (r"^text\.(.+)$", r"\1"),  # open_clip CustomTextCLIP layout (text tower under "text.")
    (r"^(input_resolution|context_length|vocab_size)$", ""),  # OpenAI metadata: dropped
    (r"^attn_mask$", ""),  # the causal mask, recomputed
])


def from_open_clip(source: nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike,
                   config: CLIPConfig | None = None, *,
                   activation: str = "quick_gelu") -> CLIP:
    """The mmgen equivalent of an open_clip / OpenAI ViT CLIP, with its weights, in eval mode.

    Args:
        source: an ``open_clip.CLIP`` model (configuration read off its structure), a state
            dict in OpenAI's layout, or the path of one (``.safetensors``, or ``.pt/.bin``
            read with ``torch.load(weights_only=True)``; OpenAI's original TorchScript
            archives must first be re-saved as a state dict).
        config: the mmgen config to load into; None infers it from ``source``.
        activation: for state dicts without ``config`` only (weights do not reveal it):
            "quick_gelu" for OpenAI's weights and open_clip's ``*-quickgelu`` models, "gelu"
            for open_clip's other configs (e.g. LAION ``ViT-B-32``).

    Raises:
        ValueError: an architecture mmgen's CLIP does not have (ResNet towers, attentional
            pooling, layer scale, a text tower from Hugging Face, ...).
        mmgen.interop.KeyMapError: the weights do not fit (keys or shapes listed).
    """
    if isinstance(source, nn.Module):
        config = config or config_from_open_clip_model(source)
        state = source.state_dict()
    else:
        state = source if isinstance(source, Mapping) else _load(source)
    state = {RENAME(k): v for k, v in state.items() if RENAME(k) is not None}
    config = config or config_from_state_dict(state, activation)
    model = CLIP(config)
    load_converted(model, state)
    model.model_name = registered_name(config)
    return model.eval()


# ----------------------------------------------------------------------------- state dicts


def _load(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # torch's "dispatching to torch.jit.load": it does not
            warnings.filterwarnings("ignore", message=".*TorchScript archive")
            return load_state_dict(path)
    except RuntimeError as e:
        if "TorchScript" not in str(e):
            raise
        raise ValueError(
            f"{path} is a TorchScript archive (as OpenAI's released CLIP .pt files are), which "
            "mmgen does not run. In an environment you trust, save its state dict first: "
            "torch.save(torch.jit.load(path, map_location='cpu').state_dict(), 'clip.pt')"
        ) from None


def config_from_state_dict(state: Mapping[str, torch.Tensor],
                           activation: str = "quick_gelu") -> CLIPConfig:
    """A CLIPConfig from the shapes of an OpenAI-layout state dict (heads = width // 64)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            hint = " (a ResNet CLIP such as RN50? mmgen's CLIP has a ViT image tower)" \
                if key.startswith("visual.") and "visual.layer1.0.conv1.weight" in state else ""
            raise ValueError(f"not an OpenAI/open_clip ViT CLIP state dict: no {key!r}{hint}; "
                             f"first keys: {list(state)[:4]}")
        return tuple(state[key].shape)

    width, _, patch, _ = shape("visual.conv1.weight")
    grid = round((shape("visual.positional_embedding")[0] - 1) ** 0.5)
    text_width = shape("ln_final.weight")[0]
    vision = VisionConfig(
        image_size=grid * patch, patch_size=patch, width=width,
        layers=_count_blocks(state, "visual.transformer."), heads=width // 64,
        mlp_ratio=shape("visual.transformer.resblocks.0.mlp.c_fc.weight")[0] / width,
        activation=activation, embed_dim=shape("visual.proj")[1])
    text = TextConfig(
        vocab_size=shape("token_embedding.weight")[0],
        context_length=shape("positional_embedding")[0], width=text_width,
        layers=_count_blocks(state, "transformer."), heads=text_width // 64,
        mlp_ratio=shape("transformer.resblocks.0.mlp.c_fc.weight")[0] / text_width,
        activation=activation, embed_dim=shape("text_projection")[1])
    return _tidy(CLIPConfig(vision, text))


def _count_blocks(state: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"resblocks\.(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def _tidy(config: CLIPConfig) -> CLIPConfig:
    """Round float ratios inferred from shapes (4.0, not 4.000...1) so presets compare equal."""
    for tower in (config.vision, config.text):
        tower.mlp_ratio = float(round(tower.mlp_ratio, 6))
    return config


# ----------------------------------------------------------------------------- models


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"unsupported open_clip model: {what}; mmgen's CLIP has no equivalent")


def config_from_open_clip_model(model: nn.Module) -> CLIPConfig:
    """The CLIPConfig of an in-memory ``open_clip.CLIP`` (refusing variants mmgen lacks)."""
    from open_clip.transformer import QuickGELU, ResidualAttentionBlock, VisionTransformer

    _require(hasattr(model, "token_embedding") and hasattr(model, "visual"),
             f"{type(model).__name__} is not an open_clip.CLIP (CustomTextCLIP / CoCa / "
             "Hugging Face text towers are not supported)")
    visual = model.visual
    _require(isinstance(visual, VisionTransformer), f"image tower {type(visual).__name__}")
    _require(visual.attn_pool is None and visual.pool_type == "tok"
             and not visual.final_ln_after_pool, "attentional or average pooling")
    _require(not isinstance(visual.ln_pre, nn.Identity), "no ln_pre")
    _require(getattr(model, "logit_bias", None) is None, "a logit_bias (SigLIP)")
    _require(model.text_pool_type in ("argmax", "eos"), f"text pool {model.text_pool_type}")
    _require(not isinstance(model.text_projection, nn.Linear), "a text projection with bias")
    blocks = [*visual.transformer.resblocks, *model.transformer.resblocks]
    for block in blocks:
        _require(isinstance(block, ResidualAttentionBlock)
                 and isinstance(block.ls_1, nn.Identity), "custom blocks or layer scale")
        _require(all(ln.eps == 1e-5 for ln in (block.ln_1, block.ln_2)), "LayerNorm eps")
    activations = {isinstance(b.mlp.gelu, QuickGELU) for b in blocks}
    _require(len(activations) == 1, "different activations in the two towers")
    config = config_from_state_dict(model.state_dict(),
                                    "quick_gelu" if activations.pop() else "gelu")
    # Heads are structure, not shapes: read them instead of assuming width // 64.
    config.vision.heads = visual.transformer.resblocks[0].attn.num_heads
    config.text.heads = model.transformer.resblocks[0].attn.num_heads
    config.text.pool = model.text_pool_type
    config.text.eos_token_id = model.text_eos_id if model.text_pool_type == "eos" \
        else TextConfig.eos_token_id
    _require(visual.image_size[0] == visual.image_size[1], "non-square images")
    pre = getattr(visual, "preprocess_cfg", None) or {}  # set by open_clip.create_model
    config.vision.image_mean = tuple(pre.get("mean", config.vision.image_mean))
    config.vision.image_std = tuple(pre.get("std", config.vision.image_std))
    return config
