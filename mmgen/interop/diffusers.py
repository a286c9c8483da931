"""diffusers ``UNet2DConditionModel`` / ``AutoencoderKL`` -> :class:`mmgen.diffusion.unet.UNet`
/ :class:`mmgen.vae.AutoencoderKL`, and schedulers -> mmgen samplers; ``DiTTransformer2DModel``
-> :class:`mmgen.dit.DiT` through :mod:`mmgen.interop.dit`.

mmgen's U-Net and VAE keep diffusers' parameter names, so weights load as they are (only the
VAE attention names of diffusers < 0.14 are renamed); every key and shape is checked by
:func:`mmgen.interop.convert.convert_state_dict`. The work is in the *configuration*:
:func:`unet_config_from_diffusers` and :func:`vae_config_from_diffusers` translate a diffusers
``config.json`` and refuse, naming the option, any setting that would build a network mmgen
does not have (SDXL's added embeddings, class embeddings, other block types, ...);
:func:`to_diffusers_config` is the inverse, for writing diffusers-layout folders.

    unet = from_diffusers(UNet2DConditionModel.from_pretrained(repo, subfolder="unet"))
    vae = from_diffusers("stable-diffusion-v1-5/vae")          # a component folder, no diffusers
    sampler = from_diffusers("stable-diffusion-v1-5/scheduler")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmgen.checkpoint import load_state_dict, read_json
from mmgen.diffusion.unet import PRESETS as UNET_PRESETS
from mmgen.diffusion.unet import UNet, UNetConfig
from mmgen.interop.convert import convert_state_dict, regex_rename
from mmgen.interop.dit import DIT_CLASSES, dit_from_diffusers_state_dict
from mmgen.vae.autoencoder_kl import PRESETS as VAE_PRESETS
from mmgen.vae.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig

UNET_CLASS = "UNet2DConditionModel"
VAE_CLASS = "AutoencoderKL"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")

# diffusers options mmgen's U-Net does not model: option -> the values it accepts (the first
# is diffusers' default). Any other value builds a different network.
UNET_FIXED: dict[str, tuple[Any, ...]] = {
    "center_input_sample": (False,),
    "mid_block_type": ("UNetMidBlock2DCrossAttn",),
    "only_cross_attention": (False,),
    "downsample_padding": (1,),
    "mid_block_scale_factor": (1,),
    "act_fn": ("silu",),
    "reverse_transformer_layers_per_block": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "num_attention_heads": (None,),
    "dual_cross_attention": (False,),
    "class_embed_type": (None,),
    "addition_embed_type": (None,),
    "addition_time_embed_dim": (None,),
    "num_class_embeds": (None,),
    "resnet_time_scale_shift": ("default",),
    "resnet_skip_time_act": (False,),
    "resnet_out_scale_factor": (1,),
    "time_embedding_type": ("positional",),
    "time_embedding_dim": (None,),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "projection_class_embeddings_input_dim": (None,),
    "attention_type": ("default",),
    "class_embeddings_concat": (False,),
    "mid_block_only_cross_attention": (None, False),
    "cross_attention_norm": (None,),
}
# Options that do not change the network. upcast_attention (SD 2.x sets it) asks diffusers
# to compute attention scores in float32, which only matters for float16 numerics.
UNET_IGNORED = ("upcast_attention", "addition_embed_type_num_heads")
VAE_FIXED: dict[str, tuple[Any, ...]] = {
    "act_fn": ("silu",),
    "latents_mean": (None,),
    "latents_std": (None,),
    "use_quant_conv": (True,),
    "use_post_quant_conv": (True,),
    "mid_block_add_attention": (True,),
}
# force_upcast: diffusers pipelines decode in float32 when it is set; numerics only.
VAE_IGNORED = ("force_upcast",)

# VAE mid-block attention names of diffusers < 0.14 (still in some .bin checkpoints).
_RENAME_OLD_VAE = regex_rename([
    (r"\.attentions\.0\.query\.", ".attentions.0.to_q."),
    (r"\.attentions\.0\.key\.", ".attentions.0.to_k."),
    (r"\.attentions\.0\.value\.", ".attentions.0.to_v."),
    (r"\.attentions\.0\.proj_attn\.", ".attentions.0.to_out.0."),
])


# ----------------------------------------------------------------------------- public API


def from_diffusers(obj: Any, *, dtype: torch.dtype | None = None) -> Any:
    """The mmgen equivalent of a diffusers component, with its weights, in eval mode.

    Args:
        obj: an in-memory ``UNet2DConditionModel``, ``AutoencoderKL`` or
            ``DiTTransformer2DModel``; a component folder in diffusers' layout
            (``config.json`` + ``diffusion_pytorch_model.safetensors`` or ``.bin``, read
            without importing diffusers); or a scheduler / scheduler folder
            (``scheduler_config.json``), which becomes an mmgen sampler through
            :func:`mmgen.interop.diffusers_schedulers.sampler_from_diffusers`.
        dtype: dtype of the returned model; None keeps the dtype of the source weights.

    Returns:
        :class:`mmgen.diffusion.unet.UNet`, :class:`mmgen.vae.AutoencoderKL`,
        :class:`mmgen.dit.DiT` (see :func:`mmgen.interop.dit.dit_from_diffusers`), or a sampler.
        An in-memory model's weights are copied (on its device); the source is untouched.

    Raises:
        ValueError: a diffusers option or block type mmgen does not implement (named).
        mmgen.interop.KeyMapError: the weights do not fit the config (keys/shapes listed).
    """
    if isinstance(obj, (str, os.PathLike)):
        return _from_folder(Path(obj), dtype)
    names = {c.__name__ for c in type(obj).__mro__}
    if "SchedulerMixin" in names or type(obj).__name__.endswith("Scheduler"):
        from mmgen.interop.diffusers_schedulers import sampler_from_diffusers

        return sampler_from_diffusers(obj)
    for cls in (UNET_CLASS, VAE_CLASS, *DIT_CLASSES):
        if cls in names:
            config = {**dict(obj.config), "_class_name": cls}
            source_dtype = next((p.dtype for p in obj.parameters()), torch.float32)
            state = {k: v.detach().to(dtype or v.dtype, copy=True)
                     for k, v in obj.state_dict().items()}
            return _build(state, config, dtype or source_dtype)
    raise TypeError(
        f"from_diffusers takes a diffusers {UNET_CLASS}, {VAE_CLASS}, {DIT_CLASSES[0]} or "
        f"scheduler, or the path of such a component folder; got {type(obj).__name__}.")


def from_diffusers_state_dict(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], *,
                              dtype: torch.dtype | None = None) -> UNet | AutoencoderKL | Any:
    """An mmgen U-Net, VAE or DiT from a diffusers-named state dict and its diffusers config
    dict (``config["_class_name"]`` says which); see :func:`from_diffusers`. The model takes
    the given tensors themselves (no copy) unless ``dtype`` asks for a conversion."""
    return _build(dict(state), dict(config), dtype)


def unet_config_from_diffusers(cfg: Mapping[str, Any]) -> UNetConfig:
    """The :class:`UNetConfig` of a diffusers ``UNet2DConditionModel`` config dict.

    Missing keys take diffusers' defaults (note: ``cross_attention_dim`` defaults to 1280).

    Raises:
        ValueError: an option that changes the architecture in a way mmgen does not model.
    """
    _check_class(cfg, UNET_CLASS)
    _check_options(cfg, UNET_FIXED, UNET_IGNORED, _UNET_MAPPED, "UNet2DConditionModel")
    channels = tuple(cfg.get("block_out_channels", (320, 640, 1280, 1280)))
    levels = len(channels)
    down = tuple(cfg.get("down_block_types", ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)))
    up = tuple(cfg.get("up_block_types", ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3))
    for types, allowed in ((down, ("CrossAttnDownBlock2D", "DownBlock2D")),
                           (up, ("CrossAttnUpBlock2D", "UpBlock2D"))):
        bad = [t for t in types if t not in allowed]
        if bad or len(types) != levels:
            raise ValueError(
                f"UNet2DConditionModel block types {list(types)} are not supported: mmgen's "
                f"U-Net has one of {allowed} per level ({levels} levels).")
    attention = tuple(t == "CrossAttnDownBlock2D" for t in down)
    mirrored = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    if up != mirrored:
        raise ValueError(f"up_block_types {list(up)} do not mirror down_block_types "
                         f"{list(down)} (expected {list(mirrored)}); mmgen's U-Net is "
                         "symmetric.")
    heads = cfg.get("attention_head_dim", 8)  # diffusers' misnomer: these are head counts
    sample_size = cfg.get("sample_size") or UNetConfig.sample_size
    return UNetConfig(
        in_channels=cfg.get("in_channels", 4),
        out_channels=cfg.get("out_channels", 4),
        block_out_channels=channels,
        layers_per_block=_same(cfg, "layers_per_block", 2),
        attention_blocks=attention,
        cross_attention_dim=_same(cfg, "cross_attention_dim", 1280),
        heads=(heads,) * levels if isinstance(heads, int) else tuple(heads),
        use_linear_projection=bool(cfg.get("use_linear_projection", False)),
        transformer_layers=_same(cfg, "transformer_layers_per_block", 1),
        norm_num_groups=_required(cfg, "norm_num_groups", 32),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
        flip_sin_to_cos=bool(cfg.get("flip_sin_to_cos", True)),
        freq_shift=float(cfg.get("freq_shift", 0)),
        dropout=float(cfg.get("dropout", 0.0)),
        sample_size=_side(sample_size),
    )


def vae_config_from_diffusers(cfg: Mapping[str, Any]) -> AutoencoderKLConfig:
    """The :class:`AutoencoderKLConfig` of a diffusers ``AutoencoderKL`` config dict.

    Raises:
        ValueError: an option that changes the architecture in a way mmgen does not model.
    """
    _check_class(cfg, VAE_CLASS)
    _check_options(cfg, VAE_FIXED, VAE_IGNORED, _VAE_MAPPED, "AutoencoderKL")
    channels = tuple(cfg.get("block_out_channels", (64,)))
    for key, block in (("down_block_types", "DownEncoderBlock2D"),
                       ("up_block_types", "UpDecoderBlock2D")):
        types = list(cfg.get(key, [block]))
        if types != [block] * len(channels):
            raise ValueError(f"AutoencoderKL {key}={types} is not supported: mmgen's VAE has "
                             f"one {block} per level ({len(channels)} levels).")
    shift = cfg.get("shift_factor")
    return AutoencoderKLConfig(
        in_channels=cfg.get("in_channels", 3),
        out_channels=cfg.get("out_channels", 3),
        latent_channels=cfg.get("latent_channels", 4),
        block_out_channels=channels,
        layers_per_block=cfg.get("layers_per_block", 1),
        norm_num_groups=cfg.get("norm_num_groups", 32),
        scaling_factor=float(cfg.get("scaling_factor", 0.18215)),
        shift_factor=0.0 if shift is None else float(shift),
        sample_size=_side(cfg.get("sample_size", 32)),
    )


def to_diffusers_config(config: UNetConfig | AutoencoderKLConfig) -> dict[str, Any]:
    """The diffusers ``config.json`` dict of an mmgen U-Net or VAE config (the inverse of
    :func:`unet_config_from_diffusers` / :func:`vae_config_from_diffusers`); with the
    model's ``state_dict()`` saved as ``diffusion_pytorch_model.safetensors`` beside it,
    diffusers' ``from_pretrained`` loads the folder."""
    if isinstance(config, UNetConfig):
        c = config
        heads = c.heads[0] if len(set(c.heads)) == 1 else list(c.heads)
        return {
            "_class_name": UNET_CLASS, "sample_size": c.sample_size,
            "in_channels": c.in_channels, "out_channels": c.out_channels,
            "center_input_sample": False, "flip_sin_to_cos": c.flip_sin_to_cos,
            "freq_shift": c.freq_shift,
            "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D"
                                 for a in c.attention_blocks],
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D"
                               for a in reversed(c.attention_blocks)],
            "block_out_channels": list(c.block_out_channels),
            "layers_per_block": c.layers_per_block, "downsample_padding": 1,
            "mid_block_scale_factor": 1, "dropout": c.dropout, "act_fn": "silu",
            "norm_num_groups": c.norm_num_groups, "norm_eps": c.norm_eps,
            "cross_attention_dim": c.cross_attention_dim,
            "transformer_layers_per_block": c.transformer_layers,
            "attention_head_dim": heads, "use_linear_projection": c.use_linear_projection,
        }
    if isinstance(config, AutoencoderKLConfig):
        c = config
        levels = len(c.block_out_channels)
        return {
            "_class_name": VAE_CLASS, "in_channels": c.in_channels,
            "out_channels": c.out_channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels,
            "block_out_channels": list(c.block_out_channels),
            "layers_per_block": c.layers_per_block, "act_fn": "silu",
            "latent_channels": c.latent_channels, "norm_num_groups": c.norm_num_groups,
            "sample_size": c.sample_size, "scaling_factor": c.scaling_factor,
            "shift_factor": c.shift_factor or None,
        }
    raise TypeError(f"to_diffusers_config takes a UNetConfig or AutoencoderKLConfig, got "
                    f"{type(config).__name__}.")


