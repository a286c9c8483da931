"""mmgen text-to-image pipeline -> a Stable Diffusion folder in diffusers' layout: the inverse
of :func:`mmgen.interop.stable_diffusion.read_sd_folder`, so that a model trained with mmgen
runs in the wider ecosystem::

    to_diffusers(mmgen.load("shapes-t2i"), "shapes-t2i-diffusers")
    pipe = diffusers.StableDiffusionPipeline.from_pretrained("shapes-t2i-diffusers")
    image = pipe("a large red circle in the center on a white background").images[0]

The folder holds ``unet/`` and ``vae/`` (diffusers' own config and weight names, which
mmgen's networks share), ``text_encoder/`` (a transformers ``CLIPTextModel``),
``tokenizer/`` (transformers' ``CLIPTokenizer`` files for open_clip's BPE vocabulary, the
same ids as mmgen's tokenizer: :func:`mmgen.interop.stable_diffusion.write_clip_tokenizer`),
``scheduler/`` (a ``DDIMScheduler`` on the pipeline's training schedule) and
``model_index.json``.

Two text encoders of mmgen have no plain transformers form, and are written exactly anyway:

* a restricted vocabulary (Shapes' ``kept_tokens``): the embedding is expanded back to all
  49,408 ids, each unknown id getting the unknown row the model reads for it;
* the ``"last+input"`` context (Shapes: the last hidden state and the layer-normalised input
  embeddings, side by side) is not what ``CLIPTextModel`` returns, so the folder names
  :class:`LastPlusInputCLIPTextModel` (``mmgen.interop.diffusers_export``) as its text
  encoder class: a ``CLIPTextModel`` with the same weights whose ``last_hidden_state`` is
  that context. diffusers imports it by name, so loading that folder needs mmgen installed;
  it never runs code from the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from mmgen.checkpoint import atomic_path, save_state_dict
from mmgen.clip.tokenizer import SOT_TOKEN_ID
from mmgen.diffusion.pipeline import TextToImagePipeline
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.interop.diffusers import to_diffusers_config
from mmgen.interop.stable_diffusion import clip_text_keys_to_transformers, write_clip_tokenizer

__all__ = ["LastPlusInputCLIPTextModel", "PreTrainedModel", "to_diffusers"]
# PreTrainedModel is exported on purpose: diffusers finds how to load a component class by
# looking for its base classes (``PreTrainedModel`` -> ``from_pretrained``) in its module.

_BETAS = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
_PREDICTIONS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


class LastPlusInputCLIPTextModel(CLIPTextModel):
    """transformers' ``CLIPTextModel`` whose ``last_hidden_state`` is mmgen's ``"last+input"``
    context: the final hidden states (N, L, W) and the input embeddings (token + position)
    layer-normalised without affine parameters (N, L, W), concatenated (N, L, 2W)."""

    def forward(self, input_ids: torch.Tensor | None = None, *args: Any,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> BaseModelOutputWithPooling:
        out = super().forward(input_ids, *args, output_hidden_states=True, return_dict=True,
                              **kwargs)
        inputs = out.hidden_states[0]  # (N, L, W): the embeddings, before the first layer
        inputs = F.layer_norm(inputs, inputs.shape[-1:])
        context = torch.cat([out.last_hidden_state, inputs], dim=-1)  # (N, L, 2W)
        return BaseModelOutputWithPooling(
            last_hidden_state=context, pooler_output=out.pooler_output,
            hidden_states=out.hidden_states if output_hidden_states else None,
            attentions=out.attentions)


def to_diffusers(pipe: TextToImagePipeline, directory: str | os.PathLike) -> Path:
    """Write ``pipe`` (fp32 weights, exact path) as a diffusers Stable Diffusion folder that
    ``diffusers.StableDiffusionPipeline.from_pretrained`` loads (see the module docstring);
    atomically: ``directory`` is replaced only when everything is written. Returns it."""
    if not isinstance(pipe, TextToImagePipeline) or pipe.denoiser_name != "unet":
        raise ValueError(f"to_diffusers writes text-to-image U-Net pipelines; got a "
                         f"{type(pipe).__name__}")
    if pipe.fast:
        raise ValueError("this pipeline is on the fast path (bf16 weights); export the "
                         "pipeline as loaded, before enable_fast()")
    directory = Path(directory)
    text_class = _text_encoder_class(pipe.text_encoder)
    library = "transformers" if text_class is CLIPTextModel else __name__
    with atomic_path(directory) as tmp:
        for name, net in (("unet", pipe.unet), ("vae", pipe.vae)):
            _write(tmp / name, "diffusion_pytorch_model.safetensors", net.state_dict(),
                   to_diffusers_config(net.config))
        _text_encoder(pipe.text_encoder, text_class).save_pretrained(tmp / "text_encoder")
        write_clip_tokenizer(tmp / "tokenizer", pipe.text_encoder.text_config.context_length,
                             pipe.config.pad_token_id)
        _write_json(tmp / "scheduler" / "scheduler_config.json",
                    _scheduler_config(pipe.config.schedule, pipe.config.set_alpha_to_one))
        _write_json(tmp / "model_index.json", {
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": [library, text_class.__name__],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "safety_checker": [None, None], "feature_extractor": [None, None],
            "requires_safety_checker": False})
    return directory


def _text_encoder_class(text_encoder: torch.nn.Module) -> type[CLIPTextModel]:
    """The transformers class that computes the text encoder's context."""
    context = getattr(getattr(text_encoder, "config", None), "context", "last")
    if context == "last":
        return CLIPTextModel
    if context == "last+input":
        return LastPlusInputCLIPTextModel
    raise ValueError(f"text encoder context {context!r} has no diffusers form")


