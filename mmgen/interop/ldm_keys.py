"""Original (CompVis "LDM") Stable Diffusion 1.x names: key maps and config inference.

An original single file (CompVis / AUTOMATIC1111) holds the three networks under one prefix
each. :func:`unet_to_ldm` and :func:`vae_to_ldm` rename diffusers' keys to these names (for
writing; reading goes through diffusers' own ``convert_ldm_*_checkpoint``), and
``*_config_from_ldm`` infer the diffusers / transformers configs from the tensor shapes, since
a single file carries no config. The names, per component::

    model.diffusion_model.                     U-Net; L = layers per block, b = level
      time_embed.0 / .2                        time_embedding.linear_1 / linear_2
      input_blocks.0.0                         conv_in
      input_blocks.{1 + b(L+1) + j}.0 / .1     down_blocks.b.resnets.j / attentions.j
      input_blocks.{(b+1)(L+1)}.0.op           down_blocks.b.downsamplers.0.conv
      middle_block.0 / .1 / .2                 mid_block.resnets.0 / attentions.0 / resnets.1
      output_blocks.{b(L+1) + j}.0 / .1        up_blocks.b.resnets.j / attentions.j
      output_blocks.{b(L+1) + L}.{1|2}.conv    up_blocks.b.upsamplers.0.conv (.2 after attention)
      out.0 / out.2                            conv_norm_out / conv_out
      resnet in_layers.0/.2, emb_layers.1,     norm1/conv1, time_emb_proj,
        out_layers.0/.3, skip_connection       norm2/conv2, conv_shortcut
    first_stage_model.                         VAE; n = levels
      encoder.down.i.block.j / .downsample     encoder.down_blocks.i.resnets.j / .downsamplers.0
      decoder.up.{n-1-i}.block.j / .upsample   decoder.up_blocks.i.resnets.j / .upsamplers.0
      {en,de}coder.mid.block_1/attn_1/block_2  mid_block.resnets.0/attentions.0/resnets.1
      attn_1.norm/q/k/v/proj_out (1x1 convs)   group_norm/to_q/to_k/to_v/to_out.0 (linears)
      {en,de}coder.norm_out, nin_shortcut      conv_norm_out, conv_shortcut
    cond_stage_model.transformer.              text encoder: transformers' CLIPTextModel keys
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from mmgen.interop.convert import KeyMapError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
SD1_SCALING_FACTOR = 0.18215  # v1-inference.yaml scale_factor: latents = z * 0.18215


# ----------------------------------------------------------------------------- key maps


RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                 "norm2": "out_layers.0", "conv2": "out_layers.3",
                 "conv_shortcut": "skip_connection"}
UNET_TOP_TO_LDM = {"time_embedding.linear_1": "time_embed.0",
                   "time_embedding.linear_2": "time_embed.2", "conv_in": "input_blocks.0.0",
                   "conv_norm_out": "out.0", "conv_out": "out.2"}
# VAE mid-block attention, current and pre-0.14 diffusers names -> LDM's 1x1 convs.
VAE_ATTENTION_TO_LDM = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                        "to_out.0": "proj_out", "query": "q", "key": "k", "value": "v",
                        "proj_attn": "proj_out"}


def unet_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``UNet2DConditionModel`` keys -> LDM keys (without ``model.diffusion_model.``).

    Raises:
        KeyMapError: a key with no LDM name (e.g. SDXL's ``add_embedding``).
    """
    per = _count(state, r"^down_blocks\.0\.resnets\.(\d+)\.") + 1  # L + 1 input blocks a level
    attention_levels = {int(m[1]) for k in state if (m := re.match(r"up_blocks\.(\d+)\.att", k))}

    def resnet(name: str, rest: str) -> str:
        part, _, param = rest.partition(".")
        return f"{name}.{RESNET_TO_LDM[part]}.{param}"

    rules: list[tuple[str, Callable[..., str]]] = [
        (r"^(time_embedding\.linear_[12]|conv_in|conv_norm_out|conv_out)\.(\w+)$",
         lambda m, p: f"{UNET_TOP_TO_LDM[m]}.{p}"),
        (r"^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$",
         lambda b, j, r: resnet(f"input_blocks.{1 + int(b) * per + int(j)}.0", r)),
        (r"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$",
         lambda b, j, r: f"input_blocks.{1 + int(b) * per + int(j)}.1.{r}"),
        (r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$",
         lambda b, r: f"input_blocks.{(int(b) + 1) * per}.0.op.{r}"),
        (r"^mid_block\.resnets\.([01])\.(.+)$",
         lambda i, r: resnet(f"middle_block.{2 * int(i)}", r)),
        (r"^mid_block\.attentions\.0\.(.+)$", lambda r: f"middle_block.1.{r}"),
        (r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$",
         lambda b, j, r: resnet(f"output_blocks.{int(b) * per + int(j)}.0", r)),
        (r"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$",
         lambda b, j, r: f"output_blocks.{int(b) * per + int(j)}.1.{r}"),
        (r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$",  # after the attention, if any
         lambda b, r: f"output_blocks.{int(b) * per + per - 1}."
                      f"{2 if int(b) in attention_levels else 1}.conv.{r}"),
    ]
    return _rename_all(state, rules, "U-Net")


