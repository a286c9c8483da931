"""Stable Diffusion 1.x checkpoints, in the two layouts people own, as mmgen components.

* :func:`read_sd_folder`: a diffusers pipeline folder (``model_index.json``, ``unet/``,
  ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), read offline.
* :func:`read_sd_single_file`: an original CompVis / AUTOMATIC1111 single file (``.safetensors``,
  or ``.ckpt`` loaded with ``torch.load(weights_only=True)``). Its keys are converted to
  diffusers' names with diffusers' own utilities (``diffusers.loaders.single_file_utils``), so
  diffusers must be installed for this one; the configs are inferred from the tensor shapes.
* :func:`write_sd_single_file`: the inverse, folder or :class:`SDComponents` -> one original
  format ``.safetensors`` (e.g. for AUTOMATIC1111).

Both readers return an :class:`SDComponents`. The original (LDM) names, per component::

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

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from mmgen.checkpoint import load_state_dict, save_state_dict
from mmgen.clip.model import CLIPTextModel
from mmgen.diffusion.samplers import Sampler, create_sampler
from mmgen.diffusion.unet import UNet
from mmgen.interop.convert import KeyMapError, read_json
from mmgen.interop.diffusers import WEIGHT_FILES as DIFFUSERS_WEIGHT_FILES
from mmgen.interop.diffusers import from_diffusers, from_diffusers_state_dict
from mmgen.interop.diffusers_schedulers import (
    SAMPLER_NAMES,
    sampler_from_diffusers,
    schedule_from_diffusers,
)
from mmgen.interop.transformers_clip import from_transformers, from_transformers_state_dict
from mmgen.vae.autoencoder_kl import AutoencoderKL

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
# model_index.json "_class_name"s read here (they share the SD 1.x components).
PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
                    "StableDiffusionInpaintPipeline")
COMPONENT_CLASSES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL",
                     "text_encoder": "CLIPTextModel", "scheduler": None}  # None: any scheduler
WEIGHT_FILES = {"unet": DIFFUSERS_WEIGHT_FILES, "vae": DIFFUSERS_WEIGHT_FILES,  # preferred first
                "text_encoder": ("model.safetensors", "pytorch_model.bin",
                                 "model.fp16.safetensors")}
VOCAB_SIZE = 49408  # CLIP's BPE vocabulary, as in mmgen.clip.tokenizer (open_clip's)
SPECIAL_TOKENS = {"<|startoftext|>": 49406, "<|endoftext|>": 49407}  # transformers' spelling
# The SD 1.x training schedule (v1-inference.yaml: linear_start 0.00085, linear_end 0.012,
# 1000 steps, eps prediction) in diffusers' form, for single files, which carry no scheduler.
SD1_SCHEDULER = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000,
                 "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                 "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False,
                 "steps_offset": 1, "timestep_spacing": "leading"}
SD1_SCALING_FACTOR = 0.18215  # v1-inference.yaml scale_factor: latents = z * 0.18215


@dataclass
class TokenizerInfo:
    context_length: int = 77  # tokens per prompt (the tokenizer's model_max_length)
    pad_token_id: int = 49407  # id after the end of text: SD 1.x pads with <|endoftext|>


@dataclass
class SDComponents:
    """The networks and settings of a Stable Diffusion 1.x checkpoint, as mmgen objects.

    Prompts are tokenized with mmgen's CLIP tokenizer (open_clip's BPE, the vocabulary of SD
    1.x's tokenizer) using ``tokenizer.context_length`` and ``tokenizer.pad_token_id``.
    """

    unet: UNet  # noise prediction unet(x, t, context), diffusers' parameter names
    vae: AutoencoderKL  # latents <-> pixels; config.scaling_factor scales the latents
    text_encoder: CLIPTextModel  # tokens -> context (encode_text_states().last_hidden_state)
    sampler: Sampler  # the checkpoint's scheduler as a sampler; .schedule: training schedule
    scheduler_config: dict[str, Any]  # the diffusers scheduler config the sampler was built from
    tokenizer: TokenizerInfo  # prompt length and padding id
    name: str  # folder name or file stem (for the images' generation parameters)


# ----------------------------------------------------------------------------- public API


def read_sd_folder(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> SDComponents:
    """Read a Stable Diffusion 1.x pipeline folder in diffusers' layout, offline.

    Weights are read from ``.safetensors`` when present, else from ``.bin`` through
    ``torch.load(weights_only=True)`` (never unpickling code). A missing ``tokenizer/``
    folder only warns: mmgen tokenizes with CLIP's BPE either way. A scheduler mmgen has no
    sampler for (SD 1.x folders ship ``PNDMScheduler``) becomes DDIM on the same schedule.

    Args:
        path: the folder holding ``model_index.json``.
        dtype: dtype of the networks' weights, whatever the files store (mmgen pipelines keep
            float32 weights and compute in lower precision through autocast).

    Raises:
        FileNotFoundError: no such folder, no ``model_index.json``, or a component folder is
            missing (named in the message).
        ValueError: not a Stable Diffusion 1.x pipeline (e.g. SDXL), or a tokenizer whose
            vocabulary is not CLIP's.
    """
    folder = Path(path)
    _check_model_index(folder)
    tokenizer = _tokenizer_info(folder / "tokenizer")
    scheduler_config = read_json(folder / "scheduler" / "scheduler_config.json")
    text_encoder = from_transformers(folder / "text_encoder").to(dtype)
    if not isinstance(text_encoder, CLIPTextModel) or text_encoder.text_config.embed_dim:
        raise ValueError(f"{folder / 'text_encoder'}: expected a CLIPTextModel without "
                         "projection (Stable Diffusion 1.x's text encoder)")
    return _checked(SDComponents(
        unet=from_diffusers(folder / "unet", dtype=dtype),
        vae=from_diffusers(folder / "vae", dtype=dtype),
        text_encoder=text_encoder, sampler=_sampler(scheduler_config),
        scheduler_config=scheduler_config, tokenizer=tokenizer, name=folder.resolve().name))


def read_sd_single_file(path: str | os.PathLike, dtype: torch.dtype = torch.float32
                        ) -> SDComponents:
    """Read an original (CompVis / AUTOMATIC1111) Stable Diffusion 1.x single-file checkpoint.

    Keys are converted with diffusers' ``convert_ldm_{unet,vae,clip}_checkpoint``; the configs
    are inferred from the shapes (:func:`unet_config_from_ldm` and friends). The file carries
    no scheduler: the SD 1.x training schedule (:data:`SD1_SCHEDULER`) is used.

    Args:
        path: a ``.safetensors`` file, or a ``.ckpt``/``.pt``/``.bin`` pickle (loaded with
            ``torch.load(weights_only=True)``; a top-level ``"state_dict"`` is unwrapped).
        dtype: dtype of the networks' weights (as for :func:`read_sd_folder`).

    Raises:
        ImportError: diffusers is not installed.
        ValueError: not a Stable Diffusion 1.x checkpoint (the message says what was found),
            or a corrupted ``.safetensors`` file.
        mmgen.checkpoint.UnsafeCheckpointError: a pickle that needs code to load.
    """
    path = Path(path)
    try:
        state = load_state_dict(path)
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable .safetensors file: {e}") from None
    _check_single_file_keys(state, path)
    try:
        from diffusers.loaders import single_file_utils as sfu
    except ImportError:
        raise ImportError("loading an original single-file checkpoint needs diffusers: "
                          "pip install diffusers") from None

    unet_config = unet_config_from_ldm(_strip(state, UNET_PREFIX))
    vae_config = vae_config_from_ldm(_strip(state, VAE_PREFIX))
    text_state = _text_model_keys(sfu.convert_ldm_clip_checkpoint(state))
    unet = from_diffusers_state_dict(sfu.convert_ldm_unet_checkpoint(state, unet_config),
                                     unet_config, dtype=dtype)
    vae = from_diffusers_state_dict(sfu.convert_ldm_vae_checkpoint(state, vae_config),
                                    vae_config, dtype=dtype)
    text_encoder = from_transformers_state_dict(
        text_state, text_config_from_ldm(text_state)).to(dtype)
    return _checked(SDComponents(
        unet=unet, vae=vae, text_encoder=text_encoder,
        sampler=sampler_from_diffusers(dict(SD1_SCHEDULER)),
        scheduler_config=dict(SD1_SCHEDULER), tokenizer=TokenizerInfo(), name=path.stem))


def write_sd_single_file(components_or_folder: SDComponents | str | os.PathLike,
                         path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write Stable Diffusion 1.x weights as one original-format ``.safetensors`` (atomically).

    Args:
        components_or_folder: an :class:`SDComponents`, or a diffusers pipeline folder (read
            at the state-dict level; no models are built).
        path: the ``.safetensors`` file to write.
        dtype: cast floating-point tensors to this (e.g. ``torch.float16``); default: as stored.

    Returns:
        ``path``.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: single files are written as .safetensors only")
    if isinstance(components_or_folder, SDComponents):
        unet, vae, text = _diffusers_state_dicts(components_or_folder)
    else:
        folder = Path(components_or_folder)
        _check_model_index(folder)
        unet, vae, text = (_component_weights(folder, name)
                           for name in ("unet", "vae", "text_encoder"))
    state = {**{UNET_PREFIX + k: v for k, v in unet_to_ldm(unet).items()},
             **{VAE_PREFIX + k: v for k, v in vae_to_ldm(vae).items()},
             **{TEXT_PREFIX + k: v for k, v in _text_model_keys(text).items()}}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_state_dict(state, path, metadata={"format": "pt"})
    return path


# ----------------------------------------------------------------------------- folders


def _check_model_index(folder: Path) -> dict[str, Any]:
    """model_index.json of an SD 1.x pipeline folder, with every needed component present."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no Stable Diffusion folder at {folder}")
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} has no model_index.json: not a diffusers pipeline "
                                "folder (for a single .safetensors/.ckpt file use "
                                "read_sd_single_file)")
    index = read_json(folder / "model_index.json")
    cls = index.get("_class_name")
    if "text_encoder_2" in index or "XL" in str(cls):
        raise ValueError(f"{folder} is an SDXL pipeline ({cls}, two text encoders); SDXL is "
                         "not supported, only Stable Diffusion 1.x")
    if cls not in PIPELINE_CLASSES:
        raise ValueError(f"{folder}/model_index.json has _class_name {cls!r}; expected one of "
                         f"{', '.join(PIPELINE_CLASSES)}")
    for name, expected in COMPONENT_CLASSES.items():
        entry = index.get(name)
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] is None:
            raise ValueError(f"{folder}/model_index.json lists no {name!r} component "
                             f"(expected e.g. \"{name}\": [\"diffusers\", \"{expected}\"])")
        if expected is not None and entry[1] != expected:
            raise ValueError(f"{folder}: component {name!r} is a {entry[1]}; expected {expected}")
        if not (folder / name).is_dir():
            raise FileNotFoundError(f"{folder} is missing the {name!r} component (no folder "
                                    f"{folder / name})")
    return index


