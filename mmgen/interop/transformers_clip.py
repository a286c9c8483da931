"""Hugging Face transformers CLIP -> mmgen CLIP models.

Converts ``CLIPTextModel`` (Stable Diffusion 1.x/2.x's ``text_encoder``),
``CLIPTextModelWithProjection`` (SDXL's ``text_encoder_2``), ``CLIPVisionModel``,
``CLIPVisionModelWithProjection`` (image encoders of unCLIP / IP-Adapter) and ``CLIPModel``,
in memory or as a folder (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``;
transformers itself is not needed for folders and nothing is downloaded).

The explicit key map (transformers -> mmgen, which keeps OpenAI's names)::

    text_model.embeddings.token_embedding         -> token_embedding
    text_model.embeddings.position_embedding.weight -> positional_embedding
    text_model.encoder.layers.<i>                 -> transformer.resblocks.<i>
    vision_model.embeddings.patch_embedding       -> visual.conv1
    vision_model.embeddings.class_embedding       -> visual.class_embedding
    vision_model.embeddings.position_embedding.weight -> visual.positional_embedding
    vision_model.pre_layrnorm / post_layernorm    -> visual.ln_pre / visual.ln_post
    vision_model.encoder.layers.<i>               -> visual.transformer.resblocks.<i>
      .self_attn.{q,k,v}_proj (3 linears)         -> .attn.in_proj_{weight,bias} (packed q;k;v)
      .self_attn.out_proj / .layer_norm1 / .layer_norm2 -> .attn.out_proj / .ln_1 / .ln_2
      .mlp.fc1 / .mlp.fc2                         -> .mlp.c_fc / .mlp.c_proj
    text_model.final_layer_norm                   -> ln_final
    text_projection.weight (E, W), visual_projection.weight (E, W)
                                                  -> text_projection, visual.proj (W, E)
    *.embeddings.position_ids                     -> dropped (always arange)

Text pooling follows transformers: configs with the legacy ``eos_token_id == 2`` (all Stable
Diffusion 1.x/2.x folders) pool at ``argmax(input_ids)``, mmgen's ``pool="argmax"``; any other
``eos_token_id`` (49407 in configs written since transformers 4.31) pools at the first
occurrence of that id, ``pool="eos"``. With CLIP's tokenizer both pick the end-of-text token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgen.checkpoint import load_state_dict, read_json
from mmgen.clip.model import (
    CLIP,
    OPENAI_MEAN,
    OPENAI_STD,
    CLIPConfig,
    CLIPTextModel,
    CLIPVisionModel,
    TextConfig,
    VisionConfig,
    registered_name,
)
from mmgen.interop.convert import KeyMapError, load_converted, regex_rename

TEXT_ARCHITECTURES = ("CLIPTextModel", "CLIPTextModelWithProjection")
VISION_ARCHITECTURES = ("CLIPVisionModel", "CLIPVisionModelWithProjection")
ARCHITECTURES = (*TEXT_ARCHITECTURES, *VISION_ARCHITECTURES, "CLIPModel")
# transformers' config defaults (CLIPTextConfig / CLIPVisionConfig), for keys a file omits.
TEXT_DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048,
                 "projection_dim": 512, "num_hidden_layers": 12, "num_attention_heads": 8,
                 "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                 "layer_norm_eps": 1e-5, "eos_token_id": 49407}
VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "projection_dim": 512,
                   "num_hidden_layers": 12, "num_attention_heads": 12, "num_channels": 3,
                   "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu",
                   "layer_norm_eps": 1e-5}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "model.fp16.safetensors", "pytorch_model.fp16.bin")

RENAME = regex_rename([
    (r"^(text|vision)_model\.embeddings\.position_ids$", ""),
    (r"^text_model\.embeddings\.token_embedding\.", "token_embedding."),
    (r"^text_model\.embeddings\.position_embedding\.weight$", "positional_embedding"),
    (r"^text_model\.encoder\.layers\.", "transformer.resblocks."),
    (r"^text_model\.final_layer_norm\.", "ln_final."),
    (r"^text_projection\.weight$", "text_projection"),
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual.conv1."),
    (r"^vision_model\.embeddings\.class_embedding$", "visual.class_embedding"),
    (r"^vision_model\.embeddings\.position_embedding\.weight$", "visual.positional_embedding"),
    (r"^vision_model\.pre_layrnorm\.", "visual.ln_pre."),  # sic: transformers' spelling
    (r"^vision_model\.post_layernorm\.", "visual.ln_post."),
    (r"^vision_model\.encoder\.layers\.", "visual.transformer.resblocks."),
    (r"^visual_projection\.weight$", "visual.proj"),
    # inside a block
    (r"\.self_attn\.", ".attn."),
    (r"\.layer_norm1\.", ".ln_1."),
    (r"\.layer_norm2\.", ".ln_2."),
    (r"\.mlp\.fc1\.", ".mlp.c_fc."),
    (r"\.mlp\.fc2\.", ".mlp.c_proj."),
])
# Linear weights (E, W) -> OpenAI's projection matrices (W, E), used as x @ proj.
TRANSFORMS = {"text_projection": torch.t, "visual.proj": torch.t}


def from_transformers(model_or_path: nn.Module | str | os.PathLike
                      ) -> CLIP | CLIPTextModel | CLIPVisionModel:
    """The mmgen equivalent of a transformers CLIP model, with its weights, in eval mode.

    Args:
        model_or_path: a transformers ``CLIPTextModel``, ``CLIPTextModelWithProjection``,
            ``CLIPVisionModel``, ``CLIPVisionModelWithProjection`` or ``CLIPModel``; or a
            folder saved by ``save_pretrained`` (e.g. a Stable Diffusion ``text_encoder``).

    Returns:
        :class:`CLIPTextModel` for text models, :class:`CLIPVisionModel` for vision models,
        :class:`CLIP` for ``CLIPModel``. Models without projection get ``embed_dim=0``.

    Raises:
        ValueError: an unsupported architecture or configuration (activation, eps, ...).
        mmgen.interop.KeyMapError: the weights do not fit (keys or shapes listed).
    """
    if isinstance(model_or_path, nn.Module):
        arch, hf = type(model_or_path).__name__, model_or_path.config.to_dict()
        state, folder = model_or_path.state_dict(), None
    else:
        folder = Path(model_or_path)
        hf = read_json(folder / "config.json")
        arch = (hf.get("architectures") or [""])[0]
    if arch not in ARCHITECTURES:
        raise ValueError(f"from_transformers converts {', '.join(ARCHITECTURES)}; got "
                         f"{arch or 'a config.json without architectures'}")
    model = _build(arch, hf, folder)
    if folder is not None:
        state = _load_weights(folder)
    state = _pack_qkv(_with_prefix(state, arch))
    load_converted(model, state, RENAME, transforms=TRANSFORMS)
    model.model_name = registered_name(model.config)
    return model.eval()


# ----------------------------------------------------------------------------- configs


def _build(arch: str, hf: dict[str, Any], folder: Path | None
           ) -> CLIP | CLIPTextModel | CLIPVisionModel:
    if arch in TEXT_ARCHITECTURES:
        return CLIPTextModel(text_config(hf, projection=arch.endswith("WithProjection")))
    mean, std = _image_stats(folder)
    if arch in VISION_ARCHITECTURES:
        return CLIPVisionModel(vision_config(hf, arch.endswith("WithProjection"), mean, std))
    text = {**(hf.get("text_config") or {}), **(hf.get("text_config_dict") or {})}
    vision = {**(hf.get("vision_config") or {}), **(hf.get("vision_config_dict") or {})}
    embed = hf.get("projection_dim", 512)
    return CLIP(CLIPConfig(
        vision=vision_config({**vision, "projection_dim": embed}, True, mean, std),
        text=text_config({**text, "projection_dim": embed}, projection=True),
        init_logit_scale=float(hf.get("logit_scale_init_value", 2.6592))))


def _common(hf: dict[str, Any], kind: str) -> dict[str, Any]:
    """Fields shared by both towers, with transformers' settings checked."""
    if hf["hidden_act"] not in ("quick_gelu", "gelu"):
        raise ValueError(f"{kind} hidden_act={hf['hidden_act']!r} is not supported; mmgen's "
                         "CLIP has 'quick_gelu' and 'gelu'")
    if abs(hf["layer_norm_eps"] - 1e-5) > 1e-12:
        raise ValueError(f"{kind} layer_norm_eps={hf['layer_norm_eps']}; mmgen's CLIP uses "
                         "LayerNorm eps 1e-5 (OpenAI's)")
    width = hf["hidden_size"]
    return dict(width=width, layers=hf["num_hidden_layers"], heads=hf["num_attention_heads"],
                mlp_ratio=hf["intermediate_size"] / width, activation=hf["hidden_act"])


