"""Stable Diffusion 1.x checkpoints, in the two layouts people own, as mmgen pipelines.

* :func:`load_sd_folder` / :func:`read_sd_folder`: a diffusers pipeline folder
  (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
  ``scheduler/``), read offline.
* :func:`load_sd_single_file` / :func:`read_sd_single_file`: an original CompVis /
  AUTOMATIC1111 single file (``.safetensors``, or ``.ckpt`` loaded with
  ``torch.load(weights_only=True)``). Its keys are converted to diffusers' names with diffusers'
  own utilities (``diffusers.loaders.single_file_utils``), so diffusers must be installed for
  this one; the configs are inferred from the tensor shapes (:mod:`mmgen.interop.ldm_keys`).
* :func:`write_sd_single_file`: the inverse, folder or :class:`SDComponents` -> one original
  format ``.safetensors`` (e.g. for AUTOMATIC1111).

The ``read_*`` functions return the networks and settings as :class:`SDComponents`; the
``load_*`` functions (what :func:`mmgen.load` calls) put them in a
:class:`~mmgen.diffusion.pipeline.TextToImagePipeline` through :func:`sd_pipeline`. The
original (LDM) key names are mapped in :mod:`mmgen.interop.ldm_keys`.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmgen.checkpoint import load_state_dict, read_json, save_state_dict
from mmgen.clip.model import CLIPTextModel, TextConfig
from mmgen.diffusion.pipeline import PipelineConfig, TextToImagePipeline
from mmgen.diffusion.samplers import Sampler, create_sampler
from mmgen.diffusion.unet import UNet
from mmgen.interop.diffusers import WEIGHT_FILES as DIFFUSERS_WEIGHT_FILES
from mmgen.interop.diffusers import from_diffusers, from_diffusers_state_dict
from mmgen.interop.diffusers_schedulers import (
    SAMPLER_NAMES,
    sampler_from_diffusers,
    schedule_from_diffusers,
)
from mmgen.interop.ldm_keys import (
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    strip_prefix,
    text_config_from_ldm,
    text_model_keys,
    unet_config_from_ldm,
    unet_to_ldm,
    vae_config_from_ldm,
    vae_to_ldm,
)
from mmgen.interop.transformers_clip import from_transformers, from_transformers_state_dict
from mmgen.vae.autoencoder_kl import AutoencoderKL

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


def load_sd_folder(directory: str | os.PathLike, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
    """A text-to-image pipeline of a Stable Diffusion 1.x folder in diffusers' layout.

    Args:
        directory: the folder holding ``model_index.json`` (see :func:`read_sd_folder`).
        device: where the pipeline runs.
        dtype: the pipeline's compute dtype (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"auto"``
            or a ``torch.dtype``, as for ``TextToImagePipeline``); weights are read as float32.
    """
    return sd_pipeline(read_sd_folder(directory), device=device, dtype=dtype)


def load_sd_single_file(path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
    """A text-to-image pipeline of an original (CompVis / AUTOMATIC1111) Stable Diffusion 1.x
    ``.safetensors`` or ``.ckpt`` file (pickles only through ``torch.load(weights_only=True)``).

    Args:
        path: the checkpoint file (see :func:`read_sd_single_file`).
        device: where the pipeline runs.
        dtype: the pipeline's compute dtype, as for :func:`load_sd_folder`.
    """
    return sd_pipeline(read_sd_single_file(path), device=device, dtype=dtype)


def sd_pipeline(components: SDComponents, device: str | torch.device = "cpu",
                dtype: str | torch.dtype = "fp32") -> TextToImagePipeline:
    """A text-to-image pipeline of Stable Diffusion components.

    Its default image size is the U-Net's sample size in pixels, its schedule, padding and
    DDIM final step those of the checkpoint.

    Args:
        components: what :func:`read_sd_folder` or :func:`read_sd_single_file` returned.
        device: where the pipeline runs.
        dtype: the pipeline's compute dtype, as for :func:`load_sd_folder`.
    """
    c = components
    side = c.unet.config.sample_size * c.vae.latent_factor  # SD 1.x: 64 * 8 = 512
    config = PipelineConfig(
        name=c.name, schedule=c.sampler.schedule, height=side, width=side,
        pad_token_id=c.tokenizer.pad_token_id,
        set_alpha_to_one=bool(c.scheduler_config.get("set_alpha_to_one", True)))
    return TextToImagePipeline(c.unet, c.vae, c.text_encoder, config, device=device, dtype=dtype)


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
    are inferred from the shapes (:func:`mmgen.interop.ldm_keys.unet_config_from_ldm` and
    friends). The file carries no scheduler: the SD 1.x training schedule
    (:data:`SD1_SCHEDULER`) is used.

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
    state = load_state_dict(path)  # CorruptCheckpointError for a damaged file
    _check_single_file_keys(state, path)
    try:
        from diffusers.loaders import single_file_utils as sfu
    except ImportError:
        raise ImportError("loading an original single-file checkpoint needs diffusers: "
                          "pip install diffusers") from None

    unet_config = unet_config_from_ldm(strip_prefix(state, UNET_PREFIX))
    vae_config = vae_config_from_ldm(strip_prefix(state, VAE_PREFIX))
    text_state = text_model_keys(sfu.convert_ldm_clip_checkpoint(state))
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
             **{TEXT_PREFIX + k: v for k, v in text_model_keys(text).items()}}
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


def write_clip_tokenizer(folder: str | os.PathLike, context_length: int = 77,
                         pad_token_id: int = SPECIAL_TOKENS["<|endoftext|>"]) -> Path:
    """Write a transformers ``CLIPTokenizer`` folder for mmgen's tokenizer (open_clip's BPE,
    Stable Diffusion 1.x's vocabulary, special tokens spelt as transformers does): the
    vocabulary, the merges in rank order and the special tokens, padding with
    ``pad_token_id``. It tokenizes as ``mmgen.clip.tokenizer.CLIPTokenizer(context_length,
    pad_token_id)`` does; :func:`read_sd_folder` reads it back. Returns ``folder``."""
    from mmgen.clip.tokenizer import _bpe

    bpe = _bpe()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(token, token): i for token, i in bpe.encoder.items()}
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    token = {i: t for t, i in vocab.items()}
    folder = Path(folder)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m)
                                                                    for m in merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": token[pad_token_id]}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**special, "model_max_length": context_length, "tokenizer_class": "CLIPTokenizer",
         "do_lower_case": True}))
    return folder


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


# ----------------------------------------------------------------------------- single files


def _check_single_file_keys(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse, with what was found, a file that is not a complete SD 1.x checkpoint."""
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