def _tokenizer_info(folder: Path) -> TokenizerInfo:
    """Context length and padding of a transformers CLIPTokenizer folder, after checking that
    its vocabulary is CLIP's (the one mmgen's tokenizer uses)."""
    if not (folder / "vocab.json").is_file():
        warnings.warn(f"{folder} has no vocab.json; tokenizing with CLIP's BPE vocabulary and "
                      "Stable Diffusion 1.x's settings (77 tokens, padding <|endoftext|>)",
                      stacklevel=3)
        return TokenizerInfo()
    vocab = read_json(folder / "vocab.json")
    wrong = {t: vocab.get(t) for t, i in SPECIAL_TOKENS.items() if vocab.get(t) != i}
    if len(vocab) != VOCAB_SIZE or wrong:
        raise ValueError(f"{folder / 'vocab.json'} is not CLIP's vocabulary ({len(vocab)} "
                         f"tokens, special tokens {wrong or 'ok'}; expected {VOCAB_SIZE} with "
                         f"{SPECIAL_TOKENS}); mmgen tokenizes with CLIP's BPE only")
    config = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # later files win
        if (folder / name).is_file():
            config.update(read_json(folder / name))
    pad = config.get("pad_token", "<|endoftext|>")
    pad = pad.get("content") if isinstance(pad, dict) else pad  # {"content": "!", ...} form
    if pad not in vocab:
        raise ValueError(f"{folder}: pad_token {pad!r} is not in vocab.json")
    # model_max_length is a huge sentinel in some configs; CLIP's context is 77 tokens.
    length = min(int(config.get("model_max_length", 77)), 77)
    return TokenizerInfo(context_length=length, pad_token_id=vocab[pad])


