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
import inspect
import json
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mmgen.checkpoint import (
    atomic_path,
    check_shapes,
    load_state_dict,
    read_json,
    safetensors_shapes,
    save_state_dict,
)
from mmgen.limits import check_model_bytes
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
    for family in ("cnn", "gan", "vae", "diffusion", "dit", "clip", "style", "color"):
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


def check_fields(config: Any, at_least: int = 1, names: Sequence[str] = (),
                 choices: Mapping[str, Sequence[Any]] | None = None) -> None:
    """A ``ValueError`` naming ``Config.field`` for the first of ``names`` below ``at_least``,
    or the first field of ``choices`` whose value is not one of its options (for a config's
    ``__post_init__``)."""
    cls = type(config).__name__
    for name in names:
        if getattr(config, name) < at_least:
            raise ValueError(f"{cls}.{name} must be >= {at_least}, got {getattr(config, name)}")
    for name, options in (choices or {}).items():
        if getattr(config, name) not in options:
            raise ValueError(f"{cls}.{name} must be one of {tuple(options)}, "
                             f"got {getattr(config, name)!r}")


def config_from_dict(cls: type, data: dict[str, Any], where: str | None = None) -> Any:
    """Rebuild config dataclass ``cls`` from ``data`` (JSON), checking every value's type.

    Nested dataclasses and tuples are restored. Unknown keys are an error (a checkpoint from a
    newer or different model); missing keys take the field defaults. A value of the wrong
    type is a ``ValueError`` naming the field and the type it needs, e.g.
    ``ResNetConfig.num_classes: expected int, got 'ten' (str)``.
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object of fields, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(
            f"{where} has no field(s) {sorted(unknown)}; fields: {sorted(fields)}"
        )
    values = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError, ArithmeticError) as e:  # missing fields, __post_init__
        text = str(e)
        raise ValueError(text if text.startswith(f"{cls.__name__}") else f"{where}: {text}") \
            from None


class JSONParams:
    """``to_json`` / ``from_json`` for a dataclass of parameters that an output file carries
    (a stylized or colorized PNG): every field as JSON, read back with its type checked."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Parse :meth:`to_json`'s text (unknown keys, from newer versions, are ignored)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return config_from_dict(cls, {k: v for k, v in data.items() if k in names})


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``, or a ``ValueError`` naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | Y, Optional[X]
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, where)
            except ValueError:
                continue
    elif origin is typing.Literal:
        if value in args:
            return value
    elif dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, where)
    elif origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) == len(value):
            return tuple(_coerce(a, v, f"{where}[{i}]")
                         for i, (a, v) in enumerate(zip(args, value, strict=True)))
    elif origin is dict and isinstance(value, dict):
        key_tp, value_tp = args or (Any, Any)
        return {_coerce(key_tp, k, where): _coerce(value_tp, v, f"{where}[{k!r}]")
                for k, v in value.items()}
    elif _is_instance(tp, value):
        return float(value) if tp is float else value
    raise ValueError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")


def _is_instance(tp: Any, value: Any) -> bool:
    """JSON's scalar types, strictly: an int field takes no bool or float, a float field takes
    finite numbers only."""
    if tp is Any:
        return True
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and abs(value) <= sys.float_info.max and math.isfinite(value)  # huge ints too
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(tp, type) and isinstance(value, tp)


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
        """Load a model saved by :meth:`save_pretrained` (exact weights, eval mode).

        Everything is checked before the weights are read: the config's field types, that it
        builds, the memory its weights need (``mmgen.limits.MAX_MODEL_GB``), and the names
        and shapes of the tensors in the weight file."""
        directory = Path(directory)
        meta, saved_cls, config = read_saved_config(directory, cls)
        model = build_checked(saved_cls, config, str(directory))
        load_weights(model, _weights_file(directory))
        model.model_name = meta.get("model")
        model.info = meta.get("info") or {}
        return model.eval()


def read_saved_config(directory: Path, base: type[M]) -> tuple[dict[str, Any], type[M], Any]:
    """(``config.json``'s entries, the class it names, its config, type-checked) of a saved
    model folder; errors name the file."""
    meta = read_config(directory)
    cls = resolve_class(meta["class"], base, directory / CONFIG_NAME)
    try:
        return meta, cls, config_from_dict(cls.config_class, meta["config"])
    except ValueError as e:
        raise ValueError(f"{directory / CONFIG_NAME}: {e}") from None


