"""DiT, the Diffusion Transformer (Peebles & Xie 2023): class-conditional with the official
checkpoints' parameter names, or text-conditioned (cross-attention and/or pooled text); and
its class-conditional pipeline (imported on first use: it pulls in the sampling stack)."""

from typing import Any

from mmgen.dit.model import DiT, DiTConfig

_LAZY = {"ClassConditionalPipeline": "mmgen.dit.pipeline",
         "ClassConditionalConfig": "mmgen.dit.pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmgen.dit' has no attribute {name!r}")


__all__ = ["ClassConditionalConfig", "ClassConditionalPipeline", "DiT", "DiTConfig"]