def _checked(c: SDComponents) -> SDComponents:
    """``c``, after checking that its networks fit together."""
    width, context = c.text_encoder.text_config.width, c.unet.config.cross_attention_dim
    if width != context:
        raise ValueError(f"{c.name}: the U-Net cross-attends to {context}-dim context but the "
                         f"text encoder gives {width}-dim states; the components do not belong "
                         "together")
    if c.unet.config.in_channels not in (c.vae.config.latent_channels,
                                         2 * c.vae.config.latent_channels + 1):  # inpainting
        raise ValueError(f"{c.name}: the U-Net takes {c.unet.config.in_channels} channels, "
                         f"the VAE makes {c.vae.config.latent_channels}-channel latents")
    return c


def _sampler(config: dict[str, Any]) -> Sampler:
    """The sampler of a diffusers scheduler config; DDIM on its schedule for scheduler classes
    without an mmgen sampler (PNDM, LMS, ...: diffusers' own pipelines swap them freely)."""
    if config.get("_class_name") in SAMPLER_NAMES:
        return sampler_from_diffusers(config)
    return create_sampler("ddim", schedule_from_diffusers(config),
                          set_alpha_to_one=bool(config.get("set_alpha_to_one", False)))


def _component_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """The state dict of component ``name`` of a pipeline folder (safetensors preferred)."""
    for file in WEIGHT_FILES[name]:
        if (folder / name / file).is_file():
            return load_state_dict(folder / name / file)
    raise FileNotFoundError(f"{folder / name} has none of the weight files "
                            f"{', '.join(WEIGHT_FILES[name])}")