def vae_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKL`` keys -> LDM keys (without ``first_stage_model.``); the
    mid-block attention's linear weights (C, C) become 1x1 conv weights (C, C, 1, 1)."""
    levels = _count(state, r"^decoder\.up_blocks\.(\d+)\.")

    def resnet(name: str, rest: str) -> str:
        return f"{name}.{rest.replace('conv_shortcut.', 'nin_shortcut.')}"

    def attention(coder: str, rest: str) -> str:
        part, param = rest.rsplit(".", 1)
        return f"{coder}.mid.attn_1.{VAE_ATTENTION_TO_LDM[part]}.{param}"

    rules: list[tuple[str, Callable[..., str]]] = [
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$",
         lambda i, j, r: resnet(f"encoder.down.{i}.block.{j}", r)),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$",
         lambda i, r: f"encoder.down.{i}.downsample.conv.{r}"),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$",
         lambda i, j, r: resnet(f"decoder.up.{levels - 1 - int(i)}.block.{j}", r)),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$",
         lambda i, r: f"decoder.up.{levels - 1 - int(i)}.upsample.conv.{r}"),
        (r"^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$",
         lambda c, i, r: resnet(f"{c}.mid.block_{int(i) + 1}", r)),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$", attention),
        (r"^(encoder|decoder)\.conv_norm_out\.(.+)$", lambda c, r: f"{c}.norm_out.{r}"),
        (r"^((?:encoder|decoder)\.conv_(?:in|out)|quant_conv|post_quant_conv)\.(.+)$",
         lambda m, r: f"{m}.{r}"),
    ]
    out = _rename_all(state, rules, "VAE")
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.dim() == 2:
            out[key] = value[:, :, None, None]  # (C, C) -> (C, C, 1, 1)
    return out


def _rename_all(state: Mapping[str, torch.Tensor], rules: list[tuple[str, Callable[..., str]]],
                what: str) -> dict[str, torch.Tensor]:
    """``state`` with every key renamed by the first rule whose pattern matches it (the rule
    gets the match's groups); keys no rule names are reported together."""
    compiled = [(re.compile(p), fn) for p, fn in rules]
    out, unknown = {}, []
    for key, value in state.items():
        match = next(((m, fn) for p, fn in compiled if (m := p.match(key))), None)
        if match is None:
            unknown.append(key)
            continue
        try:
            out[match[1](*match[0].groups())] = value
        except KeyError:
            unknown.append(key)
    if unknown:
        raise KeyMapError(f"{what} keys without an original (LDM) name ({len(unknown)}): "
                          f"{', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}; only "
                          "Stable Diffusion 1.x components can be written")
    return out


# ----------------------------------------------------------------------------- configs