# ----------------------------------------------------------------------------- writing


def _diffusers_state_dicts(c: SDComponents) -> tuple[dict[str, torch.Tensor], ...]:
    """(U-Net, VAE, text encoder) state dicts of mmgen models with diffusers/transformers
    names: the U-Net and VAE already use diffusers' names, CLIP uses OpenAI's."""
    return dict(c.unet.state_dict()), dict(c.vae.state_dict()), _clip_to_transformers(
        c.text_encoder)


def _clip_to_transformers(model: CLIPTextModel) -> dict[str, torch.Tensor]:
    """mmgen (OpenAI-named) CLIP text model -> transformers ``text_model.*`` keys; the inverse
    of :mod:`mmgen.interop.transformers_clip`'s map for text models without projection."""
    cfg = model.text_config
    # Subclasses of TextConfig (e.g. Shapes' restricted vocabulary) have no transformers form.
    if type(cfg) is not TextConfig or cfg.embed_dim:
        raise ValueError(f"only a plain CLIP text model without projection (TextConfig, "
                         f"embed_dim=0: Stable Diffusion 1.x's text encoder) can be written to "
                         f"a single file; got a {type(cfg).__name__} with "
                         f"embed_dim={cfg.embed_dim}")
    return clip_text_keys_to_transformers(model.state_dict())


def clip_text_keys_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An mmgen (OpenAI-named) CLIP text tower's state dict with transformers'
    ``text_model.*`` keys (the packed q/k/v split in three); ``text_projection`` and buffers
    other than the weights are the caller's to drop first."""
    names = [(r"^token_embedding\.", "embeddings.token_embedding."),
             (r"^positional_embedding$", "embeddings.position_embedding.weight"),
             (r"^transformer\.resblocks\.", "encoder.layers."),
             (r"^ln_final\.", "final_layer_norm."),
             (r"\.attn\.", ".self_attn."), (r"\.ln_1\.", ".layer_norm1."),
             (r"\.ln_2\.", ".layer_norm2."), (r"\.mlp\.c_fc\.", ".mlp.fc1."),
             (r"\.mlp\.c_proj\.", ".mlp.fc2.")]
    out = {}
    for key, value in state.items():
        for pattern, repl in names:
            key = re.sub(pattern, repl, key)
        if ".self_attn.in_proj_" in key:  # packed (q; k; v) -> three linears
            block, kind = key.split(".self_attn.in_proj_")
            for n, part in zip("qkv", value.chunk(3), strict=True):
                out[f"text_model.{block}.self_attn.{n}_proj.{kind}"] = part
        else:
            out[f"text_model.{key}"] = value
    return out
