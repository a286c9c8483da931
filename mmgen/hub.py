"""``mmgen.load``: one entry point for every saved model, offline.

The top floor of the package: it finds a model by bundled name, installed name or path, and
dispatches on what it finds:

* an mmgen model folder (``config.json``) -> the :class:`~mmgen.registry.PretrainedModel`
  subclass it names;
* an mmgen pipeline folder (``pipeline.json``) -> the :class:`~mmgen.pipeline.Pipeline`
  subclass it names (text-to-image, and every future kind, each as itself);
* a Stable Diffusion folder in diffusers' layout (``model_index.json``), or an original
  Stable Diffusion single file -> a text-to-image pipeline, through :mod:`mmgen.interop`;
* an official DiT checkpoint (``.pt`` / ``.pth``, or ``.safetensors`` with DiT's keys) or a
  diffusers component folder (``config.json`` with ``_class_name``: a DiT, U-Net or VAE) ->
  that model, through :mod:`mmgen.interop`.

Names are looked up in the user's model directory (where ``mmgen train --recipe NAME
--install`` puts its result; :func:`user_model_dir`), then in the weights bundled with the
package. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mmgen.checkpoint import read_json, safetensors_shapes
from mmgen.pipeline import PIPELINE_CONFIG, Pipeline
from mmgen.registry import (
    CONFIG_NAME,
    PretrainedModel,
    read_config,
    read_folder_meta,
    resolve_class,
)

# The weights shipped inside the package: one folder each.
BUNDLED_DIR = Path(__file__).parent / "weights"


def user_model_dir() -> Path:
    """Where installed models live: ``$MMGEN_HOME/models``, else
    ``$XDG_DATA_HOME/mmgen/models`` (default ``~/.local/share/mmgen/models``)."""
    if os.environ.get("MMGEN_HOME"):
        return Path(os.environ["MMGEN_HOME"]).expanduser() / "models"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser() / "mmgen" / "models"


def _is_model_folder(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() or (path / PIPELINE_CONFIG).is_file()


def _named(name: str) -> Path | None:
    """The folder of an installed or bundled model called ``name`` (installed first)."""
    if not name or Path(name).name != name:  # a plain name, never a path
        return None
    return next((d / name for d in (user_model_dir(), BUNDLED_DIR)
                 if _is_model_folder(d / name)), None)


def list_pretrained() -> list[str]:
    """Names of the installed and bundled models (loadable offline by name)."""
    names = {p.name for d in (user_model_dir(), BUNDLED_DIR) if d.is_dir()
             for p in d.iterdir() if _is_model_folder(p)}
    return sorted(names)


def model_dir(name_or_path: str | os.PathLike) -> Path:
    """The folder of a saved model path or of an installed / bundled model name."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    found = _named(str(name_or_path))
    if found is not None:
        return found
    known = ", ".join(list_pretrained()) or "none yet"
    raise FileNotFoundError(
        f"{str(name_or_path)!r} is neither a model folder nor an installed or bundled model "
        f"(installed and bundled: {known}); create untrained models with mmgen.create_model")


def load(name_or_path: str | os.PathLike, kind: type | None = None, *, fast: bool = False,
         compile: bool = False, **kwargs: Any) -> Any:
    """Load a model or pipeline, offline.

    Args:
        name_or_path: an installed or bundled name (``"mnist-lenet5"``, ``"shapes-t2i"``), a
            folder saved by mmgen (a model's ``config.json`` or a pipeline's
            ``pipeline.json``), a Stable Diffusion folder in diffusers' layout
            (``model_index.json``), an original Stable Diffusion single file
            (``.safetensors`` / ``.ckpt``), an official DiT checkpoint (``.pt``), or a
            diffusers component folder (DiT, U-Net or VAE, as an fp32 mmgen model).
        kind: the class the result must be (or subclass), e.g. ``TextToImagePipeline`` or
            ``CLIP``; checked from the saved class name before anything is loaded, a
            ``ValueError`` naming both classes otherwise.
        fast: a diffusion pipeline on the fast inference path (bf16 where native, tiled
            attention, ...; ``pipe.enable_fast()``, see :mod:`mmgen.fast`).
        compile: the fast path with ``torch.compile`` too (implies ``fast``).
        kwargs: for pipelines, e.g. ``device`` and ``dtype``.
    """
    loaded = _load(name_or_path, kind, **kwargs)
    if fast or compile:
        if not hasattr(loaded, "enable_fast"):
            raise ValueError(f"fast=True is for diffusion pipelines; {str(name_or_path)!r} is "
                             f"a {type(loaded).__name__}")
        loaded.enable_fast(compile=compile)
    return loaded