def unet_config_from_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """diffusers ``UNet2DConditionModel`` config of an LDM U-Net state dict (keys without
    ``model.diffusion_model.``), inferred from its shapes and key indices."""
    if any(k.startswith("label_emb.") for k in state):
        raise ValueError("this U-Net is class- or size-conditioned (label_emb.*, e.g. SDXL); "
                         "only Stable Diffusion 1.x U-Nets are supported")
    conv_in = state["input_blocks.0.0.weight"]  # (C0, in_channels, 3, 3)
    levels: list[list[int]] = [[]]  # input block indices of the resnets at each resolution
    for i in range(1, _count(state, r"^input_blocks\.(\d+)\.")):
        if f"input_blocks.{i}.0.op.weight" in state:  # a downsampler ends a level
            levels.append([])
        else:
            levels[-1].append(i)
    layers = {len(level) for level in levels}
    attention = [{f"input_blocks.{i}.1.proj_in.weight" in state for i in level}
                 for level in levels]
    if len(layers) != 1 or any(len(a) != 1 for a in attention):
        raise ValueError(f"unsupported U-Net layout: resnets per level {sorted(layers)}, "
                         "attention in only some blocks of a level")
    attention = [a.pop() for a in attention]
    channels = [state[f"input_blocks.{level[0]}.0.out_layers.3.weight"].shape[0]
                for level in levels]
    first = next((level[0] for level, a in zip(levels, attention, strict=True) if a), None)
    if first is None or "middle_block.1.proj_in.weight" not in state:
        raise ValueError("the U-Net has no cross-attention blocks: not a text-to-image U-Net")
    block = f"input_blocks.{first}.1"
    context = state[f"{block}.transformer_blocks.0.attn2.to_k.weight"].shape[1]
    linear = state[f"{block}.proj_in.weight"].dim() == 2
    if linear or context == 1024:
        # SD 2.x (num_head_channels: 64): 64 channels per head; diffusers' misnamed
        # attention_head_dim holds the number of heads per level.
        heads: int | list[int] = [c // 64 for c in channels]
    else:
        # SD 1.x (v1-inference.yaml num_heads: 8): 8 heads at every level. Head counts do not
        # show in the shapes; this is the assumption for every context size but 1024.
        heads = 8
    depth = _count(state, rf"^{re.escape(block)}\.transformer_blocks\.(\d+)\.")
    return {"_class_name": "UNet2DConditionModel", "sample_size": 64,  # 512 px / 8
            "in_channels": conv_in.shape[1], "out_channels": state["out.2.weight"].shape[0],
            "block_out_channels": channels, "layers_per_block": layers.pop(),
            "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D"
                                 for a in attention],
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D"
                               for a in reversed(attention)],
            "cross_attention_dim": context, "attention_head_dim": heads,
            "use_linear_projection": linear,
            "transformer_layers_per_block": depth,
            "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True,
            "freq_shift": 0, "downsample_padding": 1, "center_input_sample": False}


def vae_config_from_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` config of an LDM VAE state dict (keys without
    ``first_stage_model.``), inferred from its shapes."""
    if "quant_conv.weight" not in state:
        raise ValueError("the VAE has no quant_conv: not a Stable Diffusion 1.x VAE")
    levels = _count(state, r"^encoder\.down\.(\d+)\.")
    channels = [state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in range(levels)]
    return {"_class_name": "AutoencoderKL", "sample_size": 512,
            "in_channels": state["encoder.conv_in.weight"].shape[1],
            "out_channels": state["decoder.conv_out.weight"].shape[0],
            "latent_channels": state["decoder.conv_in.weight"].shape[1],
            "block_out_channels": channels,
            "layers_per_block": _count(state, r"^encoder\.down\.0\.block\.(\d+)\."),
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels,
            "act_fn": "silu", "norm_num_groups": 32, "scaling_factor": SD1_SCALING_FACTOR}


def text_config_from_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """transformers ``CLIPTextConfig`` dict of a CLIP text state dict (``text_model.*`` keys),
    inferred from its shapes; settings as in SD 1.x's ``text_encoder/config.json``."""
    vocab, width = state["text_model.embeddings.token_embedding.weight"].shape
    return {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
            "vocab_size": vocab, "hidden_size": width,
            "max_position_embeddings": state[
                "text_model.embeddings.position_embedding.weight"].shape[0],
            "intermediate_size": state["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_hidden_layers": _count(state, r"^text_model\.encoder\.layers\.(\d+)\."),
            # OpenAI's CLIP text towers use 64 channels per head (SD 1.x: 768 / 12 heads).
            "num_attention_heads": max(1, width // 64),
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 768,
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}  # SD 1.x's legacy ids


# ----------------------------------------------------------------------------- helpers


def _count(state: Mapping[str, Any], pattern: str) -> int:
    """1 + the largest index captured by ``pattern`` in the keys (0 when none matches)."""
    found = [int(m[1]) for k in state if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix`` (e.g. :data:`UNET_PREFIX`), without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def text_model_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every CLIP text key with its ``text_model.`` prefix (transformers 5 saves without it)."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}

