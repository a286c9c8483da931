"""Lazy package exports (PEP 562): ``from mmgen.data import ShapesDataset`` imports only the
module that defines it, so importing one light submodule of a package (``mmgen.data.images``
for PNG metadata) does not import its heavy siblings (torchvision, accelerate), which keeps
``mmgen generate``'s start-up short (benchmarks/generate_cli.py)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule
    name relative to ``package``) on first access of ``name``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