def _load(name_or_path: str | os.PathLike, kind: type | None = None, **kwargs: Any) -> Any:
    """:func:`load` without the fast path. The Stable Diffusion readers import every network
    family (and the training engine): only for the formats that need them."""
    if kind is not None:
        found = saved_class(name_or_path)
        if not issubclass(found, kind):
            raise ValueError(f"{str(name_or_path)!r} holds a {found.__name__} "
                             f"({found.__module__}), not a {kind.__name__}; pick a model of "
                             "that kind (mmgen models --pretrained lists the installed ones)")
    path = Path(name_or_path)
    if path.is_file() and not _is_dit_file(path):
        from mmgen.interop.stable_diffusion import load_sd_single_file

        return load_sd_single_file(path, **kwargs)
    directory = None if path.is_file() else model_dir(name_or_path)
    if directory is not None and (directory / PIPELINE_CONFIG).is_file():
        return Pipeline.from_pretrained(directory, **kwargs)
    if directory is not None and (directory / "model_index.json").is_file():
        from mmgen.interop.stable_diffusion import load_sd_folder

        return load_sd_folder(directory, **kwargs)
    if kwargs:
        raise TypeError(f"unexpected argument(s) {sorted(kwargs)} for a single model")
    if directory is None:
        from mmgen.interop.dit import load_dit_checkpoint

        return load_dit_checkpoint(path)
    if _diffusers_class(directory):
        from mmgen.interop.diffusers import from_diffusers

        return from_diffusers(directory, dtype=torch.float32)
    return PretrainedModel.from_pretrained(directory)


def load_class_pipeline(model: str | os.PathLike, vae: str | os.PathLike | None = None,
                        **kwargs: Any) -> Pipeline:
    """A class-conditional pipeline: a saved one (``vae`` None), or one made of a DiT (an
    official checkpoint, a diffusers or mmgen DiT folder) and the AutoencoderKL folder
    ``vae`` (diffusers or mmgen), with :func:`mmgen.dit.pipeline.default_config`.

    Args:
        model: the pipeline, or the DiT.
        vae: the VAE folder, for a DiT.
        kwargs: e.g. ``device`` and ``dtype``.
    """
    from mmgen.dit.pipeline import ClassConditionalPipeline, default_config
    from mmgen.vae import AutoencoderKL

    if issubclass(saved_class(model), ClassConditionalPipeline):
        if vae is not None:
            raise ValueError(f"{model} is a pipeline with its own VAE; give no VAE")
        return load(model, **kwargs)
    if vae is None:
        raise ValueError(f"{model} is a bare DiT, which makes latents: give a VAE folder to "
                         "decode them (--vae: a diffusers or mmgen AutoencoderKL, e.g. "
                         "stabilityai/sd-vae-ft-ema)")
    from mmgen.dit import DiT

    dit, decoder = load(model, kind=DiT), load(vae, kind=AutoencoderKL)
    config = default_config(dit, decoder, name=Path(model).stem)
    return ClassConditionalPipeline(dit, decoder, config, **kwargs)


def saved_class(name_or_path: str | os.PathLike) -> type:
    """The class :func:`load` would return for ``name_or_path``, read from the saved class
    name (nothing is loaded): a model class, a pipeline class, the text-to-image pipeline
    for Stable Diffusion folders and files, the mmgen class of a diffusers component folder,
    or :class:`~mmgen.dit.DiT` for an official DiT checkpoint."""
    path = Path(name_or_path)
    directory = None if path.is_file() else model_dir(name_or_path)
    foreign = _diffusers_class(directory) if directory is not None else \
        "DiTTransformer2DModel" if _is_dit_file(path) else None
    if foreign is not None:
        return _mmgen_class(foreign, directory or path)
    if directory is not None and (directory / PIPELINE_CONFIG).is_file():
        meta = read_folder_meta(directory, PIPELINE_CONFIG, "an mmgen pipeline folder")
        return resolve_class(meta["class"], Pipeline, directory / PIPELINE_CONFIG)
    if directory is not None and (directory / CONFIG_NAME).is_file():
        return resolve_class(read_config(directory)["class"], PretrainedModel,
                             directory / CONFIG_NAME)
    if directory is not None and not (directory / "model_index.json").is_file():
        raise FileNotFoundError(f"{directory} is not a model folder: it has no {CONFIG_NAME}, "
                                f"{PIPELINE_CONFIG} or model_index.json")
    from mmgen.diffusion.pipeline import TextToImagePipeline

    return TextToImagePipeline


def _is_dit_file(path: Path) -> bool:
    """Whether the file ``path`` is an official DiT checkpoint: a ``.pt`` / ``.pth`` (Stable
    Diffusion single files are ``.ckpt`` / ``.safetensors``) or a ``.safetensors`` holding
    DiT's patch embedding (read from its header)."""
    if path.suffix in (".pt", ".pth"):
        return True
    return path.suffix == ".safetensors" and "x_embedder.proj.weight" in safetensors_shapes(path)


def _diffusers_class(directory: Path) -> str | None:
    """The ``_class_name`` of a diffusers component folder (a ``config.json`` that is not an
    mmgen model's), else None."""
    if not (directory / CONFIG_NAME).is_file() or (directory / PIPELINE_CONFIG).is_file():
        return None
    meta = read_json(directory / CONFIG_NAME)
    name = meta.get("_class_name") if isinstance(meta, dict) and "class" not in meta else None
    return name if isinstance(name, str) else None


def _mmgen_class(diffusers_class: str, source: Path) -> type:
    """The mmgen class :func:`load` makes of a diffusers class (or an official DiT file)."""
    from mmgen.diffusion.unet import UNet
    from mmgen.dit import DiT
    from mmgen.vae import AutoencoderKL

    classes = {"UNet2DConditionModel": UNet, "AutoencoderKL": AutoencoderKL,
               "DiTTransformer2DModel": DiT, "Transformer2DModel": DiT}
    if diffusers_class not in classes:
        raise ValueError(f"{source} holds a diffusers {diffusers_class}, which mmgen does not "
                         f"convert (it converts {', '.join(classes)})")
    return classes[diffusers_class]
