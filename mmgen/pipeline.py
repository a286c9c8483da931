"""The pipeline folder format, shared by every kind of pipeline.

A pipeline is a few networks (each a :class:`~mmgen.registry.PretrainedModel`) and a config
dataclass. Its folder holds one model folder per network and ``pipeline.json``::

    {"class": "mmgen.diffusion.pipeline.TextToImagePipeline",   # the class that loads it
     "config": {...},                                           # its config dataclass
     "components": ["unet", "vae", "text_encoder"], "mmgen_version": "..."}

``mmgen.load`` reads the class from ``pipeline.json`` (importing only mmgen modules), so a
text-to-image, DiT or GAN pipeline folder each loads as itself. A new kind of pipeline
subclasses :class:`Pipeline`, names its ``components`` and ``config_class``, and takes them
as keyword arguments (with ``config``) in ``__init__``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from mmgen.checkpoint import atomic_path
from mmgen.registry import (
    Loadable,
    PretrainedModel,
    class_path,
    config_from_dict,
    config_to_dict,
    read_folder_meta,
    resolve_class,
)
from mmgen.version import __version__

PIPELINE_CONFIG = "pipeline.json"
P = TypeVar("P", bound="Pipeline")


class Pipeline(Loadable):
    """Base class: ``components`` (attribute names of the networks) and a ``config``."""

    components: ClassVar[tuple[str, ...]]
    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | os.PathLike,
                        dtype: torch.dtype | None = None) -> Path:
        """Write ``pipeline.json`` and, with the same ``dtype``, each component's model
        folder (:meth:`~mmgen.registry.PretrainedModel.save_pretrained`), all in one atomic
        replacement of ``directory``."""
        directory = Path(directory)
        meta = {"class": class_path(type(self)), "config": config_to_dict(self.config),
                "components": list(self.components), "mmgen_version": __version__}
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            for name in self.components:
                getattr(self, name).save_pretrained(tmp / name, dtype=dtype)
            (tmp / PIPELINE_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls: type[P], directory: str | os.PathLike, **kwargs: Any) -> P:
        """Load a pipeline folder written by :meth:`save_pretrained`, as the class it names
        (which must be ``cls`` or a subclass); ``kwargs`` go to its ``__init__`` (e.g.
        ``device``, ``dtype``)."""
        directory = Path(directory)
        meta = read_pipeline_config(directory)
        pipe_cls = resolve_class(meta["class"], cls, directory / PIPELINE_CONFIG)
        try:
            config = config_from_dict(pipe_cls.config_class, meta["config"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{directory / PIPELINE_CONFIG}: bad config ({e})") from None
        nets = {name: PretrainedModel.from_pretrained(directory / name)
                for name in pipe_cls.components}
        return pipe_cls(**nets, config=config, **kwargs)


def read_pipeline_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``pipeline.json`` of a pipeline folder."""
    return read_folder_meta(directory, PIPELINE_CONFIG, "an mmgen pipeline folder")


def weights_hash(model: torch.nn.Module) -> str:
    """First 10 hex digits of the SHA-256 of ``model``'s weights (sorted names + bytes): the
    ``model_hash`` every generated image records."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        flat = tensor.detach().cpu().contiguous(memory_format=torch.contiguous_format)
        h.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())  # (numel * bytes,)
    return h.hexdigest()[:10]


def class_prompt(index: int, labels: Sequence[str]) -> str:
    """How an image of class ``index`` records it: "class 7", or "class 7 (label)"."""
    return f"class {index} ({labels[index]})" if labels else f"class {index}"


def class_index(text: str | int, labels: Sequence[str], num_classes: int) -> int:
    """The class ``text`` names: a number, "class N" (what :func:`class_prompt` records) or
    one of ``labels`` (a whole label or one of its comma-separated names, any case); a
    ``ValueError`` naming the problem otherwise."""
    match = re.fullmatch(r"\s*(?:class\s+)?(\d+)(?:\s+\(.*\))?\s*", str(text), re.I)
    if match:
        index = int(match.group(1))
    else:
        key = str(text).strip().lower()
        hits = [i for i, label in enumerate(labels)
                if key in (label.lower(), *(s.strip().lower() for s in label.split(",")))]
        if len(hits) != 1:
            known = "; it knows no names (give numbers)" if not labels else \
                f" ({'names classes ' + ', '.join(map(str, hits)) if hits else 'unknown'})"
            raise ValueError(f"class {text!r} is not a class number or a single class name "
                             f"of this model{known}")
        index = hits[0]
    if not 0 <= index < num_classes:
        raise ValueError(f"class {index} is out of range: this model has classes 0 to "
                         f"{num_classes - 1}")
    return index