# ----------------------------------------------------------------------------- loading


def _from_folder(path: Path, dtype: torch.dtype | None) -> Any:
    if path.is_file() and path.suffix == ".json":
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a diffusers component folder")
    if (path / "scheduler_config.json").is_file():
        from mmgen.interop.diffusers_schedulers import sampler_from_diffusers

        return sampler_from_diffusers(path)
    if (path / "model_index.json").is_file():
        raise ValueError(f"{path} is a whole diffusers pipeline; pass one component folder "
                         "(e.g. its unet/ or vae/), or load the pipeline with mmgen.load.")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json (nor scheduler_config.json): not "
                                "a diffusers component folder")
    config = read_json(config_file)
    weights = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{path} has no weights (looked for {', '.join(WEIGHT_FILES)}); "
                                "sharded checkpoints are not supported")
    return _build(load_state_dict(weights), config, dtype)


def _build(state: dict[str, torch.Tensor], config: dict[str, Any],
           dtype: torch.dtype | None) -> UNet | AutoencoderKL | Any:
    """Model of the config's class, built without allocating random weights, then given the
    (checked) state dict's tensors."""
    cls_name = config.get("_class_name")
    if cls_name in DIT_CLASSES:
        return dit_from_diffusers_state_dict(state, config, dtype=dtype)
    if cls_name == UNET_CLASS:
        model_cls, presets, family = UNet, UNET_PRESETS, "unet"
        mm_config: UNetConfig | AutoencoderKLConfig = unet_config_from_diffusers(config)
    elif cls_name == VAE_CLASS:
        model_cls, presets, family = AutoencoderKL, VAE_PRESETS, "vae"
        mm_config = vae_config_from_diffusers(config)
        state = {_RENAME_OLD_VAE(k): v for k, v in state.items()}
        # diffusers < 0.14 stored those attention projections as 1x1 convs: (C, C, 1, 1).
        state = {k: v[:, :, 0, 0] if ".attentions.0.to_" in k and v.ndim == 4 else v
                 for k, v in state.items()}
    else:
        raise ValueError(f"cannot convert diffusers class {cls_name!r}; supported: "
                         f"{UNET_CLASS}, {VAE_CLASS}, {DIT_CLASSES[0]} and schedulers")
    with torch.device("meta"):
        model = model_cls(mm_config)
    state = convert_state_dict(state, model)  # every key and shape checked
    if dtype is None:
        dtype = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.model_name = next((f"{family}/{n}" for n, c in presets.items() if c == mm_config),
                            None)
    return model.eval()