def _text_encoder(model: torch.nn.Module, cls: type[CLIPTextModel]) -> CLIPTextModel:
    """The transformers text model (class ``cls``) with an mmgen CLIP text tower's
    weights, every one checked in (``strict``); it saves in the layout of the installed
    transformers."""
    c = model.text_config
    state = {k: v for k, v in model.state_dict().items()
             if k not in ("text_projection", "token_map")}
    if getattr(c, "kept_tokens", 0):  # restricted vocabulary: one row per id again
        state["token_embedding.weight"] = model.token_embedding.weight[model.token_map]
    config = CLIPTextConfig(
        vocab_size=c.vocab_size, hidden_size=c.width, intermediate_size=int(c.width * c.mlp_ratio),
        num_hidden_layers=c.layers, num_attention_heads=c.heads,
        max_position_embeddings=c.context_length, hidden_act=c.activation, layer_norm_eps=1e-5,
        bos_token_id=SOT_TOKEN_ID, eos_token_id=c.eos_token_id, pad_token_id=1)
    hf = cls(config)
    weights = clip_text_keys_to_transformers(state)  # text_model.* keys
    if not any(k.startswith("text_model.") for k in hf.state_dict()):  # transformers >= 5
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    hf.load_state_dict(weights, strict=True)
    return hf.eval()


def _scheduler_config(schedule: NoiseSchedule, set_alpha_to_one: bool) -> dict[str, Any]:
    """diffusers ``DDIMScheduler`` config of a :class:`NoiseSchedule` (the inverse of
    :func:`mmgen.interop.diffusers_schedulers.schedule_from_diffusers`)."""
    s = schedule
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": s.num_train_timesteps,
            "beta_start": s.beta_start, "beta_end": s.beta_end,
            "beta_schedule": _BETAS[s.beta_schedule],
            "prediction_type": _PREDICTIONS[s.prediction_type],
            "rescale_betas_zero_snr": s.zero_terminal_snr,
            "clip_sample": s.clip_sample > 0, "clip_sample_range": s.clip_sample or 1.0,
            "timestep_spacing": s.timestep_spacing, "steps_offset": s.steps_offset,
            "set_alpha_to_one": set_alpha_to_one}


def _write(folder: Path, weights: str, state: dict[str, torch.Tensor],
           config: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    save_state_dict({k: v.detach().float().contiguous() for k, v in state.items()},
                    folder / weights, metadata={"format": "pt"})
    _write_json(folder / "config.json", config)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