def text_config(hf: dict[str, Any], projection: bool) -> TextConfig:
    """mmgen TextConfig of a transformers CLIPTextConfig dict (see module docstring)."""
    hf = {**TEXT_DEFAULTS, **{k: v for k, v in hf.items() if v is not None}}
    eos = hf["eos_token_id"]
    if not isinstance(eos, int):
        raise ValueError(f"text eos_token_id={eos!r}: expected one integer")
    legacy = eos == 2  # transformers pools at argmax(input_ids) for this value
    return TextConfig(vocab_size=hf["vocab_size"], context_length=hf["max_position_embeddings"],
                      embed_dim=hf["projection_dim"] if projection else 0,
                      pool="argmax" if legacy else "eos",
                      eos_token_id=TextConfig.eos_token_id if legacy else eos,
                      **_common(hf, "text"))


def vision_config(hf: dict[str, Any], projection: bool,
                  mean: tuple[float, float, float] = OPENAI_MEAN,
                  std: tuple[float, float, float] = OPENAI_STD) -> VisionConfig:
    """mmgen VisionConfig of a transformers CLIPVisionConfig dict."""
    hf = {**VISION_DEFAULTS, **{k: v for k, v in hf.items() if v is not None}}
    size, patch = hf["image_size"], hf["patch_size"]
    if hf["num_channels"] != 3 or not isinstance(size, int) or not isinstance(patch, int):
        raise ValueError(f"vision num_channels={hf['num_channels']}, image_size={size}, "
                         f"patch_size={patch}: mmgen's CLIP takes square RGB images")
    return VisionConfig(image_size=size, patch_size=patch,
                        embed_dim=hf["projection_dim"] if projection else 0,
                        image_mean=mean, image_std=std, **_common(hf, "vision"))


