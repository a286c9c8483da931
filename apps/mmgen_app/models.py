"""Models loaded once and shared by every request.

A model is loaded on first use (or at start-up) under a per-name lock, so two users asking at
once load it once; afterwards requests only read it. Pipelines build a fresh sampler and
generators for each call (:class:`~mmgen.diffusion.pipeline.TextToImagePipeline`), so
sharing one between users is safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgen_app.config import BUNDLED_T2I, AppConfig


class ModelStore:
    """Named models, each loaded once by its loader."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._models: dict[str, Any] = {}
        # text-to-image: label shown in the UI -> what mmgen.load takes
        self.t2i: dict[str, str] = {name: name for name in BUNDLED_T2I}
        for source in config.models:
            label = source if Path(source).name == source else Path(source).name
            self.t2i[label] = source

    def get(self, key: str, loader: Callable[[], Any]) -> Any:
        """The model ``key``, loaded by ``loader()`` the first time."""
        with self._lock:
            if key in self._models:
                return self._models[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one loader per key; other keys load in parallel
            if key not in self._models:
                model = loader()
                with self._lock:
                    self._models[key] = model
        return self._models[key]

    def pipeline(self, label: str) -> Any:
        """The text-to-image pipeline shown as ``label``."""
        if label not in self.t2i:
            raise ValueError(f"unknown model {label!r}; this app serves: "
                             f"{', '.join(self.t2i)}")
        from mmgen.diffusion.pipeline import TextToImagePipeline
        from mmgen.hub import load

        return self.get(f"t2i:{label}", lambda: load(
            self.t2i[label], kind=TextToImagePipeline, fast=self.config.fast,
            compile=self.config.compile))

    def clip(self) -> Any:
        """The CLIP tab's model."""
        from mmgen.clip import CLIP
        from mmgen.hub import load

        return self.get("clip", lambda: load(self.config.clip_model, kind=CLIP))

    def preload(self) -> None:
        """Load the default models now, so the first request does not wait for them."""
        self.pipeline(next(iter(self.t2i)))
        self.clip()