def _diffusers_state_dicts(c: SDComponents) -> tuple[dict[str, torch.Tensor], ...]:
    """(U-Net, VAE, text encoder) state dicts of mmgen models with diffusers/transformers
    names: the U-Net and VAE already use diffusers' names, CLIP uses OpenAI's."""
    return dict(c.unet.state_dict()), dict(c.vae.state_dict()), _clip_to_transformers(
        c.text_encoder)


def _clip_to_transformers(model: CLIPTextModel) -> dict[str, torch.Tensor]:
    """mmgen (OpenAI-named) CLIP text model -> transformers ``text_model.*`` keys; the inverse
    of :mod:`mmgen.interop.transformers_clip`'s map for text models without projection."""
    cfg = model.text_config
    if cfg.embed_dim or cfg.kept_tokens:
        raise ValueError("only a full-vocabulary CLIP text model without projection (Stable "
                         "Diffusion 1.x's text encoder) can be written to a single file")
    names = [(r"^token_embedding\.", "embeddings.token_embedding."),
             (r"^positional_embedding$", "embeddings.position_embedding.weight"),
             (r"^transformer\.resblocks\.", "encoder.layers."),
             (r"^ln_final\.", "final_layer_norm."),
             (r"\.attn\.", ".self_attn."), (r"\.ln_1\.", ".layer_norm1."),
             (r"\.ln_2\.", ".layer_norm2."), (r"\.mlp\.c_fc\.", ".mlp.fc1."),
             (r"\.mlp\.c_proj\.", ".mlp.fc2.")]
    out = {}
    for key, value in model.state_dict().items():
        for pattern, repl in names:
            key = re.sub(pattern, repl, key)
        if ".self_attn.in_proj_" in key:  # packed (q; k; v) -> three linears
            block, kind = key.split(".self_attn.in_proj_")
            for n, part in zip("qkv", value.chunk(3), strict=True):
                out[f"text_model.{block}.self_attn.{n}_proj.{kind}"] = part
        else:
            out[f"text_model.{key}"] = value
    return out


# ----------------------------------------------------------------------------- writing


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


# ----------------------------------------------------------------------------- reading


def _check_single_file_keys(state: Mapping[str, torch.Tensor], path: Path) -> None:
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in state)

    if has("conditioner.embedders."):
        raise ValueError(f"{path} is an SDXL checkpoint (conditioner.embedders.*); SDXL is not "
                         "supported, only Stable Diffusion 1.x")
    if not has(UNET_PREFIX):
        sample = ", ".join(list(state)[:3]) or "no tensors at all"
        raise ValueError(f"{path} is not a Stable Diffusion checkpoint: no {UNET_PREFIX}* keys "
                         f"(found e.g. {sample})")
    if has("cond_stage_model.model."):
        raise ValueError(f"{path} is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder "
                         "cond_stage_model.model.*); only SD 1.x single files are supported: "
                         "convert it to a diffusers folder and use read_sd_folder")
    for prefix, what in ((VAE_PREFIX, "VAE"), (TEXT_PREFIX, "CLIP text encoder")):
        if not has(prefix):
            raise ValueError(f"{path} has no {what} ({prefix}* keys); mmgen reads complete "
                             "Stable Diffusion 1.x checkpoints")


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


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _text_model_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every CLIP text key with its ``text_model.`` prefix (transformers 5 saves without it)."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}

