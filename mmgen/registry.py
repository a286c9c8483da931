"""Model registry and the mmgen checkpoint format.

A model is a ``PretrainedModel`` built from one typed config dataclass. Presets are registered
by name (``"cnn/resnet18"``) as factory functions, timm-style::

    @register_model("toy/mlp")
    def toy_mlp(**overrides) -> MLP:
        return MLP(MLPConfig(**overrides))

Loading by name or path, bundled models and other formats live one floor up, in
:mod:`mmgen.hub`. A saved model is a directory with two files:

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from mmgen.checkpoint import atomic_path, load_state_dict, save_state_dict
from mmgen.version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CLASSES: dict[str, type] = {}  # class path -> loadable class (models and pipelines)
M = TypeVar("M", bound="PretrainedModel")
T = TypeVar("T")


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


def register_presets(family: str, presets: Mapping[str, Any], cls: type[M]) -> None:
    """Register ``family/<name>`` for each named config of ``presets``: a factory that builds
    ``cls(config)`` with fields replaced by its keyword arguments (see :func:`with_overrides`)."""
    for name, config in presets.items():
        create = _preset_factory(cls, config)
        create.__name__ = create.__qualname__ = f"{family}_{name}".replace("-", "_")
        create.__module__ = cls.__module__  # where the architecture lives
        register_model(f"{family}/{name}")(create)


def _preset_factory(cls: type[M], config: Any) -> Callable[..., M]:
    def create(**overrides: Any) -> M:
        return cls(with_overrides(config, overrides))

    return create


# ----------------------------------------------------------------------------- configs


def with_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of a config dataclass with fields replaced; a dict for a nested config field
    updates that config (``create_model("clip/tiny", text={"layers": 2})``). An unknown field
    is a ``TypeError`` naming the fields there are."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}; fields: "
                        f"{sorted(names)}")
    resolved = {k: with_overrides(getattr(config, k), v)
                if isinstance(v, dict) and dataclasses.is_dataclass(getattr(config, k)) else v
                for k, v in overrides.items()}
    return dataclasses.replace(config, **resolved)


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


def class_path(cls: type) -> str:
    """``module.Class``: how a saved folder names the class that loads it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_class(cls: type) -> type:
    """Make ``cls`` loadable by :func:`resolve_class` (models and pipelines do it themselves
    through ``__init_subclass__``)."""
    _CLASSES[class_path(cls)] = cls
    return cls


class Loadable:
    """A class whose saved folders name it: every subclass is registered for
    :func:`resolve_class` (models and pipelines)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_class(cls)


class PretrainedModel(Loadable, nn.Module):
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
            "class": class_path(type(self)),
            "config": config_to_dict(self.config),
            "info": self.info,
            "mmgen_version": __version__,
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
        saved_cls = resolve_class(meta["class"], cls)
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


def resolve_class(path: str, base: type[T]) -> type[T]:
    """The registered class at ``module.Class`` ``path``, a subclass of ``base``; importing
    only mmgen modules, so a checkpoint can never make mmgen run other code."""
    if not isinstance(path, str):
        raise ValueError(f"a saved class must be named by a 'module.Class' string, got {path!r}")
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
    found = _CLASSES[path]
    if not issubclass(found, base):
        raise TypeError(f"the folder holds a {path}, not a {base.__name__}")
    return found


def _weights_file(directory: Path) -> Path:
    for name in (WEIGHTS_NAME, "model.pt", "model.pth", "model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json`` of a saved model directory."""
    return read_folder_meta(directory, CONFIG_NAME, "an mmgen model folder")


def read_folder_meta(directory: str | os.PathLike, name: str, what: str) -> dict[str, Any]:
    """Read ``directory/name``, a JSON object with a ``"class"`` string and a ``"config"``
    object (a model's ``config.json``, a pipeline's ``pipeline.json``); a clear error that
    ``directory`` is not ``what`` otherwise."""
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not {what} (no {name})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str) \
            or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path} lacks the 'class' and 'config' entries of {what}")
    return meta


def update_info(directory: str | os.PathLike, info: dict[str, Any]) -> None:
    """Replace the ``info`` of a saved model folder (its ``config.json``, atomically), e.g. to
    record results measured on the saved weights without writing the weights again."""
    meta = read_config(directory)
    meta["info"] = info
    with atomic_path(Path(directory) / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