def _image_stats(folder: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """image_mean/std of a ``preprocessor_config.json`` beside the weights, else OpenAI's."""
    path = folder / "preprocessor_config.json" if folder is not None else None
    if path is None or not path.is_file():
        return OPENAI_MEAN, OPENAI_STD
    pre = read_json(path)
    return tuple(pre.get("image_mean", OPENAI_MEAN)), tuple(pre.get("image_std", OPENAI_STD))


# ----------------------------------------------------------------------------- weights


def _with_prefix(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Give every tower key its ``text_model.`` / ``vision_model.`` prefix: transformers 5
    saves ``CLIPTextModel`` / ``CLIPVisionModel`` without it, earlier versions with it."""
    if arch == "CLIPModel":
        return dict(state)
    prefix, projection = (("text_model.", "text_projection.") if arch in TEXT_ARCHITECTURES
                          else ("vision_model.", "visual_projection."))
    return {k if k.startswith((prefix, projection)) else prefix + k: v for k, v in state.items()}


def _pack_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each block's q_proj, k_proj, v_proj by one ``in_proj`` tensor (q; k; v)."""
    out = dict(state)
    for key in [k for k in state if ".self_attn.q_proj." in k]:
        parts = [key.replace(".q_proj.", f".{n}_proj.") for n in "qkv"]
        if any(p not in state for p in parts) or len({state[p].shape for p in parts}) != 1:
            raise KeyMapError(f"attention weights {parts} are incomplete or differ in shape")
        block, kind = key.split(".self_attn.q_proj.")
        out[f"{block}.self_attn.in_proj_{kind}"] = torch.cat([out.pop(p) for p in parts])
    return out


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a transformers model folder (no config.json)")
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):  # sharded: {"weight_map": {key: shard file}}
            shards = sorted(set(read_json(path)["weight_map"].values()))
            return {k: v for s in shards for k, v in load_state_dict(folder / s).items()}
        return load_state_dict(path)
    raise FileNotFoundError(f"{folder} has none of the weight files {WEIGHT_FILES}")



def from_transformers_state_dict(state_dict: Mapping[str, torch.Tensor], config: dict[str, Any]
                                 ) -> CLIP | CLIPTextModel | CLIPVisionModel:
    """:func:`from_transformers` for weights already in memory, e.g. the text encoder taken
    out of a single-file Stable Diffusion checkpoint.

    Args:
        state_dict: transformers parameter names (with or without the ``text_model.`` /
            ``vision_model.`` prefix).
        config: the matching transformers config dict (``config.json``); its
            ``architectures`` names the model class.
    """
    arch = (config.get("architectures") or [""])[0]
    if arch not in ARCHITECTURES:
        raise ValueError(f"from_transformers_state_dict converts {', '.join(ARCHITECTURES)}; "
                         f"got {arch or 'a config without architectures'}")
    model = _build(arch, config, None)
    load_converted(model, _pack_qkv(_with_prefix(dict(state_dict), arch)), RENAME,
                   transforms=TRANSFORMS)
    model.model_name = registered_name(model.config)
    return model.eval()