# ----------------------------------------------------------------------------- config checks


_UNET_MAPPED = ("in_channels", "out_channels", "block_out_channels", "layers_per_block",
                "down_block_types", "up_block_types", "cross_attention_dim",
                "attention_head_dim", "use_linear_projection", "transformer_layers_per_block",
                "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift", "dropout",
                "sample_size")
_VAE_MAPPED = ("in_channels", "out_channels", "down_block_types", "up_block_types",
               "block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups",
               "sample_size", "scaling_factor", "shift_factor")


def _check_class(cfg: Mapping[str, Any], expected: str) -> None:
    name = cfg.get("_class_name", expected)
    if name != expected:
        raise ValueError(f"expected a diffusers {expected} config, got _class_name={name!r}")


def _check_options(cfg: Mapping[str, Any], fixed: Mapping[str, tuple[Any, ...]],
                   ignored: tuple[str, ...], mapped: tuple[str, ...], what: str) -> None:
    """Refuse every option value that builds a network mmgen does not have."""
    for key, value in cfg.items():
        if key.startswith("_") or key in ignored or key in mapped:
            continue
        if key in fixed:
            allowed = fixed[key]
            values = value if isinstance(value, (list, tuple)) else [value]  # per-level lists
            if not all(v in allowed for v in values):
                raise ValueError(
                    f"{what} option {key}={value!r} is not supported by mmgen (supported: "
                    f"{', '.join(map(repr, allowed))}); this checkpoint's architecture "
                    "differs from the Stable Diffusion 1.x/2.x one mmgen implements.")
        elif value not in (None, False):
            raise ValueError(
                f"unknown {what} option {key}={value!r}: mmgen cannot tell whether it changes "
                "the architecture, so it refuses to guess.")


def _same(cfg: Mapping[str, Any], key: str, default: int) -> int:
    """An int option that diffusers also accepts per level: all levels must agree."""
    value = cfg.get(key, default)
    if isinstance(value, (list, tuple)):
        if any(v != value[0] for v in value) or not isinstance(value[0], int):
            raise ValueError(f"UNet2DConditionModel option {key}={list(value)} varies per "
                             "level, which mmgen's U-Net does not support (one value for all).")
        value = value[0]
    return int(value)


def _required(cfg: Mapping[str, Any], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ValueError(f"UNet2DConditionModel option {key}=None (no output GroupNorm) is "
                         "not supported by mmgen")
    return int(value)


def _side(size: Any) -> int:
    """diffusers' sample_size as one int (a square [s, s] list is accepted)."""
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"non-square sample_size {list(size)} is not supported; mmgen "
                             "stores one side")
        size = size[0]
    return int(size)
