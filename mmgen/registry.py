"""Model registry and the mmgen checkpoint format.

A model is a ``PretrainedModel`` built from one typed config dataclass. Presets are registered
by name (``"cnn/resnet18"``) as factory functions, timm-style::

    @register_model("toy/mlp")
    def toy_mlp(**overrides) -> MLP:
        return MLP(MLPConfig(**overrides))

A saved model is a directory with two files:

* ``config.json``: ``{"model": <registered name or null>, "class": <module.Class>,
  "config": <the config dataclass as JSON>, "mmgen_version": ...}``
* ``model.safetensors``: the state dict.

Loading never imports anything outside the ``mmgen`` package and never unpickles code.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import json
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from mmgen.checkpoint import atomic_path, load_state_dict, save_state_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Where bundled (pretrained, shipped-with-the-package) models live: one folder each.
BUNDLED_DIR = Path(__file__).parent / "weights"

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CLASSES: dict[str, type[PretrainedModel]] = {}
M = TypeVar("M", bound="PretrainedModel")


# ----------------------------------------------------------------------------- registry


def register_model(name: str) -> Callable[[Callable[..., M]], Callable[..., M]]:
    """Register a factory ``fn(**overrides) -> model`` under ``name`` (e.g. ``"cnn/lenet5"``)."""

    def wrap(fn: Callable[..., M]) -> Callable[..., M]:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a glob ``pattern`` ("cnn/*")."""
    _import_families()
    names = sorted(_MODELS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model with random weights; ``overrides`` replace config fields."""
    _import_families()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models()) or 'none'}")
    model = _MODELS[name](**overrides)
    if isinstance(model, PretrainedModel):
        model.model_name = name
    return model


def _import_families() -> None:
    """Import the model-family packages so their ``@register_model`` calls run."""
    for family in ("cnn", "gan", "vae", "diffusion", "dit", "clip"):
        try:
            importlib.import_module(f"mmgen.{family}")
        except ModuleNotFoundError as e:
            if e.name != f"mmgen.{family}":  # a family that exists but fails to import
                raise


# ----------------------------------------------------------------------------- configs


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (possibly nested) as a JSON-ready dict."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild config dataclass ``cls`` from ``data``; nested dataclasses and tuples restored.

    Unknown keys are an error (a checkpoint from a newer or different model); missing keys take
    the field defaults.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(
            f"{cls.__name__} has no field(s) {sorted(unknown)}; fields: {sorted(fields)}"
        )
    return cls(**{k: _coerce(hints[k], v) for k, v in data.items()})


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        if value is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    return value


# ----------------------------------------------------------------------------- models


class PretrainedModel(nn.Module):
    """Base class: a module built from ``config`` that can save and load itself.

    Subclasses set ``config_class`` and call ``super().__init__(config)`` first.
    """

    config_class: ClassVar[type]

    def __init__(self, config: Any):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.model_name: str | None = None  # set by create_model / from_pretrained
        # JSON-able facts saved with the weights: class labels, preprocessing, results, ...
        self.info: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[_class_path(cls)] = cls

    def save_pretrained(self, directory: str | os.PathLike,
                        dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (atomically).

        Args:
            directory: the model folder (replaced if it exists).
            dtype: store floating-point tensors in this dtype (``torch.float16`` for bundled
                weights); loading casts them back to the model's dtype.
        """
        directory = Path(directory)
        meta = {
            "model": self.model_name,
            "class": _class_path(type(self)),
            "config": config_to_dict(self.config),
            "info": self.info,
            "mmgen_version": _version(),
        }
        state = self.state_dict()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            save_state_dict(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike) -> M:
        """Load a model saved by :meth:`save_pretrained` (exact weights, eval mode)."""
        meta = read_config(directory)
        saved_cls = _resolve_class(meta["class"])
        if not issubclass(saved_cls, cls):
            raise TypeError(f"{directory} holds a {meta['class']}, not a {cls.__name__}")
        model = saved_cls(config_from_dict(saved_cls.config_class, meta["config"]))
        state = load_state_dict(_weights_file(Path(directory)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{directory}: weights do not fit {meta['class']} "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        model.model_name = meta.get("model")
        model.info = meta.get("info") or {}
        return model.eval()


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve_class(path: str) -> type[PretrainedModel]:
    """Map a ``module.Class`` path to a PretrainedModel subclass, importing only mmgen modules."""
    if path not in _CLASSES:
        module = path.rpartition(".")[0]
        if module != "mmgen" and not module.startswith("mmgen."):
            raise ValueError(
                f"refusing to import {module!r}: checkpoints may only name mmgen classes"
            )
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            raise ValueError(f"checkpoint names unknown class {path!r}") from None
    if path not in _CLASSES:
        raise ValueError(f"checkpoint names unknown class {path!r}")
    return _CLASSES[path]


def _weights_file(directory: Path) -> Path:
    for name in (WEIGHTS_NAME, "model.pt", "model.pth", "model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")


def _version() -> str:
    from mmgen import __version__

    return __version__


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json`` of a saved model directory."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an mmgen model folder (no {CONFIG_NAME})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or "class" not in meta or "config" not in meta:
        raise ValueError(f"{path} lacks the 'class' and 'config' entries of an mmgen model")
    return meta


PIPELINE_CONFIG = "pipeline.json"  # marks a text-to-image pipeline folder


def _is_model_folder(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() or (path / PIPELINE_CONFIG).is_file()


def list_pretrained() -> list[str]:
    """Names of the models bundled with this installation (loadable offline by name)."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if _is_model_folder(p))


def model_dir(name_or_path: str | os.PathLike) -> Path:
    """The folder of a saved model path or of a bundled model name; a clear error otherwise."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if str(name_or_path) and _is_model_folder(BUNDLED_DIR / str(name_or_path)):
        return BUNDLED_DIR / str(name_or_path)
    bundled = ", ".join(list_pretrained()) or "none yet"
    raise FileNotFoundError(
        f"{str(name_or_path)!r} is neither a model folder nor a bundled model "
        f"(bundled: {bundled}); create untrained models with mmgen.create_model"
    )


def load(name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a model or pipeline, offline.

    Accepts a bundled name (``mmgen.load("mnist-lenet5")``, ``mmgen.load("shapes-t2i")``), a
    folder saved by mmgen (a model's ``config.json`` or a pipeline's ``pipeline.json``), a
    Stable Diffusion folder in diffusers' layout (``model_index.json``), or an original
    Stable Diffusion single file (``.safetensors`` / ``.ckpt``). Pipelines take ``device``
    and ``dtype`` keyword arguments.
    """
    path = Path(name_or_path)
    directory = None if path.is_file() else model_dir(name_or_path)
    if directory is None or not (directory / CONFIG_NAME).is_file():
        from mmgen.diffusion.pipeline import TextToImagePipeline

        if directory is None:
            return TextToImagePipeline.from_single_file(path, **kwargs)
        if (directory / PIPELINE_CONFIG).is_file():
            return TextToImagePipeline.from_pretrained(directory, **kwargs)
        if (directory / "model_index.json").is_file():
            return TextToImagePipeline.from_diffusers_folder(directory, **kwargs)
    if kwargs:
        raise TypeError(f"unexpected argument(s) {sorted(kwargs)} for a single model")
    return PretrainedModel.from_pretrained(directory)