def build_checked(cls: type[T], config: Any, source: str) -> T:
    """``cls(config)``, once :func:`probe_model` has shown that the config builds and that its
    weights fit ``mmgen.limits.MAX_MODEL_GB``."""
    probe_model(cls, config, source)
    return cls(config)


class _MetaProbeShortcuts(TorchFunctionMode):
    """Inside a meta-device build, where tensors have shapes but no values: ops whose meta
    implementation is torch's Python reference code, which imports ``torch._dynamo`` (a
    second of every CLI command's start-up), return their first tensor instead, which has
    the result's shape. Thread-local, as every torch function mode."""

    SHORTCUTS = frozenset({torch.nn.init.normal_, torch.nn.init.trunc_normal_,
                           torch.nn.init.kaiming_normal_, torch.nn.init.xavier_normal_,
                           torch.Tensor.normal_, torch.Tensor.tril, torch.tril})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SHORTCUTS:  # (nn.init passes its tensor by keyword)
            kwargs = kwargs or {}
            return args[0] if args else kwargs.get("tensor", kwargs.get("input"))
        return func(*args, **(kwargs or {}))


def probe_model(cls: type[T], config: Any, source: str) -> T:
    """``cls(config)`` built on the meta device, which allocates nothing: a ``ValueError`` if
    the config does not build, a ``LimitError`` if its weights would not fit
    ``mmgen.limits.MAX_MODEL_GB``. ``source`` names the config's origin in messages."""
    try:
        with torch.device("meta"), _MetaProbeShortcuts():
            probe = cls(config)
    except Exception as e:  # whatever the constructor rejects: the config came from a file
        raise ValueError(f"{source}: the config does not build a {cls.__name__} "
                         f"({type(e).__name__}: {e})") from None
    tensors = [*probe.parameters(), *probe.buffers()]
    check_model_bytes(sum(t.numel() * t.element_size() for t in tensors),
                      f"the {cls.__name__} of {source}")
    return probe


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the weight file ``path`` into ``model``, strictly: the same tensor names and
    shapes (for safetensors, checked from the file's header before any tensor is read)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = None if path.suffix == ".safetensors" else load_state_dict(path)
    found = safetensors_shapes(path) if state is None else \
        {k: tuple(v.shape) for k, v in state.items()}
    check_shapes(expected, found, f"{path} into {type(model).__name__}")
    model.load_state_dict(load_state_dict(path) if state is None else state)


def resolve_class(path: str, base: type[T], source: str | os.PathLike = "a checkpoint"
                  ) -> type[T]:
    """The registered, concrete class at ``module.Class`` ``path``, a subclass of ``base``;
    importing only mmgen modules, so a checkpoint can never make mmgen run other code. A
    ``ValueError`` naming ``source`` (the file that names the class) otherwise."""
    if not isinstance(path, str):
        raise ValueError(f"{source}: a saved class must be named by a 'module.Class' string, "
                         f"got {path!r}")
    if path not in _CLASSES:
        module = path.rpartition(".")[0]
        if module != "mmgen" and not module.startswith("mmgen."):
            raise ValueError(f"{source}: refusing to import {module!r}: checkpoints may only "
                             "name mmgen classes")
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            pass  # reported below
    found = _CLASSES.get(path)
    if found is None or getattr(found, "config_class", None) is None \
            or inspect.isabstract(found):
        raise ValueError(f"{source} names {'an unknown' if found is None else 'an abstract'} "
                         f"class {path!r}")
    if not issubclass(found, base):
        raise ValueError(f"{source} holds a {path}, not a {base.__name__}")
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
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str) \
            or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path} lacks the 'class' and 'config' entries of {what}")
    if not isinstance(meta.get("model"), (str, type(None))) \
            or not isinstance(meta.get("info"), (dict, type(None))):
        raise ValueError(f"{path}: 'model' must be a name or null and 'info' an object")
    return meta


def update_info(directory: str | os.PathLike, info: dict[str, Any]) -> None:
    """Replace the ``info`` of a saved model folder (its ``config.json``, atomically), e.g. to
    record results measured on the saved weights without writing the weights again."""
    meta = read_config(directory)
    meta["info"] = info
    with atomic_path(Path(directory) / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
